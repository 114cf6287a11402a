"""A frozen teacher: a finished atm run directory, read for distillation or student initialisation.

`load_run` reads the run's resolved config.json, its vocabulary and the params of its latest
checkpoint (host arrays). `shard_params` places params on the student's mesh with the teacher
model's own logical axis names, so the teacher's forward runs sharded inside the student's step.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import flax.linen as nn
import jax
import ml_collections

from atm import checkpoint as atm_checkpoint
from atm import sharding
from atm.models.encoder import EncoderConfig


@dataclasses.dataclass
class Run:
    directory: str
    config: ml_collections.ConfigDict
    params: Any  # host arrays
    step: int
    vocab_path: str

    def model_config(self, dtype: str | None = None) -> EncoderConfig:
        """The run's encoder; `dtype` overrides its compute dtype (the student's configured one)."""
        cfg = self.config.model.to_dict()
        if dtype:
            cfg["dtype"] = dtype
        return EncoderConfig(**cfg)

    def describe(self) -> str:
        return f"{self.directory} (step {self.step})"


def load_run(directory: str, key: str, objectives: tuple[str, ...]) -> Run:
    """The run in `directory`; `key` (the config key that named it) goes into every error.
    `objectives`: the objectives the run may have been trained with."""
    if not directory:
        raise ValueError(f"{key} is empty: set it to a finished atm run directory")
    directory = os.path.abspath(directory)
    config_path = os.path.join(directory, "config.json")
    if not os.path.exists(config_path):
        raise FileNotFoundError(f"{key}={directory!r}: no config.json (is it an atm run directory?)")
    with open(config_path) as f:
        config = ml_collections.ConfigDict(json.load(f))
    if config.objective not in objectives:
        raise ValueError(f"{key}={directory!r} is a {config.objective!r} run; this needs one of {list(objectives)}")
    ckpt_dir = os.path.join(directory, "checkpoints")
    if not os.path.isdir(ckpt_dir):
        raise FileNotFoundError(f"{key}={directory!r}: no checkpoint under {ckpt_dir}")
    step, params = atm_checkpoint.Checkpointer(ckpt_dir, 1, False).latest_intact_params(f"{key}={directory!r}")
    vocab_path = config.data.vocab or os.path.join(directory, "vocab.model")
    if not os.path.exists(vocab_path):
        raise FileNotFoundError(f"{key}={directory!r}: its vocabulary {vocab_path} is missing")
    return Run(directory, config, jax.device_get(params), step, os.path.abspath(vocab_path))


def check_same_vocabulary(run: Run, vocab, key: str):
    """Distillation and weight copying compare token ids, so the vocabularies must be the same file content."""
    if atm_checkpoint.file_digest(run.vocab_path) != atm_checkpoint.file_digest(vocab.path):
        raise ValueError(
            f"{key}: the teacher {run.directory} uses the vocabulary {run.vocab_path} but this run uses "
            f"{vocab.path} ({vocab.size} pieces), and they differ; set config.data.vocab={run.vocab_path}")


def shard_params(model: nn.Module, params: Any, example_args: tuple, mesh, key: str) -> Any:
    """`params` (host) placed on `mesh` with `model`'s logical axis names; only the model's own
    subtrees are kept (a distillation run also stores its hidden-state projection)."""
    with sharding.MeshContext(mesh):
        boxed = jax.eval_shape(lambda: model.init(jax.random.key(0), *example_args))["params"]
    missing = sorted(set(boxed) - set(params))
    if missing:
        raise ValueError(f"{key}: the teacher checkpoint has no {missing} (it has {sorted(params)})")
    params = {name: params[name] for name in boxed}
    abstract = nn.unbox(boxed)
    want_paths = {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(abstract)}
    have_paths = {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)}
    if want_paths != have_paths:
        raise ValueError(f"{key}: the teacher checkpoint's tensors do not match its config.json model: missing "
                         f"{sorted(want_paths - have_paths)[:5]}, unexpected {sorted(have_paths - want_paths)[:5]}")
    for (path, want), have in zip(jax.tree_util.tree_leaves_with_path(abstract), jax.tree_util.tree_leaves(params)):
        if want.shape != have.shape:
            raise ValueError(f"{key}: teacher tensor {jax.tree_util.keystr(path)} has shape {have.shape} in the "
                             f"checkpoint but {want.shape} in the teacher's own config.json model")
    shardings = sharding.logical_sharding(mesh, nn.get_partition_spec(boxed))
    sharding.check_divisible(abstract, shardings)
    return jax.device_put(params, shardings)
