"""Online teacher vs offline top-k teacher logits: distillation step time on the same stream.

    python -m reproduce.distill_cache_speed --teacher=workdirs/reproduce_atm/teacher_s2 [--steps=60] [--top_k=32]

Distils the reproduce.atm student (2 × 96, `common.STUDENT`) from `--teacher` on MASSIVE utterances for `--steps`
steps twice: with the teacher running inside the step, and from a top-k cache written first by
atm.distill.cache (the time to write the cache is reported apart). Prints one JSON line: seconds per
step of each (median over the steps after the first, which compiles), the speed-up, and the
final losses of both runs (they differ only through the top-k truncation).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from atm import train
from atm.distill import cache as cache_lib
from reproduce import common


def timed_run(config, workdir):
    built = train.build(config, workdir)
    trainer, data = built.trainer, built.train_data
    state = trainer.init_state()
    times, loss = [], None
    for step in range(config.train.steps):
        batch = trainer.global_batch(data.batch(step))
        start = time.perf_counter()
        state, metrics = trainer.train_step(state, batch)
        loss = float(metrics["loss"])  # waits for the step
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:]), loss


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--top_k", type=int, default=32)
    parser.add_argument("--workdir", default="workdirs/distill_cache_speed")
    args = parser.parse_args()
    config = common.pretrain_config("distill", common.STUDENT, "massive_text", args.steps, 32, 32,
                                    vocab=os.path.join(args.teacher, "vocab.model"))
    config.model.pre_layer_norm = False
    config.distill.teacher = os.path.abspath(args.teacher)
    online_s, online_loss = timed_run(config, f"{args.workdir}/online")
    start = time.time()
    cache_lib.write(config, args.teacher, f"{args.workdir}/cache_top{args.top_k}", args.top_k)
    write_s = time.time() - start
    config.distill.update(teacher="", cache=f"{args.workdir}/cache_top{args.top_k}")
    offline_s, offline_loss = timed_run(config, f"{args.workdir}/offline")
    print(json.dumps({"steps": args.steps, "top_k": args.top_k, "online_step_s": round(online_s, 4),
                      "offline_step_s": round(offline_s, 4), "speedup": round(online_s / offline_s, 2),
                      "cache_write_s": round(write_s, 1), "online_final_loss": round(online_loss, 4),
                      "offline_final_loss": round(offline_loss, 4)}), flush=True)


if __name__ == "__main__":
    main()
