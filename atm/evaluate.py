"""Evaluate a trained fine-tuning or multi-task run on any split of any compatible task, or of many.

    python -m atm.evaluate --workdir=DIR --task=massive_de_de --split=test   # zero-shot from an en-US run
    python -m atm.evaluate --workdir=DIR --split=test                        # the run's own task
    python -m atm.evaluate --workdir=DIR --task=xnli --split=validation      # a mixture: one row per language
    python -m atm.evaluate --workdir=DIR --task=massive_en_us,massive_de_de,massive_sw_ke

A multi-task run (objective multitask) scores each task with its own head; without --task, every
task it trained on; a task outside its list goes through the head of the same kind and labels
(XNLI: every language through the xnli_en head).
An amalgamate run (configs/muka/amalgamate.py) is evaluated on its teachers' data sets: accuracy over
the union of their labels and on each teacher's part (accuracy_<teacher>), in DIR/eval_union_<split>.json.

Restores DIR's latest checkpoint once with DIR's resolved config (config.json) and vocabulary,
runs one ordered pass over each task's split and prints a table (one row per task, i.e. per
language for XNLI and MASSIVE, plus their mean when there are several). Each task's figures are
written to DIR/eval_<task>_<split>.json, a multi-task table to DIR/eval_<name>_<split>.json.
The metrics are the objective's (`summarize`): intent accuracy, slot span F1 (seqeval-equal),
frame exact match, SemER; NER span F1; accuracy; SQuAD exact match / F1 (atm/nlu_metrics.py).
Tasks with one labelled split (XNLI dev, TyDi QA GoldP train) are evaluated on the held-out part
that `atm.data.labelled.in_holdout` defines, so rows a run trained on are never scored.
"""
from __future__ import annotations

import json
import os
import sys

from absl import app, flags, logging

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run directory.")
_TASK = flags.DEFINE_string("task", "", "Task(s) to evaluate: a task, a mixture or a comma-separated list "
                                        "(default: the run's own).")
_SPLIT = flags.DEFINE_string("split", "test", "Split: train, validation or test.")
_BIO_FOLDER = flags.DEFINE_string("bio_folder", "", "Evaluate on a folder in the BIO layout instead.")


def expand_tasks(task: str) -> list[str]:
    """A comma-separated list of tasks and mixtures, mixtures replaced by their member tasks."""
    from atm.data import tasks
    names = []
    for name in filter(None, (t.strip() for t in task.split(","))):
        names.extend(expand_tasks(",".join(tasks.MIXTURES[name].tasks)) if name in tasks.MIXTURES else [name])
    return names


EVALUATED = ("finetune", "multitask", "amalgamate")  # amalgamate: on its teachers' data sets, over the union of their labels


def _load_config(workdir: str):
    from atm import config as atm_config
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"--workdir={workdir}: no config.json (is it a training run directory?)")
    with open(path) as f:
        config = atm_config.from_saved(json.load(f))  # over today's defaults: an older run still evaluates
    if config.objective not in EVALUATED:
        raise ValueError(f"--workdir={workdir} is a {config.objective!r} run; atm.evaluate evaluates "
                         f"{' and '.join(EVALUATED)} runs")
    if config.objective == "amalgamate":  # scoring reads no Monte-Carlo score
        config.amalgamate.scores = "online"
    config.finetune.teacher = ""  # scoring a run needs no distillation teacher
    if config.objective == "multitask":
        config.multitask.teachers = ""
    # Other tasks' rows may have more words than the run's token_query_slots; every position gives the
    # same logits at the labelled tokens (tests/test_narrow.py), so scoring does not need the slots.
    config.finetune.token_query_slots = 0
    kept = os.path.join(workdir, "vocab.model")  # every run keeps its vocabulary here
    if os.path.exists(kept) or not config.data.vocab:
        config.data.vocab = kept
    return config


def evaluate_run(workdir: str, task: str = "", split: str = "test", bio_folder: str = "") -> dict:
    """Figures of the run on each task's split: {"rows": [per-task dicts], "mean": {...} or None}."""
    from atm import train
    from atm.checkpoint import Checkpointer

    workdir = os.path.abspath(workdir)
    config = _load_config(workdir)
    built = train.build(config, workdir)
    objective, trainer = built.objective, built.trainer
    restored = Checkpointer(os.path.join(workdir, "checkpoints"), 1, False).restore_latest(trainer.abstract_state())
    if restored is None:
        raise FileNotFoundError(f"--workdir={workdir}: no checkpoint to evaluate")
    step, state, _ = restored

    targets = [("bio_folder", bio_folder)] if bio_folder else [("task", t) for t in expand_tasks(task)]
    if config.objective == "multitask":  # each task through the head of its kind and labels
        rows = []
        for _, target in targets or [("task", t) for t in objective.task_names]:
            eval_data = objective.task_eval_data(target, split)
            name, _, batcher = eval_data.parts[0]
            figures = train.evaluate(trainer, state.params, eval_data, -1)
            rows.append({"workdir": workdir, "step": step, "task": name, "split": split,
                         "rows": len(batcher.split.questions or batcher.split.examples),
                         **{k.removeprefix(f"eval_{name}_"): v for k, v in figures.items()
                            if k.startswith(f"eval_{name}_")}})
            with open(os.path.join(workdir, f"eval_{name}_{split}.json"), "w") as f:
                json.dump(rows[-1], f, indent=2)
        return {"rows": rows, "mean": _write_mean(rows, task, workdir, split)}
    if config.objective == "amalgamate" and targets:
        raise ValueError(f"--workdir={workdir} is an amalgamate run: it is evaluated on its teachers' data sets "
                         "(union accuracy and each teacher's part); drop --task/--bio_folder")
    rows = []
    for key, target in targets or [(None, None)]:
        task_config = config.copy_and_resolve_references()
        if key == "bio_folder":
            task_config.finetune.bio_folder = target
        elif key == "task":
            task_config.finetune.task, task_config.finetune.bio_folder = target, ""
        task_config.finetune.eval_split = split
        _, task_train, eval_data, _ = objective.build_data(task_config, workdir)
        if task_train.split.label_names != objective.label_names:
            raise ValueError(f"--task={target}: its label inventory differs from the one {workdir} was trained on")
        figures = train.evaluate(trainer, state.params, eval_data, -1)
        folder = task_config.finetune.bio_folder
        name = os.path.basename(os.path.normpath(folder)) if folder else task_config.finetune.task
        if config.objective == "amalgamate":
            name = "union"
        row = {"workdir": workdir, "step": step, "task": name, "split": split,
               "rows": len(eval_data.split.questions or eval_data.split.examples),
               **{k.removeprefix("eval_"): v for k, v in figures.items()}}
        with open(os.path.join(workdir, f"eval_{name}_{split}.json"), "w") as f:
            json.dump(row, f, indent=2)
        rows.append(row)
    return {"rows": rows, "mean": _write_mean(rows, task, workdir, split)}


def _write_mean(rows: list[dict], task: str, workdir: str, split: str) -> dict | None:
    """The mean over several rows of the metrics they all have, written beside them; None for one row."""
    if len(rows) <= 1:
        return None
    metrics = [k for k, v in rows[0].items() if isinstance(v, float) and all(k in r for r in rows)]
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in metrics}
    label = task.replace(",", "+") if task and len(task) < 60 else f"{len(rows)}_tasks"
    with open(os.path.join(workdir, f"eval_{label}_{split}.json"), "w") as f:
        json.dump({"rows": rows, "mean": mean}, f, indent=2)
    return mean


def format_table(result: dict) -> str:
    """Markdown: one row per task, metrics in percent (loss as is), the mean last."""
    rows = result["rows"]
    metrics = list(dict.fromkeys(k for r in rows for k, v in r.items() if isinstance(v, float)))

    def cell(key, values):
        if key not in values:
            return ""
        return f"{values[key]:.4f}" if key == "loss" else f"{100 * values[key]:.1f}"
    lines = ["| task | rows | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 2) + "|"]
    lines += [f"| {r['task']} | {r['rows']} | " + " | ".join(cell(k, r) for k in metrics) + " |" for r in rows]
    if result["mean"]:
        lines.append(f"| mean | | " + " | ".join(cell(k, result["mean"]) for k in metrics) + " |")
    return "\n".join(lines)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    try:
        result = evaluate_run(_WORKDIR.value, _TASK.value, _SPLIT.value, _BIO_FOLDER.value)
    except (ValueError, FileNotFoundError, KeyError) as e:
        print(f"atm.evaluate: error: {e}", file=sys.stderr)
        sys.exit(1)
    first = result["rows"][0]
    print(f"{_WORKDIR.value} checkpoint step {first['step']}, split {first['split']} (metrics in %)")
    print(format_table(result))


if __name__ == "__main__":
    flags.mark_flag_as_required("workdir")
    app.run(main)
