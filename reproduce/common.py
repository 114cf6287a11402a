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

from atm import evaluate, train  # noqa: E402

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
    """{locale: {accuracy, slot_f1, semer, ...}} of a finished MASSIVE fine-tuning run (atm.evaluate: one restore)."""
    path = os.path.join(workdir, "eval_locales.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    rows = evaluate.evaluate_run(workdir, ",".join(LOCALES[locale] for locale in locales), split)["rows"]
    out = {locale: {k: v for k, v in row.items() if isinstance(v, float)} for locale, row in zip(locales, rows)}
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


def verdict(better: list[float], worse: list[float], percent: bool = True) -> str:
    """"held" / "did not hold" for the claim mean(better) > mean(worse), with the gap and whether it is
    larger than the seeds' spread (the larger standard deviation of the two)."""
    scale = 100.0 if percent else 1.0
    (b, b_std), (w, w_std) = mean_spread([v * scale for v in better]), mean_spread([v * scale for v in worse])
    gap, spread = b - w, max(b_std, w_std)
    text = f"**{'held' if gap > 0 else 'did not hold'}** ({gap:+.1f} points"
    if len(better) > 1 and len(worse) > 1:
        text += ", larger than the seed spread" if abs(gap) > spread else f", within the seed spread of {spread:.1f}"
    return text + ")"


def cell(values: list[float], percent: bool = True) -> str:
    scale = 100.0 if percent else 1.0
    mean, spread = mean_spread([v * scale for v in values])
    return f"{mean:.1f} ± {spread:.1f}" if len(values) > 1 else f"{mean:.1f}"


def non_embedding(model_config) -> int:
    d, f, layers = model_config.hidden_size, model_config.ffn_size, model_config.num_layers
    return layers * (4 * d * d + 2 * d * f + 4 * d + f + d + 4 * d)
