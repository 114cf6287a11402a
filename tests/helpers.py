"""Shared test helpers: a tiny config and an in-process trainer run."""
from __future__ import annotations

import jax
import numpy as np

from atm import sharding, train


def tiny_config(**overrides):
    import configs.tiny_mlm as tiny

    c = tiny.get_config()
    c.data.num_examples = 2000
    c.data.vocab_size = 500
    c.model.vocab_size = 500
    c.data.seq_len = 32
    c.train.batch_size = 16
    c.train.steps = 4
    c.optimizer.warmup_steps = 1
    return apply_overrides(c, overrides)


def apply_overrides(config, overrides: dict):
    """Set dotted keys ("train.steps") like --config.train.steps would."""
    for key, value in overrides.items():
        node = config
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return config


def run_steps(config, workdir, devices=None, steps=None):
    """Train `steps` steps in process on a mesh over `devices` (any objective: its own `build_data`);
    returns (losses, params on host)."""
    built = train.build(config, workdir, devices=devices)
    trainer = built.trainer
    state = trainer.init_state()
    losses = []
    for step in range(steps or config.train.steps):
        batch = sharding.global_batch_from_local(built.mesh, built.train_data.batch(step), config.train.batch_size)
        state, metrics = trainer.train_step(state, batch)
        losses.append(float(metrics["loss"]))
    return np.array(losses), jax.device_get(state.params)
