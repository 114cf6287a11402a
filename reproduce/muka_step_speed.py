"""MUKA step time: an amalgamation step with cached scores against a vanilla-KD step on the same batches,
interleaved; and the one-time scoring pass (K teacher forwards per row) in rows per second.

    python -m reproduce.muka_step_speed --teachers=T1,T2 [--steps=30] [--mc_passes=16]

`--teachers`: fine-tuned runs on disjoint label sets (configs/muka/teacher.py). Builds the student of
configs/muka/amalgamate.py twice on one stream — method=muka with scores=cached (the scores written
first, timed apart) and method=vanilla_kd — then times their steps alternately on the same batches
(median over the steps after the first, which compiles). Prints one JSON line: each step time, their
ratio (the issue's budget: ≤ 1.1×) and the scoring pass's rows/s. A benchmark, not a test: state the
machine load (`uptime`) next to its figures.

Measured once (2026-12-02, 2 shared CPU cores, load average 15–17, i.e. not a clean timing), configs/muka/
amalgamate.py's 4 × 128 student, teachers the 2 × 64 pair of tests/test_amalgamate.py on 480 generated
rows, `--steps=12`: MUKA step with cached scores 1.405 s vs vanilla KD 1.373 s, ratio 1.02 (budget
≤ 1.1); the scoring pass, K = 16 per teacher, two teachers: 9.8 rows/s after its first, compiling batch
(atm.amalgamate.score's own figure; 4.9 rows/s counting the compile).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from atm import train


def main():
    import configs.muka.amalgamate as amalgamate

    parser = argparse.ArgumentParser()
    parser.add_argument("--teachers", required=True)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--mc_passes", type=int, default=16)
    parser.add_argument("--workdir", default="workdirs/muka_step_speed")
    args = parser.parse_args()

    def built(method, scores, name):
        c = amalgamate.get_config()
        c.amalgamate.update(teachers=args.teachers, method=method, scores=scores, mc_passes=args.mc_passes)
        c.train.steps = args.steps
        return train.build(c, os.path.join(args.workdir, name))
    muka = built("muka", "cached", "muka")
    start = time.time()
    muka.trainer.frozen  # noqa: B018  the scoring pass (or the stored scores of an earlier run)
    score_s = time.time() - start
    vanilla = built("vanilla_kd", "online", "vanilla")
    states = {"muka": muka.trainer.init_state(), "vanilla_kd": vanilla.trainer.init_state()}
    times = {"muka": [], "vanilla_kd": []}
    for step in range(args.steps):
        local = muka.train_data.batch(step)
        for name, b in (("muka", muka), ("vanilla_kd", vanilla)):
            batch = {k: v for k, v in local.items() if k in b.objective.example_batch(1)}
            batch = b.trainer.global_batch(batch)
            t = time.perf_counter()
            states[name], metrics = b.trainer.train_step(states[name], batch)
            float(metrics["loss"])  # waits for the step
            times[name].append(time.perf_counter() - t)
    muka_s, vanilla_s = (statistics.median(times[k][1:]) for k in ("muka", "vanilla_kd"))
    print(json.dumps({"steps": args.steps, "mc_passes": args.mc_passes, "muka_cached_step_s": round(muka_s, 4),
                      "vanilla_kd_step_s": round(vanilla_s, 4), "ratio": round(muka_s / vanilla_s, 3),
                      "scoring_rows": int(muka.train_data.num_rows), "scoring_s": round(score_s, 1),
                      "scoring_rows_per_s": round(muka.train_data.num_rows / max(score_s, 1e-9), 1)}), flush=True)


if __name__ == "__main__":
    main()
