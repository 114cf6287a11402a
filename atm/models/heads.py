"""Task heads on top of the encoder.

`EncoderWithHeads` runs the encoder once and applies named heads:
  sequence  [CLS] → pooler (dense + tanh, as BERT) → dropout → classes   (intent, SST-2, NLI)
  token     every position → dropout → classes                           (slots, NER)
  span      every position → 2 logits: answer start and end               (extractive QA)
Each head returns its own logits, so task-level distillation can read a teacher's logits per
head and multi-task training can attach several heads to one encoder.

NarrowBERT (`config.model.arrangement`, atm/models/narrow.py): when every head reads only [CLS],
[CLS] is the query set S and only it runs through the narrow layers. Token heads can be given their
query set: [CLS] first, then the labelled tokens (`token_query_positions`; fine-tuning does so with
`config.finetune.token_query_slots`); their logits are scattered back to (B, L, C), zeros at the
positions not in S. Otherwise, and always with a span head, S is every position (no speed-up).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from atm.models.encoder import Encoder, EncoderConfig, normal_init, zeros_init


def classifier(cfg: EncoderConfig, num_classes: int, input_axis: str) -> nn.Dense:
    return nn.Dense(num_classes, dtype=cfg.compute_dtype, param_dtype=cfg.weight_dtype,
                    kernel_init=normal_init(cfg, (input_axis, "classes")), bias_init=zeros_init(("classes",)),
                    name="classifier")


class SequenceHead(nn.Module):
    cfg: EncoderConfig
    num_classes: int
    deterministic: bool

    @nn.compact
    def __call__(self, h_BxLxD: jax.Array) -> jax.Array:
        cfg = self.cfg
        pooled = nn.Dense(cfg.hidden_size, dtype=cfg.compute_dtype, param_dtype=cfg.weight_dtype,
                          kernel_init=normal_init(cfg, ("embed", "mlp")), bias_init=zeros_init(("mlp",)),
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


def query_positions(heads: tuple[tuple[str, str, int], ...], ids_BxL: jax.Array) -> jax.Array | None:
    """The encoder's query set for these heads: [CLS] (position 0) when all are sequence heads, else
    None (every position)."""
    if all(kind == "sequence" for _, kind, _ in heads):
        return jax.numpy.zeros((ids_BxL.shape[0], 1), jax.numpy.int32)
    return None


def token_query_positions(word_ids_BxL: jax.Array, slots: int) -> jax.Array:
    """(B, slots): [CLS] (0), then the first subword of each word in order — the tokens that carry slot
    and NER labels (`word_ids`: the word of each token, -1 off the words) — padded with 0. A row with
    more than slots - 1 words loses the rest: `atm.data.labelled` checks the data against `slots`."""
    batch, length = word_ids_BxL.shape
    previous_BxL = jnp.pad(word_ids_BxL[:, :-1], ((0, 0), (1, 0)), constant_values=-1)
    first_BxL = (word_ids_BxL >= 0) & (word_ids_BxL != previous_BxL)
    index_L = jnp.arange(length)
    firsts_first_BxL = jnp.argsort(jnp.where(first_BxL, index_L, length + index_L), axis=1)[:, :slots - 1]
    words_BxK = jnp.where(jnp.take_along_axis(first_BxL, firsts_first_BxL, axis=1), firsts_first_BxL, 0)
    return jnp.concatenate([jnp.zeros((batch, 1), words_BxK.dtype), words_BxK], axis=1).astype(jnp.int32)


class EncoderWithHeads(nn.Module):
    """heads: ((name, kind, num_classes), ...). Returns {name: logits}."""
    cfg: EncoderConfig
    heads: tuple[tuple[str, str, int], ...]
    deterministic: bool = True

    @nn.compact
    def __call__(self, ids_BxL, segment_ids_BxL=None, positions_BxL=None, token_types_BxL=None,
                 token_query_positions_BxM=None):
        """`token_query_positions_BxM` ([CLS] at column 0, e.g. `token_query_positions`): the positions
        the encoder computes for the heads (NarrowBERT's S); token logits come back as (B, L, C)."""
        query_positions_BxM = query_positions(self.heads, ids_BxL)
        if token_query_positions_BxM is not None:
            if any(kind == "span" for _, kind, _ in self.heads):
                raise ValueError("token query positions: a span (QA) head scores every position")
            query_positions_BxM = token_query_positions_BxM
        h = Encoder(self.cfg, self.deterministic, name="encoder")(ids_BxL, segment_ids_BxL, positions_BxL,
                                                                  token_types_BxL, query_positions_BxM)
        classes = {"sequence": SequenceHead, "token": TokenHead, "span": SpanHead}
        out = {}
        for name, kind, n in self.heads:
            logits = classes[kind](self.cfg, n, self.deterministic, name=name)(h)
            if kind == "token" and token_query_positions_BxM is not None:  # back to (B, L, C)
                rows_Bx1 = jnp.arange(ids_BxL.shape[0])[:, None]
                # Scatter-add: the padding columns all point at [CLS], whose token label is never scored.
                full_BxLxC = jnp.zeros(ids_BxL.shape + (n,), logits.dtype)
                logits = full_BxLxC.at[rows_Bx1, token_query_positions_BxM].add(logits)
            out[name] = logits
        return out
