"""Cached MUKA scores: every training row's Monte-Carlo score s_j, computed once and stored.

    python -m atm.amalgamate.score --config=configs/muka/amalgamate.py --workdir=W \
        --config.amalgamate.teachers=T1,T2 [--config.amalgamate.scores_file=FILE]
    python -m atm.main --config=configs/muka/amalgamate.py --workdir=W --config.amalgamate.teachers=T1,T2 \
        --config.amalgamate.scores=cached

With `amalgamate.scores=cached` and no file yet, the run computes it itself before its first step (an
automatic first pass). The file (default W/amalgamate_scores.npz) holds `scores` (rows, teachers) in
the training split's row order and `meta` (JSON): the stream signature (the student stream's
fingerprint, the seed, K, each teacher's run and checkpoint step, seq_len). A run whose signature
differs is an error naming config.amalgamate.scores_file and the value that differs. A row's score
uses the same per-row keys as `scores=online` (atm/objectives/amalgamate.py), so both give equal scores.
"""
from __future__ import annotations

import json
import os
import sys
import time

import jax
import numpy as np

from atm import sharding

FILE_KEY = "config.amalgamate.scores_file"


def signature(objective, train_data) -> dict:
    teachers = {}
    for name, t in objective.teachers.items():
        teachers[name] = [t.runs[name].directory, int(t.steps.get(name, -1))]
    return {"data_fingerprint": train_data.fingerprint(), "rows": int(train_data.num_rows),
            "seed": int(objective.config.seed), "mc_passes": int(objective.settings.mc_passes),
            "seq_len": int(objective.seq_len), "teachers": teachers}


def compute(objective, frozen, mesh, train_data) -> tuple[np.ndarray, float]:
    """((N, T) scores of every training row, in row order, batch by batch on `mesh`; seconds of the first
    batch, which compiles)."""
    from atm.objectives.amalgamate import AmalgamationBatcher

    if jax.process_count() > 1:
        raise ValueError(f"{FILE_KEY}: the scoring pass runs as one process; run python -m atm.amalgamate.score first")
    ordered = AmalgamationBatcher(train_data.split, train_data.arrays, train_data.batch_size, 0, False)
    names = list(objective.example_batch(1))
    score_fn = jax.jit(lambda frozen, batch: objective.teacher_scores(frozen, batch))
    out, first_s = [], 0.0
    with sharding.MeshContext(mesh):
        for i in range(ordered.num_batches):
            if i == 1:
                first_s = time.time() - start
            elif i == 0:
                start = time.time()
            local = {k: v for k, v in ordered.batch(i).items() if k in names}
            batch = {k: jax.device_put(v, sharding.batch_sharding(mesh, v.ndim)) for k, v in local.items()}
            scores_TxB = np.asarray(jax.device_get(score_fn(frozen, batch)))
            out.append(scores_TxB.T[local["example_weight"] > 0])
    return np.concatenate(out).astype(np.float32), first_s


def load_or_compute(objective, frozen, mesh, train_data) -> np.ndarray:
    """The stored scores when they were written for this stream (else an error); computed and stored when
    there is no file yet."""
    path = train_data.scores_path
    mine = signature(objective, train_data)
    if os.path.exists(path):
        with np.load(path) as stored:
            meta, scores = json.loads(str(stored["meta"])), np.asarray(stored["scores"])
        for key, value in mine.items():
            if meta.get(key) != value:
                raise ValueError(f"{FILE_KEY}={path!r} was written for another stream: {key} is {meta.get(key)!r} "
                                 f"there and {value!r} here (delete it or point {FILE_KEY} elsewhere)")
        return scores
    start = time.time()
    scores, first_s = compute(objective, frozen, mesh, train_data)
    seconds = time.time() - start
    rows_per_s = (len(scores) - train_data.batch_size) / max(seconds - first_s, 1e-9)
    if jax.process_index() == 0:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        np.savez(path + ".tmp.npz", scores=scores, meta=json.dumps({**mine, "seconds": round(seconds, 2)}))
        os.replace(path + ".tmp.npz", path)
    print(f"Scored {len(scores)} training rows with {objective.settings.mc_passes} Monte-Carlo passes per teacher "
          f"in {seconds:.1f} s (the first batch, which compiles: {first_s:.1f} s; then {rows_per_s:.1f} rows/s) → "
          f"{path}", flush=True)
    return scores


def main(argv):
    from absl import logging

    from atm import config as atm_config
    from atm import train

    del argv
    logging.set_verbosity(logging.WARNING)
    config = _CONFIG.value
    config.amalgamate.scores = "cached"
    try:
        if config.objective != "amalgamate":
            raise ValueError(f"--config has objective={config.objective!r}; atm.amalgamate.score needs an "
                             "amalgamate config")
        atm_config.validate(config)
        workdir = os.path.abspath(_WORKDIR.value)
        os.makedirs(workdir, exist_ok=True)
        built = train.build(config, workdir)
        built.trainer.frozen  # noqa: B018  shards the teachers and writes (or checks) the scores
    except (ValueError, FileNotFoundError) as e:
        print(f"atm.amalgamate.score: error: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"Scores for {built.train_data.num_rows} rows: {built.train_data.scores_path}", flush=True)


if __name__ == "__main__":
    from absl import app, flags
    from ml_collections import config_flags

    _CONFIG = config_flags.DEFINE_config_file("config", None, "An amalgamate config (the run that will read the scores).")
    _WORKDIR = flags.DEFINE_string("workdir", None, "The run directory (the scores go to its amalgamate_scores.npz "
                                                    "unless config.amalgamate.scores_file says otherwise).")
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main)
