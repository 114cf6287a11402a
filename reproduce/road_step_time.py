"""Step time of a multi-task step with k teachers against plain fine-tuning on the same batch (ROaD, issue 17).

    python -m reproduce.road_step_time [--teachers=2] [--rounds=20] [--out=results/road/step_time.json]

Writes a generated intent + slot BIO folder, fine-tunes k tiny teachers on it (a few steps: their
weights do not matter for timing), then times, interleaved round by round on one fixed batch:
plain fine-tuning (objective finetune, no teacher), one teacher's forward pass, and the multi-task
step (objective multitask, that one task, its k teachers, kd.combine=weighted). The claim checked:
multi-task step − plain step ≤ 1.1 × k teacher forward passes. Medians; the machine load (uptime)
is printed beside them, since a loaded machine stretches every figure.

Measured 2026-12-07 on the 2 CPU cores with nothing else running (the two background experiments
SIGSTOPped for the minute it took; uptime's lagging 1-minute load average read 1.9), `--teachers=2
--rounds=20` → results/road/step_time.json: plain step 0.387 s, one teacher forward 0.095 s, multi-task
step with 2 teachers 0.541 s: overhead 0.153 s ≤ 1.1 × 2 × 0.095 = 0.210 s (within the bound). (A first
measurement on 2026-12-02 at load average 19 had read 11.17 / 2.24 / 14.84 s, also within the bound.)
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time

import jax
import numpy as np

from atm import train
from atm.config import default_config


def write_folder(root: str, n: int = 256) -> str:
    rng = random.Random(0)
    cities = ["boston", "denver", "new york", "dallas", "miami", "seattle"]
    for split in ("train", "dev", "test"):
        os.makedirs(os.path.join(root, split), exist_ok=True)
        words, tags, labels = [], [], []
        for _ in range(n):
            a, b = rng.choice(cities).split(), rng.choice(cities).split()
            intent = rng.choice(["flight", "fare"])
            w = ["show", "me", intent, "from"] + a + ["to"] + b
            t = ["O"] * 4 + ["B-from"] + ["I-from"] * (len(a) - 1) + ["O", "B-to"] + ["I-to"] * (len(b) - 1)
            words.append(" ".join(w)), tags.append(" ".join(t)), labels.append(intent)
        for name, rows in (("seq.in", words), ("seq.out", tags), ("label", labels)):
            with open(os.path.join(root, split, name), "w") as f:
                f.write("\n".join(rows) + "\n")
    return root


def shrink(c, steps: int):
    c.model.update(num_layers=4, hidden_size=256, num_heads=4, ffn_size=1024, vocab_size=512, max_positions=64,
                   hidden_dropout=0.0, attention_dropout=0.0)
    c.data.update(vocab_size=512, seq_len=64)
    c.train.update(steps=steps, batch_size=32, log_every=steps, eval_every=steps, eval_batches=1)
    c.optimizer.update(learning_rate=1e-3, warmup_steps=1)
    c.checkpoint.every = steps
    c.mesh.update(data=1, fsdp=1, tensor=1)
    return c


def timed(fn, *args):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--teachers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="road_step_time_")
    folder = write_folder(os.path.join(root, "task"))
    teachers = []
    for seed in range(args.teachers):
        c = shrink(default_config("finetune"), 2)
        c.finetune.update(bio_folder=folder, eval_split="validation")
        c.seed = seed
        if teachers:
            c.data.vocab = os.path.join(teachers[0], "vocab.model")
        train.train_and_evaluate(c, os.path.join(root, f"teacher{seed}"))
        teachers.append(os.path.join(root, f"teacher{seed}"))
    vocab = os.path.join(teachers[0], "vocab.model")
    device = jax.devices()[:1]

    plain_c = shrink(default_config("finetune"), 10)
    plain_c.finetune.update(bio_folder=folder, eval_split="validation")
    plain_c.data.vocab = vocab
    plain = train.build(plain_c, os.path.join(root, "plain"), devices=device)
    mt_c = shrink(default_config("multitask"), 10)
    mt_c.data.vocab = vocab
    mt_c.multitask.update(tasks=folder, teachers="task=" + "+".join(teachers))
    mt_c.finetune.eval_split = "validation"
    mt_c.kd.update(combine="weighted", temperature=3.0, alpha=0.5)
    mt = train.build(mt_c, os.path.join(root, "mt"), devices=device)

    batch = plain.trainer.global_batch(plain.train_data.batch(0))
    mt_batch = mt.trainer.global_batch({**plain.train_data.batch(0), "task_id": np.zeros(32, np.int32)})
    plain_state, mt_state = plain.trainer.init_state(), mt.trainer.init_state()
    view = mt.objective.views[0]
    frozen = mt.trainer.frozen[mt.objective.labels[0]]
    name = view.teachers.names[0]
    forward = jax.jit(lambda f, b: view.head_logits(lambda *a: view.teachers.apply(f, name, *a), b,
                                                     view.teachers.configs[name]))

    def plain_step():
        nonlocal plain_state
        plain_state, m = plain.trainer.train_step(plain_state, batch)
        return m["loss"]

    def mt_step():
        nonlocal mt_state
        mt_state, m = mt.trainer.train_step(mt_state, mt_batch)
        return m["loss"]
    for fn in (plain_step, mt_step, lambda: forward(frozen, batch)):  # compile
        timed(fn)
    times = {"plain_step_s": [], "teacher_forward_s": [], "multitask_step_s": []}
    for _ in range(args.rounds):
        times["plain_step_s"].append(timed(plain_step))
        times["teacher_forward_s"].append(timed(lambda: forward(frozen, batch)))
        times["multitask_step_s"].append(timed(mt_step))
    med = {k: statistics.median(v) for k, v in times.items()}
    k = args.teachers
    overhead = med["multitask_step_s"] - med["plain_step_s"]
    result = {**{k_: round(v, 5) for k_, v in med.items()}, "teachers": k, "rounds": args.rounds,
              "overhead_s": round(overhead, 5), "bound_s": round(1.1 * k * med["teacher_forward_s"], 5),
              "within_bound": overhead <= 1.1 * k * med["teacher_forward_s"],
              "batch": "32x64", "model": "4 layers x 256", "device": str(jax.devices()[0].platform),
              "load_average": os.getloadavg()}
    print(json.dumps(result))
    if args.out:
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
