"""Frozen teachers: finished atm run directories, read for distillation, task-level KD and
student initialisation.

`load_run` reads a run's resolved config.json and finds its vocabulary; weights are read only when
asked (`Run.read_params`, the newest intact checkpoint). `Teachers` is one or several runs
(`"RUN"`, `"RUN1,RUN2"` or `"name=RUN,..."`) built as models in the student's compute dtype:

    teachers.abstract(mesh)          {name: ShapeDtypeStruct params with their shardings}, no weight read
    teachers.shard(mesh)             {name: params on the student's mesh, the teacher's own logical axes}
    teachers.apply(frozen, name, …)  one teacher's forward inside the student's step; rng= switches
                                     dropout on (Monte-Carlo passes), none: deterministic
    teachers.flops_per_token(f)      Σ over teachers of f(teacher's EncoderConfig)

The step receives the sharded params as `frozen` = {name: params}; they are never trained or saved.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
from typing import Any, Callable

import flax.linen as nn
import jax
import ml_collections

from atm import checkpoint as atm_checkpoint
from atm import sharding
from atm.data import vocab as vocab_lib
from atm.models.encoder import EncoderConfig


@dataclasses.dataclass
class Run:
    directory: str
    config: ml_collections.ConfigDict
    vocab_path: str
    key: str  # the config key that named it, for every error

    @functools.cached_property
    def checkpoints(self) -> atm_checkpoint.Checkpointer:
        return atm_checkpoint.Checkpointer(os.path.join(self.directory, "checkpoints"), 1, False)

    def model_config(self, dtype: str | None = None) -> EncoderConfig:
        """The run's encoder; `dtype` overrides its compute dtype (the student's configured one)."""
        cfg = self.config.model.to_dict()
        if dtype:
            cfg["dtype"] = dtype
        return EncoderConfig(**cfg)

    @property
    def shapes_only(self) -> bool:
        """A teacher named by its config (`shapes:configs/X.py[:arg]`): shapes for `python -m atm.aot`, no weights."""
        return self.directory.startswith(SHAPES_PREFIX)

    def read_params(self) -> tuple[int, Any]:
        """(step, host params) of the newest intact checkpoint."""
        if self.shapes_only:
            raise ValueError(f"{self.key}={self.directory!r} names a teacher by its config: it has shapes but no "
                             f"weights (for python -m atm.aot); train with a finished run directory instead")
        step, params = self.checkpoints.latest_intact_params(f"{self.key}={self.directory!r}")
        return step, jax.device_get(params)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """'encoder.layer_0...kernel' → shape of the newest checkpoint's params, from its metadata only."""
        newest = self.checkpoints.steps()[-1]
        return {name[len("params."):]: shape for name, (shape, _) in self.checkpoints.saved_shapes(newest).items()
                if name.startswith("params.")}

    def describe(self) -> str:
        return self.directory


SHAPES_PREFIX = "shapes:"


def load_run(directory: str, key: str, objectives: tuple[str, ...]) -> Run:
    """The run in `directory` (config and vocabulary; no weights). `objectives`: the objectives the
    run may have been trained with. `shapes:configs/X.py[:arg]` is a teacher known by its config alone
    (no checkpoint, no vocabulary file): enough to compile a step ahead of time, not to train."""
    if not directory:
        raise ValueError(f"{key} is empty: set it to a finished atm run directory")
    if directory.startswith(SHAPES_PREFIX):
        from atm import config as atm_config

        config = atm_config.load_config_file(directory[len(SHAPES_PREFIX):])
        if config.objective not in objectives:
            raise ValueError(f"{key}={directory!r} is a {config.objective!r} config; this needs one of {list(objectives)}")
        return Run(directory, config, "", key)
    directory = os.path.abspath(directory)
    config_path = os.path.join(directory, "config.json")
    if not os.path.exists(config_path):
        raise FileNotFoundError(f"{key}={directory!r}: no config.json (is it an atm run directory?)")
    with open(config_path) as f:
        config = ml_collections.ConfigDict(json.load(f))
    if config.objective not in objectives:
        raise ValueError(f"{key}={directory!r} is a {config.objective!r} run; this needs one of {list(objectives)}")
    ckpt_dir = os.path.join(directory, "checkpoints")
    if not os.path.isdir(ckpt_dir) or not atm_checkpoint.Checkpointer(ckpt_dir, 1, False).steps():
        raise FileNotFoundError(f"{key}={directory!r}: no checkpoint under {ckpt_dir}")
    kept = [p for p in (config.data.vocab, os.path.join(directory, "vocab.model"), os.path.join(directory, "tokenizer"))
            if p and os.path.exists(p)]
    if not kept:
        raise FileNotFoundError(f"{key}={directory!r}: its vocabulary ({config.data.vocab or 'vocab.model'}) "
                                f"is missing")
    return Run(directory, config, os.path.abspath(kept[0]), key)


def vocabulary_location(vocab) -> str:
    """The file or directory a vocabulary was read from (atm SentencePiece or Hugging Face)."""
    return getattr(vocab, "path", None) or vocab.where


def vocabulary_digest(path: str) -> str:
    """sha256 of a vocabulary file, or of every file of a tokenizer directory (names and contents), of what the
    path stands for (`vocabulary_source`): a run given the folder and one given its tokenizer.json agree."""
    path = vocab_lib.vocabulary_source(path)
    if os.path.isfile(path):
        return atm_checkpoint.file_digest(path)
    digest = hashlib.sha256()
    for root, _, names in sorted(os.walk(path)):
        for name in sorted(names):
            full = os.path.join(root, name)
            digest.update(f"{os.path.relpath(full, path)}:{atm_checkpoint.file_digest(full)}\n".encode())
    return digest.hexdigest()


def check_same_vocabulary(run: Run, vocab, key: str):
    """Distillation and weight copying compare token ids, so the vocabularies must be the same content."""
    if run.shapes_only:
        return  # no vocabulary file: the callers compare vocabulary sizes
    mine = vocabulary_location(vocab)
    if vocabulary_digest(run.vocab_path) != vocabulary_digest(mine):
        raise ValueError(
            f"{key}: the teacher {run.directory} uses the vocabulary {run.vocab_path} but this run uses "
            f"{mine} ({vocab.size} pieces), and they differ; set config.data.vocab={run.vocab_path}")


def parse_teachers(spec: str, key: str) -> list[tuple[str, str]]:
    """[(name, directory)] from "RUN", "RUN1,RUN2" or "name=RUN,...": names default to the directory's
    base name (a repeated one gets _2, _3, ...)."""
    entries = [part.strip() for part in spec.split(",") if part.strip()]
    if not entries:
        raise ValueError(f"{key} is empty: set it to a finished atm run directory (several: RUN1,RUN2 or a=RUN1,b=RUN2)")
    named = []
    for entry in entries:
        name, _, directory = entry.rpartition("=")
        base = name or os.path.basename(os.path.normpath(directory)) or "teacher"
        if not name and directory.startswith(SHAPES_PREFIX):  # shapes:configs/atm_teacher.py:2p3b → atm_teacher_2p3b
            base = re.sub(r"\W", "_", base.replace(".py", "")) or "teacher"
        name, n = base, 1
        while name in dict(named):
            n += 1
            name = f"{base}_{n}"
        if not name.isidentifier():
            raise ValueError(f"{key}: teacher name {name!r} (from {entry!r}) must be an identifier; write name=RUN")
        named.append((name, directory))
    return named


class Teachers:
    """One or several frozen teachers of the same kind (see the module docstring)."""

    def __init__(self, spec: str, key: str, objectives: tuple[str, ...], dtype: str,
                 make_model: Callable[[EncoderConfig, bool], nn.Module], example_args: tuple):
        self.key = key
        self.runs = {name: load_run(directory, key, objectives) for name, directory in parse_teachers(spec, key)}
        self.configs = {name: run.model_config(dtype) for name, run in self.runs.items()}
        self.models = {name: make_model(cfg, True) for name, cfg in self.configs.items()}
        self.dropout_models = {name: make_model(cfg, False) for name, cfg in self.configs.items()}
        self.example_args = example_args
        self.steps: dict[str, int] = {}  # the checkpoint step each teacher was read from (after shard)

    @property
    def names(self) -> list[str]:
        return list(self.runs)

    def __len__(self) -> int:
        return len(self.runs)

    def check_vocabulary(self, vocab):
        for run in self.runs.values():
            check_same_vocabulary(run, vocab, self.key)

    def _boxed(self, name: str, mesh):
        with sharding.MeshContext(mesh):
            return jax.eval_shape(lambda: self.models[name].init(jax.random.key(0), *self.example_args))["params"]

    def abstract(self, mesh) -> dict[str, Any]:
        """{name: ShapeDtypeStruct tree with shardings} of the params the step will receive; reads no weight."""
        out = {}
        for name in self.runs:
            boxed = self._boxed(name, mesh)
            shardings = sharding.logical_sharding(mesh, nn.get_partition_spec(boxed))
            out[name] = jax.tree_util.tree_map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                                               sharding.strip_boxes(boxed), shardings)
        return out

    def shard(self, mesh) -> dict[str, Any]:
        """{name: params} read from each newest intact checkpoint and placed on `mesh`; only the model's
        own subtrees are kept (a distillation run also stores its hidden-state projection)."""
        return {name: self._shard_one(name, mesh) for name in self.runs}

    def _shard_one(self, name: str, mesh):
        run, key = self.runs[name], f"{self.key} ({name}={self.runs[name].directory})"
        boxed = self._boxed(name, mesh)
        self.steps[name], params = run.read_params()
        missing = sorted(set(boxed) - set(params))
        if missing:
            raise ValueError(f"{key}: the teacher checkpoint has no {missing} (it has {sorted(params)})")
        params = {part: params[part] for part in boxed}
        abstract = sharding.strip_boxes(boxed)
        want = {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(abstract)}
        have = {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)}
        if want != have:
            raise ValueError(f"{key}: the teacher checkpoint's tensors do not match its config.json model: missing "
                             f"{sorted(want - have)[:5]}, unexpected {sorted(have - want)[:5]}")
        for (path, w), h in zip(jax.tree_util.tree_leaves_with_path(abstract), jax.tree_util.tree_leaves(params)):
            if w.shape != h.shape:
                raise ValueError(f"{key}: teacher tensor {jax.tree_util.keystr(path)} has shape {h.shape} in the "
                                 f"checkpoint but {w.shape} in the teacher's own config.json model")
        shardings = sharding.logical_sharding(mesh, nn.get_partition_spec(boxed))
        sharding.check_divisible(abstract, shardings)
        return jax.device_put(params, shardings)

    def random_params(self, mesh, seed: int = 0) -> dict[str, Any]:
        """{name: freshly initialised params} sharded like `shard`'s: for benchmarks of a step with a
        teacher known by its shapes alone. Never a teacher to distil from."""
        out = {}
        for name in self.runs:
            boxed = self._boxed(name, mesh)
            shardings = sharding.logical_sharding(mesh, nn.get_partition_spec(boxed))
            init = jax.jit(lambda r, n=name: nn.unbox(self.models[n].init(r, *self.example_args))["params"],
                           out_shardings=shardings)
            with sharding.MeshContext(mesh):
                out[name] = init(jax.random.key(seed))
        return out

    def apply(self, frozen: dict, name: str, *args, rng: jax.Array | None = None, **kwargs):
        """Teacher `name`'s forward on `frozen[name]`: deterministic, or with dropout drawn from `rng`."""
        model = self.models[name] if rng is None else self.dropout_models[name]
        return model.apply({"params": frozen[name]}, *args, rngs={} if rng is None else {"dropout": rng}, **kwargs)

    def flops_per_token(self, per_model: Callable[[EncoderConfig], float]) -> float:
        return sum(per_model(cfg) for cfg in self.configs.values())

    def describe(self) -> str:
        return ", ".join(f"{name}={run.directory}" + (f" (step {self.steps[name]})" if name in self.steps else "")
                         for name, run in self.runs.items())
