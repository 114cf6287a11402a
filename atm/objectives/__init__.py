"""Objective registry: the training loop dispatches on `config.objective`.

A new objective (distillation, fine-tuning, ELECTRA, multi-task, amalgamation)
is a new module here, `atm/objectives/<name>.py`, that subclasses `Objective` with `name = "<name>"`
and calls `register` (a name registered twice is an error; `get` imports the module by name); the loop
in `atm/train.py` never changes. The contract:

  default_sections()          extra config sections the objective owns (validated like the rest)
  build_data(config, workdir) (vocab, train batcher, eval batcher, stats); default: MLM text sources
  init_params(rng, batch)     trainable params, boxed with logical axis names (run under eval_shape/jit)
  frozen_params(mesh)         params that are read but never trained (teachers: {name: params}), already
                              sharded; {} if none. frozen_abstract(mesh): their shapes and shardings only
  prepare(batch, rng)         whole-batch preprocessing inside the jitted step (e.g. dynamic masking),
                              before the batch is split into gradient-accumulation micro-batches
  loss(params, frozen, batch, rng, train)
                              -> (loss_sum, sums): a summed loss and a dict of summed figures that
                              includes "weight" (the loss denominator); the loop divides once over
                              the whole batch, so gradient accumulation equals one big batch.
  flops_per_token()           training FLOPs per input token (for MFU); inference is a third of it
  eval_outputs(params, frozen, batch, rng)
                              what one jitted eval step returns (default: the loss sums)
  summarize(outputs, batches, eval_data) host-side eval figures from all eval steps (default: sums / weight);
                              fine-tuning computes span F1, SemER, ... here
"""
from __future__ import annotations

import difflib
import importlib
import pkgutil
from typing import Any, Callable

import jax
import ml_collections
import numpy as np

_REGISTRY: dict[str, type["Objective"]] = {}


class Objective:
    name: str = ""

    def __init__(self, config: ml_collections.ConfigDict, vocab: Any, train_data: Any = None):
        self.config = config
        self.vocab = vocab
        self.train_data = train_data

    @staticmethod
    def default_sections() -> dict[str, ml_collections.ConfigDict]:
        return {}

    @staticmethod
    def value_ranges() -> dict[str, tuple[str, Callable[[Any], bool]]]:
        """Allowed values of the numeric settings in `default_sections` ("section.key": (text, test)),
        checked by `atm.config.validate` before anything is built."""
        return {}

    @classmethod
    def build_data(cls, config: ml_collections.ConfigDict, workdir: str):
        from atm.data import sources
        return sources.build(config, workdir)

    def example_batch(self, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
        raise NotImplementedError

    def init_params(self, rng: jax.Array, batch: dict) -> Any:
        raise NotImplementedError

    def frozen_params(self, mesh) -> Any:
        return {}

    def frozen_abstract(self, mesh) -> Any:
        """ShapeDtypeStructs (with shardings) of `frozen_params(mesh)`, reading no weight (AOT compiles)."""
        return {}

    def prepare(self, batch: dict, rng: jax.Array) -> dict:
        return batch

    def loss(self, params, frozen, batch: dict, rng: jax.Array, train: bool):
        raise NotImplementedError

    def flops_per_token(self) -> float:
        raise NotImplementedError

    def eval_outputs(self, params, frozen, batch: dict, rng: jax.Array) -> dict:
        loss_sum, sums = self.loss(params, frozen, batch, rng, False)
        return {**sums, "loss": loss_sum}

    def summarize(self, outputs: list[dict], batches: list[dict], eval_data: Any = None) -> dict:
        """Host-side figures of one eval pass; `eval_data` is the batcher the batches came from."""
        totals = {k: float(sum(np.sum(o[k]) for o in outputs)) for k in outputs[0]}
        weight = max(totals.pop("weight"), 1.0)
        return {k: v / weight for k, v in totals.items()}

    def load_pretrained(self, params: Any, pretrained: Any) -> tuple[Any, list[str]]:
        """Take every tensor of `params` that `pretrained` has at the same path and shape
        (e.g. the encoder of an MLM run); the rest (new heads) keeps its fresh initialisation.
        Returns (params, paths copied). A shape mismatch under a shared path is an error. From an ELECTRA
        run only its discriminator is taken (`encoder`, `discriminator_head`; never its `generator` unless
        this objective has one), and its shape must be config.model's."""
        from atm import config as atm_config
        from atm.objectives import electra

        electra.check_discriminator_fits(pretrained, atm_config.model_config(self.config))
        flat_pre = {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_leaves_with_path(pretrained)}
        copied = []

        def take(path, fresh):
            key = jax.tree_util.keystr(path)
            if key not in flat_pre:
                return fresh
            if flat_pre[key].shape != fresh.shape:
                raise ValueError(f"config.init_from: {key} has shape {flat_pre[key].shape} in the pretrained "
                                 f"checkpoint but {fresh.shape} in this model (config.model differs)")
            copied.append(key)
            return np.asarray(flat_pre[key], dtype=fresh.dtype)
        return jax.tree_util.tree_map_with_path(take, params), copied


def register(cls: type[Objective]) -> type[Objective]:
    """Add `cls` under `cls.name`. A name is registered once: a second class under it is an error
    naming both. An objective in this package lives in the module of its name (`get` imports it by name)."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a `name`")
    package, _, module = cls.__module__.rpartition(".")
    if package == __name__ and cls.name != module:
        raise ValueError(f"{cls.__module__}.{cls.__qualname__} has name={cls.name!r}; an objective of {__name__} "
                         f"is named after its module ({module!r})")
    known = _REGISTRY.get(cls.name)
    if known is not None and known is not cls:
        raise ValueError(f"objective {cls.name!r} is registered twice: {known.__module__}.{known.__qualname__} "
                         f"and {cls.__module__}.{cls.__qualname__}")
    _REGISTRY[cls.name] = cls
    return cls


def get(name: str) -> type[Objective]:
    """The objective registered as `name`, importing `atm.objectives.<name>` first if needed."""
    if name not in _REGISTRY and str(name) in _module_names():
        importlib.import_module(f"{__name__}.{name}")
    if name not in _REGISTRY:
        near = difflib.get_close_matches(str(name), names(), n=3)
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        raise ValueError(f"config.objective={name!r} is not registered{hint} (registered: {', '.join(names())})")
    return _REGISTRY[name]


def names() -> list[str]:
    """Every objective: those of this package's modules (imported) and any registered from elsewhere."""
    for module in _module_names():
        importlib.import_module(f"{__name__}.{module}")
    return sorted(_REGISTRY)


def _module_names() -> list[str]:
    return [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]
