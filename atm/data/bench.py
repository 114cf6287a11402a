"""`python -m atm.data bench TASK`: can the input pipeline feed the training step?

Prints one JSON line: the pipeline's rows/s (building this process's batches, the work
the training loop's prefetch thread does) and the rows/s the tiny model's jitted training
step consumes on the same machine, measured side by side, and their ratio (want ≥ 5).
TASK is a registered task or mixture, or "synthetic" for atm's generated corpus.
"""
from __future__ import annotations

import json
import tempfile
import time

import jax
import numpy as np


def bench(task: str, config_path: str = "configs/tiny_mlm.py", batches: int = 50, data_dir: str | None = None,
          steps: int = 20) -> dict:
    from atm import train
    from atm.data import sources
    from atm.data.export import load_config

    config = load_config(config_path)
    if task != "synthetic":
        config.data.source, config.data.tasks = "tasks", task
        config.data.data_dir = data_dir or ""
        config.data.num_examples = 0
    with tempfile.TemporaryDirectory() as workdir:
        start = time.perf_counter()
        vocab, train_data, _, stats = sources.build(config, workdir)
        setup_s = time.perf_counter() - start

        start = time.perf_counter()
        for step in range(batches):
            train_data.batch(step)
        pipeline_rows_per_s = batches * config.train.batch_size / (time.perf_counter() - start)

        trainer = train.build(config, workdir, vocab=vocab, train_data=train_data).trainer
        state = trainer.init_state()
        batch = trainer.global_batch(train_data.batch(0))
        state, metrics = trainer.train_step(state, batch)  # compile
        jax.block_until_ready(metrics)
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            state, metrics = trainer.train_step(state, batch)
            jax.block_until_ready(metrics)
            times.append(time.perf_counter() - start)
        step_rows_per_s = config.train.batch_size / float(np.median(times))
    return {"task": task, "rows": stats["data_rows"], "setup_s": round(setup_s, 2),
            "pipeline_rows_per_s": round(pipeline_rows_per_s, 1), "train_step_rows_per_s": round(step_rows_per_s, 1),
            "ratio": round(pipeline_rows_per_s / step_rows_per_s, 2), "batch": config.train.batch_size,
            "seq_len": config.data.seq_len, "pack": config.data.pack}


def main(args) -> int:
    print(json.dumps(bench(args.task, args.config, args.batches, args.data_dir)))
    return 0
