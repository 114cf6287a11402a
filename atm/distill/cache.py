"""Offline teacher logits: run the teacher once, distil from its stored top-k logits.

    python -m atm.distill.cache --config=configs/distill/X.py --teacher=RUN_DIR --out=CACHE_DIR [--top_k=32]
    python -m atm.main --config=configs/distill/X.py --workdir=W --config.distill.cache=CACHE_DIR

The cache covers exactly the stream a distill run with this config sees: the same batches
(config.seed, config.data, config.train.batch_size) and the same dynamic masks (redrawn with
`atm.train.step_rngs`, config.mlm), for config.train.steps steps and config.train.eval_batches
eval batches. Per masked slot it stores the teacher's k largest logits and their vocabulary ids:

    CACHE_DIR/meta.json                 teacher, its step, top_k, steps, eval batches, stream signature
    CACHE_DIR/{train,eval}_logits.npy   (steps, batch, slots, k) float32
    CACHE_DIR/{train,eval}_ids.npy      (steps, batch, slots, k) int32

A run reading it checks the stream signature (data fingerprint, seed, batch, masking settings,
vocabulary digest) and that it has enough steps, so a cache never silently mismatches its run.
"""
from __future__ import annotations

import copy
import json
import os
import sys
import time

import numpy as np

from atm.distill import teacher as teacher_lib


META = "meta.json"


def stream_signature(config, vocab, train_data) -> dict:
    """What decides the batches and masks of a run: a cache is valid only for an equal signature."""
    return {"data_fingerprint": train_data.fingerprint(), "seed": int(config.seed),
            "batch_size": int(config.train.batch_size), "seq_len": int(config.data.seq_len),
            "mlm": config.mlm.to_dict(),
            "vocab_sha256": teacher_lib.vocabulary_digest(teacher_lib.vocabulary_location(vocab))}


def read_meta(cache_dir: str) -> dict:
    path = os.path.join(cache_dir, META)
    if not os.path.exists(path):
        raise FileNotFoundError(f"config.distill.cache={cache_dir!r}: no {META} (write one with python -m "
                                "atm.distill.cache)")
    with open(path) as f:
        return json.load(f)


class CachedTeacherBatcher:
    """A batcher whose batches carry the cached teacher top-k logits of their masked slots."""

    def __init__(self, inner, logits_SxBxMxK: np.ndarray, ids_SxBxMxK: np.ndarray, what: str):
        self.inner, self.logits, self.ids, self.what = inner, logits_SxBxMxK, ids_SxBxMxK, what

    def __getattr__(self, name):  # state, check_state, fingerprint, ... of the wrapped batcher
        return getattr(self.inner, name)

    def batch(self, step: int) -> dict:
        if step >= len(self.logits):
            raise IndexError(f"config.distill.cache holds {len(self.logits)} {self.what} batches; batch {step} "
                             "was asked for (rewrite the cache for more steps)")
        rows = slice(self.inner.process_index * self.inner.local_batch_size,
                     (self.inner.process_index + 1) * self.inner.local_batch_size)
        return {**self.inner.batch(step), "teacher_top_k_logits": np.asarray(self.logits[step, rows]),
                "teacher_top_k_ids": np.asarray(self.ids[step, rows])}


def attach(cache_dir: str, config, vocab, train_data, eval_data):
    """The train and eval batchers wrapped with the cache, after checking it fits this run."""
    meta = read_meta(cache_dir)
    mine = stream_signature(config, vocab, train_data)
    for key, value in mine.items():
        if meta["signature"].get(key) != value:
            raise ValueError(f"config.distill.cache={cache_dir!r} was written for another stream: {key} is "
                             f"{meta['signature'].get(key)!r} there and {value!r} here (rewrite the cache with "
                             "this config)")
    if config.train.steps > meta["steps"]:
        raise ValueError(f"config.train.steps={config.train.steps} but config.distill.cache={cache_dir!r} holds "
                         f"{meta['steps']} steps")
    if eval_data is not None and config.train.eval_batches > meta["eval_batches"]:
        raise ValueError(f"config.train.eval_batches={config.train.eval_batches} but config.distill.cache="
                         f"{cache_dir!r} holds {meta['eval_batches']} eval batches")

    def load(part):
        return (np.load(os.path.join(cache_dir, f"{part}_logits.npy"), mmap_mode="r"),
                np.load(os.path.join(cache_dir, f"{part}_ids.npy"), mmap_mode="r"))
    train = CachedTeacherBatcher(train_data, *load("train"), "train")
    evaluation = None if eval_data is None else CachedTeacherBatcher(eval_data, *load("eval"), "eval")
    return train, evaluation


def write(config, teacher_dir: str, out_dir: str, top_k: int) -> dict:
    """Write the cache for `config` (a distill config) with the teacher run `teacher_dir`; returns the meta."""
    import jax

    from atm import config as atm_config
    from atm import sharding, train

    if jax.process_count() > 1:
        raise ValueError("atm.distill.cache runs as one process")
    config = copy.deepcopy(config)
    if config.objective != "distill":
        raise ValueError(f"--config has objective={config.objective!r}; atm.distill.cache needs a distill config")
    config.distill.update(teacher=teacher_dir, cache="", hidden_weight=0.0)
    atm_config.validate(config)
    os.makedirs(out_dir, exist_ok=True)
    built = train.build(config, out_dir)
    vocab, train_data, eval_data, objective = built.vocab, built.train_data, built.eval_data, built.objective
    if not 1 <= top_k <= objective.model_cfg.vocab_size:
        raise ValueError(f"--top_k={top_k} must be within [1, vocab size {objective.model_cfg.vocab_size}]")
    if len(objective.teachers) != 1:
        raise ValueError(f"--teacher names {len(objective.teachers)} runs; the offline cache holds one teacher's logits")
    mesh, frozen, batch_shardings = built.mesh, built.trainer.frozen, built.trainer.batch_shardings
    teacher_step = objective.teachers.steps[objective.teachers.names[0]]

    @jax.jit
    def top_logits(batch, rng, frozen):
        logits = objective.teacher_logits(frozen, objective.prepare(batch, rng))[0].astype(np.float32)
        return jax.lax.top_k(logits, top_k)

    def run(data, count, rng_of, part):
        shape = (count, config.train.batch_size, objective.num_slots, top_k)
        logits = np.lib.format.open_memmap(os.path.join(out_dir, f"{part}_logits.npy"), "w+", np.float32, shape)
        ids = np.lib.format.open_memmap(os.path.join(out_dir, f"{part}_ids.npy"), "w+", np.int32, shape)
        for i in range(count):
            batch = {k: jax.device_put(v, batch_shardings[k]) for k, v in data.batch(i).items()}
            with sharding.MeshContext(mesh):
                values, indices = jax.device_get(top_logits(batch, rng_of(i), frozen))
            logits[i], ids[i] = values, indices
        logits.flush()
        ids.flush()

    start = time.time()
    run(train_data, config.train.steps, lambda i: train.step_rngs(config.seed, i)[0], "train")
    eval_batches = config.train.eval_batches if eval_data is not None else 0
    run(eval_data, eval_batches, lambda i: jax.random.key(train.EVAL_RNG_SEED), "eval")
    meta = {"teacher": os.path.abspath(teacher_dir), "teacher_step": teacher_step, "top_k": top_k,
            "vocab": os.path.abspath(vocab.path),
            "steps": config.train.steps, "eval_batches": eval_batches,
            "signature": stream_signature(config, vocab, train_data), "seconds": round(time.time() - start, 2)}
    with open(os.path.join(out_dir, META), "w") as f:
        json.dump(meta, f, indent=2)
    return meta


def main(argv):
    from absl import flags, logging

    del argv
    logging.set_verbosity(logging.WARNING)
    try:
        meta = write(_CONFIG.value, _TEACHER.value, _OUT.value, _TOP_K.value)
    except (ValueError, FileNotFoundError) as e:
        print(f"atm.distill.cache: error: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"Wrote the top-{meta['top_k']} logits of teacher {meta['teacher']} (step {meta['teacher_step']}) for "
          f"{meta['steps']} train steps and {meta['eval_batches']} eval batches to {_OUT.value} "
          f"in {meta['seconds']} s", flush=True)


if __name__ == "__main__":
    from absl import app, flags
    from ml_collections import config_flags

    _CONFIG = config_flags.DEFINE_config_file("config", None, "A distill config (the run that will read the cache).")
    _TEACHER = flags.DEFINE_string("teacher", None, "The teacher's run directory.")
    _OUT = flags.DEFINE_string("out", None, "Where to write the cache.")
    _TOP_K = flags.DEFINE_integer("top_k", 32, "Logits kept per masked slot (the vocabulary size: exact).")
    flags.mark_flags_as_required(["config", "teacher", "out"])
    app.run(main)
