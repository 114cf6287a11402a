"""Masked-language modelling (BERT/RoBERTa/ATM stage 1 and 2).

Masks are drawn inside the jitted step from a key folded from (seed, step), so
they are dynamic (new every step), deterministic (a resumed run redraws the same
ones) and independent of how the batch is sharded or micro-batched.
Each sequence gets a fixed number M of mask slots, so shapes stay static; a
sequence with n maskable tokens uses round(mask_rate · n) of them.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from atm import config as atm_config
from atm.models.encoder import EncoderForMLM
from atm.objectives import Objective, register


def num_mask_slots(mask_rate: float, seq_len: int, max_predictions: int = -1) -> int:
    return max_predictions if max_predictions > 0 else max(1, round(mask_rate * seq_len))


def mask_tokens(rng: jax.Array, ids_BxL: jax.Array, maskable_BxL: jax.Array, *, num_slots: int, mask_rate: float,
                mask_token_rate: float, random_token_rate: float, mask_id: int, random_low: int,
                vocab_size: int, word_ids_BxL: jax.Array | None = None) -> dict:
    """BERT masking: pick round(rate·n) maskable positions; of those 80% [MASK], 10% random, 10% kept.

    With `word_ids_BxL` (whole-word masking) every piece of a word shares the word's random
    score, so words are chosen whole (the last one may be cut by the token budget).
    Returns the corrupted ids and, per slot, the position, the original token and a 0/1 weight.
    """
    choose_rng, kind_rng, random_rng = jax.random.split(rng, 3)
    uniform = jax.random.uniform(choose_rng, ids_BxL.shape)
    if word_ids_BxL is not None:
        uniform = jnp.take_along_axis(uniform, word_ids_BxL, axis=1)
    scores = jnp.where(maskable_BxL, uniform, -1.0)
    _, positions_BxM = jax.lax.top_k(scores, num_slots)
    n_maskable = maskable_BxL.sum(axis=-1)
    n_masked = jnp.minimum(jnp.round(mask_rate * n_maskable), num_slots)
    weights_BxM = (jnp.arange(num_slots)[None, :] < n_masked[:, None]) & jnp.take_along_axis(
        maskable_BxL, positions_BxM, axis=1)
    targets_BxM = jnp.take_along_axis(ids_BxL, positions_BxM, axis=1)
    kind = jax.random.uniform(kind_rng, positions_BxM.shape)
    random_ids = jax.random.randint(random_rng, positions_BxM.shape, random_low, vocab_size)
    new_BxM = jnp.where(kind < mask_token_rate, mask_id,
                        jnp.where(kind < mask_token_rate + random_token_rate, random_ids, targets_BxM))
    new_BxM = jnp.where(weights_BxM, new_BxM, targets_BxM)
    rows = jnp.arange(ids_BxL.shape[0])[:, None]
    return {
        "input_ids": ids_BxL.at[rows, positions_BxM].set(new_BxM.astype(ids_BxL.dtype)),
        "masked_positions": positions_BxM,
        "masked_targets": targets_BxM,
        "masked_weights": weights_BxM.astype(jnp.float32),
    }


def cross_entropy(logits_xC: jax.Array, labels_x: jax.Array) -> jax.Array:
    """Per-position −log p(label), in fp32, for any leading shape.

    One-hot rather than a gather: partitions cleanly when the class axis is tensor-sharded (a
    gather's gradient did not, see tests/test_sharding.py)."""
    logp = jax.nn.log_softmax(logits_xC.astype(jnp.float32), axis=-1)
    return -jnp.sum(logp * jax.nn.one_hot(labels_x, logp.shape[-1], dtype=logp.dtype), axis=-1)


def masked_lm_sums(logits_BxMxV: jax.Array, targets_BxM: jax.Array, weights_BxM: jax.Array):
    """Summed cross-entropy and correct predictions over the weighted slots."""
    nll = cross_entropy(logits_BxMxV, targets_BxM)
    correct = (jnp.argmax(logits_BxMxV, axis=-1) == targets_BxM).astype(jnp.float32)
    return (nll * weights_BxM).sum(), {"weight": weights_BxM.sum(), "accuracy": (correct * weights_BxM).sum()}


def encoder_flops_per_token(cfg, seq_len: int, predictions_per_token: float,
                            queries_per_sequence: float | None = None) -> float:
    """Training FLOPs per token (6× matmul params + attention), MLM head only on predicted slots.

    `queries_per_sequence`: the size of NarrowBERT's query set S (the narrow layers of
    `cfg.arrangement` run only on it); None: every position."""
    from atm.models import narrow

    d = cfg.hidden_size
    layers = narrow.stack_forward_flops(cfg, seq_len, queries_per_sequence) / seq_len
    forward = layers + predictions_per_token * 2 * (d * d + d * cfg.vocab_size)
    return 3.0 * forward


@register
class MaskedLM(Objective):
    name = "mlm"

    @staticmethod
    def default_sections():
        return {"mlm": ml_collections.ConfigDict({
            "mask_rate": 0.15,
            "mask_token_rate": 0.8,
            "random_token_rate": 0.1,
            "max_predictions": -1,  # mask slots per sequence; -1: round(mask_rate · seq_len)
        })}

    @staticmethod
    def value_ranges():
        return {"mlm.mask_rate": atm_config.SHARE, "mlm.mask_token_rate": atm_config.UNIT,
                "mlm.random_token_rate": atm_config.UNIT,
                "mlm.max_predictions": ("-1 (from mask_rate) or >= 1", lambda v: v == -1 or v >= 1)}

    def __init__(self, config, vocab, train_data=None):
        super().__init__(config, vocab, train_data)
        self.model_cfg = atm_config.model_config(config)
        if self.model_cfg.vocab_size < vocab.size:
            raise ValueError(f"config.model.vocab_size={self.model_cfg.vocab_size} is smaller than the "
                             f"vocabulary ({vocab.size} pieces, config.data.vocab)")
        self.seq_len = config.data.seq_len
        self.num_slots = num_mask_slots(config.mlm.mask_rate, self.seq_len, config.mlm.max_predictions)
        self.train_model = EncoderForMLM(self.model_cfg, deterministic=False)
        self.eval_model = EncoderForMLM(self.model_cfg, deterministic=True)

    def example_batch(self, batch_size):
        shape = (batch_size, self.seq_len)
        names = ("input_ids", "segment_ids", "positions") + (
            ("word_ids",) if self.config.data.whole_word_masking else ())
        return {k: jax.ShapeDtypeStruct(shape, jnp.int32) for k in names}

    def init_params(self, rng, batch):
        positions = jnp.zeros((batch["input_ids"].shape[0], self.num_slots), jnp.int32)
        return self.eval_model.init(rng, batch["input_ids"], batch["segment_ids"], batch["positions"],
                                    masked_positions_BxM=positions)["params"]

    def prepare(self, batch, rng):
        ids = batch["input_ids"]
        maskable = (batch["segment_ids"] > 0) & ~jnp.isin(ids, jnp.asarray(self.vocab.special_ids))
        mlm = self.config.mlm
        masked = mask_tokens(rng, ids, maskable, num_slots=self.num_slots, mask_rate=mlm.mask_rate,
                             mask_token_rate=mlm.mask_token_rate, random_token_rate=mlm.random_token_rate,
                             mask_id=self.vocab.mask_id, random_low=self.vocab.first_regular_id,
                             vocab_size=self.vocab.size, word_ids_BxL=batch.get("word_ids"))
        return {**batch, **masked}

    def loss(self, params, frozen, batch, rng, train):
        model = self.train_model if train else self.eval_model
        logits = model.apply({"params": params}, batch["input_ids"], batch["segment_ids"], batch["positions"],
                             masked_positions_BxM=batch["masked_positions"], rngs={"dropout": rng})
        return masked_lm_sums(logits, batch["masked_targets"], batch["masked_weights"])

    def flops_per_token(self):
        return encoder_flops_per_token(self.model_cfg, self.seq_len, self.num_slots / self.seq_len, self.num_slots)
