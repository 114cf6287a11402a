"""Task heads on top of the encoder.

`EncoderWithHeads` runs the encoder once and applies named heads:
  sequence  [CLS] → pooler (dense + tanh, as BERT) → dropout → classes   (intent, SST-2, NLI)
  token     every position → dropout → classes                           (slots, NER)
  span      every position → 2 logits: answer start and end               (extractive QA)
Each head returns its own logits, so task-level distillation can read a teacher's logits per
head and multi-task training can attach several heads to one encoder. `query_positions`
(NarrowBERT: only [CLS] or labelled tokens go through the last layers) will plug in here.
"""
from __future__ import annotations

import flax.linen as nn
import jax

from atm.models.encoder import Encoder, EncoderConfig, _init, _zeros


def classifier(cfg: EncoderConfig, num_classes: int, input_axis: str) -> nn.Dense:
    return nn.Dense(num_classes, dtype=cfg.compute_dtype, param_dtype=cfg.weight_dtype,
                    kernel_init=_init(cfg, (input_axis, "classes")), bias_init=_zeros(("classes",)),
                    name="classifier")


class SequenceHead(nn.Module):
    cfg: EncoderConfig
    num_classes: int
    deterministic: bool

    @nn.compact
    def __call__(self, h_BxLxD: jax.Array) -> jax.Array:
        cfg = self.cfg
        pooled = nn.Dense(cfg.hidden_size, dtype=cfg.compute_dtype, param_dtype=cfg.weight_dtype,
                          kernel_init=_init(cfg, ("embed", "mlp")), bias_init=_zeros(("mlp",)),
                          name="pooler")(h_BxLxD[:, 0])
        pooled = nn.Dropout(cfg.hidden_dropout, deterministic=self.deterministic)(jax.numpy.tanh(pooled))
        return classifier(cfg, self.num_classes, "mlp")(pooled)


class TokenHead(nn.Module):
    cfg: EncoderConfig
    num_classes: int
    deterministic: bool

    @nn.compact
    def __call__(self, h_BxLxD: jax.Array) -> jax.Array:
        cfg = self.cfg
        h = nn.Dropout(cfg.hidden_dropout, deterministic=self.deterministic)(h_BxLxD)
        return classifier(cfg, self.num_classes, "embed")(h)


class SpanHead(nn.Module):
    """Start and end logits at every position (BERT's SQuAD head: one dense layer, no dropout)."""
    cfg: EncoderConfig
    num_classes: int  # 2: start, end
    deterministic: bool

    @nn.compact
    def __call__(self, h_BxLxD: jax.Array) -> jax.Array:
        return classifier(self.cfg, self.num_classes, "embed")(h_BxLxD)


class EncoderWithHeads(nn.Module):
    """heads: ((name, kind, num_classes), ...). Returns {name: logits}."""
    cfg: EncoderConfig
    heads: tuple[tuple[str, str, int], ...]
    deterministic: bool = True

    @nn.compact
    def __call__(self, ids_BxL, segment_ids_BxL=None, positions_BxL=None, token_types_BxL=None):
        h = Encoder(self.cfg, self.deterministic, name="encoder")(ids_BxL, segment_ids_BxL, positions_BxL,
                                                                  token_types_BxL)
        classes = {"sequence": SequenceHead, "token": TokenHead, "span": SpanHead}
        return {name: classes[kind](self.cfg, n, self.deterministic, name=name)(h) for name, kind, n in self.heads}
