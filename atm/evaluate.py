"""Evaluate a trained run on any split of any compatible task.

    python -m atm.evaluate --workdir=DIR --task=massive_de_de --split=test   # zero-shot from an en-US run
    python -m atm.evaluate --workdir=DIR --split=test                        # the run's own task

Restores DIR's latest checkpoint with DIR's resolved config (config.json) and vocabulary, runs
one ordered pass over the split and prints a table; the figures are also written to
DIR/eval_<task>_<split>.json. The metrics are the objective's (`summarize`): for intent + slots
intent accuracy, slot span F1 (seqeval-equal), frame exact match and SemER (atm/nlu_metrics.py).
"""
from __future__ import annotations

import json
import os
import sys

from absl import app, flags, logging

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run directory.")
_TASK = flags.DEFINE_string("task", "", "Task to evaluate (default: the run's own).")
_SPLIT = flags.DEFINE_string("split", "test", "Split: train, validation or test.")
_BIO_FOLDER = flags.DEFINE_string("bio_folder", "", "Evaluate on a folder in the BIO layout instead.")


def evaluate_run(workdir: str, task: str = "", split: str = "test", bio_folder: str = "") -> dict:
    import ml_collections

    from atm import objectives, sharding, train
    from atm.checkpoint import Checkpointer

    workdir = os.path.abspath(workdir)
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"--workdir={workdir}: no config.json (is it a training run directory?)")
    with open(path) as f:
        config = ml_collections.ConfigDict(json.load(f))
    if config.objective != "finetune":
        raise ValueError(f"--workdir={workdir} is a {config.objective!r} run; atm.evaluate evaluates finetune runs")
    if bio_folder:
        config.finetune.bio_folder = bio_folder
    elif task:
        config.finetune.task, config.finetune.bio_folder = task, ""
    config.finetune.eval_split = split
    if not config.data.vocab:
        config.data.vocab = os.path.join(workdir, "vocab.model")
    objective_cls = objectives.get(config.objective)
    vocab, train_data, eval_data, _ = objective_cls.build_data(config, workdir)
    trainer = train.Trainer(config, objective_cls(config, vocab, train_data), sharding.make_mesh(config.mesh))
    restored = Checkpointer(os.path.join(workdir, "checkpoints"), 1, False).restore_latest(trainer.abstract_state())
    if restored is None:
        raise FileNotFoundError(f"--workdir={workdir}: no checkpoint to evaluate")
    step, state, _ = restored
    figures = train.evaluate(trainer, state.params, eval_data, -1)
    folder = config.finetune.bio_folder
    name = os.path.basename(os.path.normpath(folder)) if folder else config.finetune.task
    result = {"workdir": workdir, "step": step, "task": name, "split": split,
              "rows": len(eval_data.split.examples), **{k.removeprefix("eval_"): v for k, v in figures.items()}}
    with open(os.path.join(workdir, f"eval_{name}_{split}.json"), "w") as f:
        json.dump(result, f, indent=2)
    return result


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    try:
        result = evaluate_run(_WORKDIR.value, _TASK.value, _SPLIT.value, _BIO_FOLDER.value)
    except (ValueError, FileNotFoundError, KeyError) as e:
        print(f"atm.evaluate: error: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"{result['task']} / {result['split']} ({result['rows']} rows, checkpoint step {result['step']})")
    for key, value in result.items():
        if isinstance(value, float):
            print(f"  {key:<20} {100 * value:7.2f}" if key != "loss" else f"  {key:<20} {value:7.4f}")


if __name__ == "__main__":
    flags.mark_flag_as_required("workdir")
    app.run(main)
