"""Checkpoint fault injection: damage a random file of a random checkpoint, rerun, judge the outcome.

    python -m reproduce.fault_injection --trials=24 [--seed=0]

A tiny MLM run (12 steps, a checkpoint every 3, keep 4) is trained once; each trial copies it,
truncates, deletes or flips bytes of one file of one checkpoint (in one trial of four: of every
checkpoint), seeded, and reruns the same run in process. A trial passes when the rerun either finishes with the undamaged run's losses and
final checkpoint (it resumed from the newest intact step) or stops with a clear error, and never
restarts from scratch or rewrites `metrics.jsonl` / `config.json`. `tests/test_resume.py` runs a
seeded sample of these trials; this script runs the full count and prints the figure.

Measured 2026-12-02 (2 CPU cores shared with other jobs, load ~3): seeds 0–23, 24 trials in 67 s:
17 resumed, 7 stopped with a clear error, 0 wrong; seeds 24–99, 76 trials: 55 resumed, 21 clear
errors, 0 wrong. Over the 100: 0 silent restarts, 0 overwritten metrics.jsonl or config.json.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import random
import shutil
import tempfile

STEPS, EVERY = 12, 3
DAMAGES = ("truncate", "delete", "flip")


def base_config():
    import configs.tiny_mlm as tiny

    c = tiny.get_config()
    c.data.update(num_examples=2000, vocab_size=500, seq_len=32)
    c.model.update(vocab_size=500, hidden_dropout=0.1)
    c.train.update(steps=STEPS, batch_size=16, log_every=1, eval_every=EVERY, eval_batches=1)
    c.optimizer.warmup_steps = 2
    c.checkpoint.update(every=EVERY, keep=4, async_save=False)
    return c


def run(workdir: str) -> tuple[str, str]:
    """Train in process; ('ok' | 'error: ...', captured stdout)."""
    from atm import train

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            train.train_and_evaluate(base_config(), workdir)
            return "ok", out.getvalue()
        except ValueError as e:  # the errors atm.main reports (CheckpointsDamagedError is one)
            return f"error: {e}", out.getvalue()


def losses(workdir: str) -> list[tuple[int, float]]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [(r["step"], r["loss"]) for r in map(json.loads, f)]


def digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def damage(workdir: str, rng: random.Random) -> str:
    """Damage one file of one checkpoint, or (one trial in four) one file of every checkpoint."""
    ckpt_root = os.path.join(workdir, "checkpoints")
    steps = sorted((n for n in os.listdir(ckpt_root) if n.isdigit()), key=int)
    if rng.random() < 0.25:
        return "every checkpoint: " + "; ".join(damage_one(os.path.join(ckpt_root, s), workdir, rng) for s in steps)
    return damage_one(os.path.join(ckpt_root, rng.choice(steps)), workdir, rng)


def damage_one(step_dir: str, workdir: str, rng: random.Random) -> str:
    files = sorted(os.path.join(r, n) for r, _, ns in os.walk(step_dir) for n in ns)
    path, kind = rng.choice(files), rng.choice(DAMAGES)
    size = os.path.getsize(path)
    if kind == "delete":
        os.remove(path)
    elif kind == "truncate":
        with open(path, "r+b") as f:
            f.truncate(rng.randrange(size) if size else 0)
    else:
        data = bytearray(open(path, "rb").read())
        if not data:
            data = bytearray(b"\x00")
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        with open(path, "wb") as f:
            f.write(data)
    return f"{kind} {os.path.relpath(path, workdir)} ({size} bytes)"


def trial(reference: str, root: str, seed: int) -> dict:
    """One seeded trial against the undamaged `reference` run; returns its outcome."""
    workdir = os.path.join(root, f"trial_{seed}")
    shutil.copytree(reference, workdir)
    what = damage(workdir, random.Random(seed))
    status, stdout = run(workdir)
    outcome = {"seed": seed, "damage": what, "status": status.split("\n")[0][:200]}
    records_kept = losses(workdir) == losses(reference)
    config_kept = digest(os.path.join(workdir, "config.json")) == digest(os.path.join(reference, "config.json"))
    restarted = "Resumed from checkpoint" not in stdout and status == "ok" and "atm: objective=" in stdout
    if status == "ok":
        outcome["result"] = "resumed" if records_kept and not restarted else "WRONG"
    else:
        clear = "every checkpoint in" in status and "new --workdir" in status
        outcome["result"] = "clear error" if clear and records_kept and config_kept else "WRONG"
    outcome.update(silent_restart=restarted, records_overwritten=not records_kept, config_overwritten=not config_kept)
    return outcome


def reference_run(root: str) -> str:
    workdir = os.path.join(root, "reference")
    status, _ = run(workdir)
    assert status == "ok", status
    return workdir


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        reference = reference_run(root)
        outcomes = []
        for seed in range(args.seed, args.seed + args.trials):
            outcomes.append(trial(reference, root, seed))
            print(json.dumps(outcomes[-1]), flush=True)
    counts = {k: sum(o["result"] == k for o in outcomes) for k in ("resumed", "clear error", "WRONG")}
    print(f"{args.trials} trials: {counts['resumed']} resumed, {counts['clear error']} stopped with a clear error, "
          f"{counts['WRONG']} wrong; silent restarts {sum(o['silent_restart'] for o in outcomes)}, "
          f"overwritten records {sum(o['records_overwritten'] or o['config_overwritten'] for o in outcomes)}")


if __name__ == "__main__":
    main()
