"""Objective registry: the training loop dispatches on `config.objective`.

A new objective (distillation, fine-tuning, ELECTRA, multi-task, amalgamation)
is a new module here that subclasses `Objective` and calls `register`; the loop
in `atm/train.py` never changes. The contract:

  default_sections()          extra config sections the objective owns (validated like the rest)
  init_params(rng, batch)     trainable params, boxed with logical axis names (run under eval_shape/jit)
  frozen_params(mesh)         params that are read but never trained (a teacher), already sharded; {} if none
  prepare(batch, rng)         whole-batch preprocessing inside the jitted step (e.g. dynamic masking),
                              before the batch is split into gradient-accumulation micro-batches
  loss(params, frozen, batch, rng, train)
                              -> (loss_sum, sums): a summed loss and a dict of summed figures that
                              includes "weight" (the loss denominator); the loop divides once over
                              the whole batch, so gradient accumulation equals one big batch.
  flops_per_token()           training FLOPs per input token (for MFU); inference is a third of it
"""
from __future__ import annotations

import difflib
from typing import Any, Callable

import jax
import ml_collections

_REGISTRY: dict[str, type["Objective"]] = {}


class Objective:
    name: str = ""

    def __init__(self, config: ml_collections.ConfigDict, vocab: Any):
        self.config = config
        self.vocab = vocab

    @staticmethod
    def default_sections() -> dict[str, ml_collections.ConfigDict]:
        return {}

    def example_batch(self, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
        raise NotImplementedError

    def init_params(self, rng: jax.Array, batch: dict) -> Any:
        raise NotImplementedError

    def frozen_params(self, mesh) -> Any:
        return {}

    def prepare(self, batch: dict, rng: jax.Array) -> dict:
        return batch

    def loss(self, params, frozen, batch: dict, rng: jax.Array, train: bool):
        raise NotImplementedError

    def flops_per_token(self) -> float:
        raise NotImplementedError


def register(cls: type[Objective]) -> type[Objective]:
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a `name`")
    _REGISTRY[cls.name] = cls
    return cls


def get(name: str) -> type[Objective]:
    _import_builtin()
    if name not in _REGISTRY:
        near = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        raise ValueError(f"config.objective={name!r} is not registered; did you mean {near}? "
                         f"(registered: {sorted(_REGISTRY)})")
    return _REGISTRY[name]


def names() -> list[str]:
    _import_builtin()
    return sorted(_REGISTRY)


def _import_builtin():
    # Importing the modules registers them.
    from atm.objectives import mlm  # noqa: F401
