"""Shared pieces of the paper reproductions: run a config in process, evaluate on MASSIVE locales, write tables."""
from __future__ import annotations

import json
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from atm import objectives, sharding, train  # noqa: E402
from atm.checkpoint import Checkpointer  # noqa: E402
from atm.data import labelled  # noqa: E402

LOCALES = {"en-US": "massive_en_us", "de-DE": "massive_de_de", "sw-KE": "massive_sw_ke"}


class Clock:
    """Wall time since the first start in `workdir` (a resumed script keeps counting from then)."""

    def __init__(self, workdir: str):
        os.makedirs(workdir, exist_ok=True)
        path = os.path.join(workdir, "started_at")
        if not os.path.exists(path):
            with open(path, "w") as f:
                f.write(str(time.time()))
        with open(path) as f:
            self.start = float(f.read())

    def log(self, message: str):
        print(f"[{(time.time() - self.start) / 60:5.1f} min] {message}", flush=True)

    def minutes(self) -> float:
        return (time.time() - self.start) / 60


def run(config, workdir: str) -> dict:
    """Train `config` in `workdir` unless a finished run is already there (re-running a script resumes)."""
    summary_path = os.path.join(workdir, "summary.json")
    if os.path.exists(summary_path):
        with open(summary_path) as f:
            return json.load(f)
    summary = train.train_and_evaluate(config, workdir)
    with open(summary_path, "w") as f:
        json.dump(summary, f)
    return summary


def evaluate_locales(workdir: str, locales=("en-US", "de-DE", "sw-KE"), split: str = "test") -> dict:
    """{locale: {accuracy, slot_f1, semer, ...}} of a finished MASSIVE fine-tuning run (one compile, all locales)."""
    import ml_collections

    path = os.path.join(workdir, "eval_locales.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    with open(os.path.join(workdir, "config.json")) as f:
        config = ml_collections.ConfigDict(json.load(f))
    config.finetune.teacher = ""  # evaluation needs no teacher
    config.student_init.mode = "random"
    config.finetune.train_fraction = 1.0
    objective_cls = objectives.get("finetune")
    vocab, train_data, _, _ = objective_cls.build_data(config, workdir)
    trainer = train.Trainer(config, objective_cls(config, vocab, train_data), sharding.make_mesh(config.mesh))
    _, state, _ = Checkpointer(os.path.join(workdir, "checkpoints"), 1, False).restore_latest(trainer.abstract_state())
    out = {}
    for locale in locales:
        ft = config.finetune.copy_and_resolve_references()
        ft.task = LOCALES[locale]
        split_data = labelled.load_split(ft, split, vocab, config.data.data_dir or None, False)
        batcher = labelled.LabelledBatcher(split_data, config.data.seq_len, config.train.batch_size, 0, vocab.cls_id,
                                           vocab.sep_id, vocab.pad_id, shuffle=False)
        figures = train.evaluate(trainer, state.params, batcher, -1)
        out[locale] = {k.removeprefix("eval_"): v for k, v in figures.items()}
    with open(path, "w") as f:
        json.dump(out, f, indent=2)
    return out


def parse_steps(spec: str, phases: dict) -> dict:
    """"finetune=120,stage2=100" → {phase: steps}, for phases of `phases` only."""
    out = {}
    for item in filter(None, (x.strip() for x in spec.split(","))):
        name, _, value = item.partition("=")
        if name not in phases:
            raise ValueError(f"--steps: unknown phase {name!r} (phases: {sorted(phases)})")
        out[name] = int(value)
    return out


def mean_spread(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def cell(values: list[float], percent: bool = True) -> str:
    scale = 100.0 if percent else 1.0
    mean, spread = mean_spread([v * scale for v in values])
    return f"{mean:.1f} ± {spread:.1f}" if len(values) > 1 else f"{mean:.1f}"


def non_embedding(model_config) -> int:
    d, f, layers = model_config.hidden_size, model_config.ffn_size, model_config.num_layers
    return layers * (4 * d * d + 2 * d * f + 4 * d + f + d + 4 * d)
