"""`python -m atm.data bench TASK`: can the input pipeline feed the training step?

Prints one JSON line: the pipeline's rows/s (building this process's batches, the work
the training loop's prefetch thread does) and the rows/s the tiny model's jitted training
step consumes on the same machine, measured side by side, and their ratio (want ≥ 5).
TASK is a registered task or mixture, or "synthetic" for atm's generated corpus.

`python -m atm.data bench prepared [--sizes_gb=0.25,2]` generates prepared corpora of random token
ids (uint16, record lengths 8-119) of each size, and in a fresh process per size reads, packs and
delivers one host's batches (one reader, the config's batch shape), starting halfway into epoch 0 (a
resume: the epoch is sized from the offsets first). Prints tokens/s, peak RSS, the resume latency,
`prepare`'s throughput on 200000 generated utterances and the tiny model's training-step tokens/s;
the generated files are deleted. A benchmark, not a test: run it once, note the load average.
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
    if args.task == "prepared":
        sizes = tuple(float(x) for x in args.sizes_gb.split(",") if x.strip())
        print(json.dumps(bench_prepared(sizes, args.out, args.steps, args.config, args.data_dir)))
        return 0
    print(json.dumps(bench(args.task, args.config, args.batches, args.data_dir)))
    return 0


# ------------------------------------------------------------------------ python -m atm.data bench prepared
BENCH_VOCAB = 32000  # ids drawn in [5, BENCH_VOCAB): a realistic uint16 corpus
BENCH_LENGTHS = (8, 120)  # record lengths uniform in [8, 120): mean 64 tokens


def generate_corpus(out: str, gigabytes: float, num_shards: int = 16, seed: int = 0) -> dict:
    """A prepared corpus of random token ids holding `gigabytes` of ids (uint16), written block by block."""
    import os

    from atm.data import prepared

    os.makedirs(out, exist_ok=True)
    tokens_wanted = int(gigabytes * 1e9 / 2)
    per_shard = tokens_wanted // num_shards
    receipts = []
    for s in range(num_shards):
        rng = np.random.default_rng([seed, s])

        def blocks():
            left = per_shard
            while left > 0:
                lengths = rng.integers(*BENCH_LENGTHS, 1 << 20)
                lengths = lengths[:max(1, int(np.searchsorted(np.cumsum(lengths), left)))]
                yield rng.integers(5, BENCH_VOCAB, int(lengths.sum()), dtype=np.uint16), lengths
                left -= int(lengths.sum())

        receipts.append(prepared.write_shard_blocks(out, prepared.shard_name("train", s, num_shards), blocks(),
                                                    "uint16", "bench"))
    receipts_eval = [prepared.write_shard(out, prepared.shard_name("eval", 0, 1), [], "uint16", "bench")]
    return prepared.write_manifest(out, {"train": receipts, "eval": receipts_eval}, "uint16", "bench", "", "",
                                   BENCH_VOCAB, {"data": {"source": "generated"}})


def measure_prepared(directory: str, steps: int, seq_len: int, batch_size: int) -> dict:
    """Run in a fresh process (for its peak RSS): one host, one reader, the tiny config's batch shape.
    The first batch starts deep into epoch 0 (a resume): it sizes the epoch from the offsets."""
    import types

    from atm.data import prepared

    vocab = types.SimpleNamespace(cls_id=2, sep_id=3, pad_id=0, size=BENCH_VOCAB)
    start = time.perf_counter()
    data = prepared.PreparedBatcher(directory, seq_len, batch_size, 0, True, vocab, readers=1)
    epoch_rows = data.streams[0].epoch_rows(0)
    first_step = epoch_rows // batch_size // 2
    data.batch(first_step)
    resume_s = time.perf_counter() - start
    start = time.perf_counter()
    real = 0
    for step in range(first_step + 1, first_step + 1 + steps):
        real += int((data.batch(step)["segment_ids"] > 0).sum())
    elapsed = time.perf_counter() - start
    return {"records": data.streams[0].records, "epoch_rows": epoch_rows, "resume_first_batch_s": round(resume_s, 2),
            "rows_per_s": round(steps * batch_size / elapsed), "tokens_per_s": round(steps * batch_size * seq_len / elapsed),
            "real_tokens_per_s": round(real / elapsed),
            "peak_rss_mib": peak_rss_mib()}


def peak_rss_mib() -> float:
    """This process image's peak RSS (VmHWM). Not ru_maxrss: Linux carries that over fork and exec
    from the parent, which here has just generated a corpus."""
    with open("/proc/self/status") as f:
        return next(round(int(line.split()[1]) / 1024, 1) for line in f if line.startswith("VmHWM:"))


def bench_prepared(sizes_gb=(0.25, 2.0), out: str = "", steps: int = 200, config_path: str = "configs/tiny_mlm.py",
                   data_dir: str | None = None) -> dict:
    import os
    import shutil
    import subprocess
    import sys

    from atm.data import prepared
    from atm.data.export import load_config

    config = load_config(config_path)
    seq_len, batch_size = config.data.seq_len, config.train.batch_size
    out = out or tempfile.mkdtemp(prefix="atm_bench_prepared_")
    result = {"load_average_start": os.getloadavg(), "seq_len": seq_len, "batch": batch_size, "sizes": []}
    try:
        for gb in sizes_gb:
            directory = os.path.join(out, f"corpus_{gb}gb")
            start = time.perf_counter()
            manifest = generate_corpus(directory, gb)
            write_s = time.perf_counter() - start
            ids_bytes = sum(s["ids_bytes"] for s in manifest["splits"]["train"]["shards"])
            code = ("import json, sys; from atm.data.bench import measure_prepared; "
                    f"print(json.dumps(measure_prepared({directory!r}, {steps}, {seq_len}, {batch_size})))")
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            figures = json.loads(done.stdout.strip().splitlines()[-1])
            result["sizes"].append({"gb_of_ids": round(ids_bytes / 1e9, 3), "write_s": round(write_s, 1), **figures})
            shutil.rmtree(directory)
        # prepare throughput on real text: the tiny config's generated utterances
        text_config = load_config(config_path, ["--config.data.num_examples=200000"])
        manifest = prepared.prepare(text_config, os.path.join(out, "prepare"), num_shards=16, progress=False)
        result["prepare"] = {"rows": 200000, **manifest["stats"]}
        # the tiny model's training step on the same machine (as `python -m atm.data bench synthetic`)
        step = bench("synthetic", config_path, batches=5)
        result["train_step_tokens_per_s"] = round(step["train_step_rows_per_s"] * seq_len)
        result["ratio_to_train_step"] = [round(s["tokens_per_s"] / result["train_step_tokens_per_s"], 1)
                                         for s in result["sizes"]]
    finally:
        shutil.rmtree(out, ignore_errors=True)
    result["load_average_end"] = os.getloadavg()
    return result
