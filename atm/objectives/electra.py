"""ELECTRA: replaced-token-detection pretraining (Clark et al. 2020, arXiv 2003.10555; google-research/electra).

A small generator G and the discriminator D (the model of `config.model`) train jointly:

    x̃ = x with M = round(mask_rate·L) slots per row chosen (fixed slots, as MLM): 85% → [MASK], 15% kept
    z_G = G(x̃) at the gathered masked slots, tied to the shared word embeddings
    x̂_m = argmax(z_G,m / T + Gumbel) under stop_gradient          (a draw from softmax(z_G/T), T = 1)
    y_i = [x̂_i ≠ x_i]                                             (a draw equal to the original is "original")
    L = mean_{masked slots} CE(z_G, x) + λ · mean_{non-pad tokens} BCE(D(x̂)_i, y_i),   λ = 50

[CLS]/[SEP] count among the RTD tokens; only padding (segment id 0) is left out. Sizes as
google-research/electra: G has D's depth, hidden = round(generator_hidden_fraction · D's hidden), FFN 4× its
hidden, heads = max(1, hidden // 64). Shared by G and D: the word, position and type embeddings and the
embedding LayerNorm (width `embedding_size`); each has its own projection from the embedding width to its
hidden size when they differ. No random-token replacement in the masking (`mask_token_rate` = 0.85, the rest kept).

Params: D's parts at the top level, as an `EncoderForReplacedTokenDetection` has them (`encoder`,
`discriminator_head`), and the generator's own parts under `generator` (its layers, its embedding projection,
its `mlm_head`): `--config.init_from` of any other objective copies `encoder/...` by path and never sees the
generator, and `atm.convert` exports D as `ElectraForPreTraining` and G (shared tensors merged back in,
`generator_params`) as `ElectraForMaskedLM`.

The Gumbel noise of a row comes from a key drawn in `prepare` over the whole batch, so neither gradient
accumulation nor the mesh changes the replacements. Losses are returned as sums over the non-pad tokens
(`weight`); the generator's sum is scaled by (tokens / masked slots of the whole batch), also fixed in
`prepare`, so the loop's one division gives exactly L, with or without gradient accumulation. Logged:
generator_loss, generator_accuracy (masked slots), discriminator_loss (the unweighted BCE mean),
discriminator_accuracy (tokens), rtd_precision, rtd_recall, rtd_f1 (on replaced tokens; exact per step with
grad_accum_steps = 1, else the token-weighted mean over micro-batches; eval figures are always exact) and
replaced_share (share of tokens replaced); the eval adds rtd_auc, the discriminator's ROC AUC over its tokens.
[unverified] defaults: λ = 50, the 0.25 generator fraction (the paper's best for small/base), 85/15 masking
with no random tokens, temperature 1 — google-research/electra's `configure_pretraining.py`, not re-derived.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from atm import config as atm_config
from atm.models import narrow
from atm.models.electra import EncoderForReplacedTokenDetection
from atm.models.encoder import EncoderConfig, EncoderForMLM
from atm.objectives import Objective, register
from atm.objectives.mlm import MaskedLM, mask_tokens, masked_lm_sums, num_mask_slots

GENERATOR_KEY = "generator"
PROJECTION = "embeddings_project"  # the one embedding tensor each model has for itself


def generator_config(cfg: EncoderConfig, hidden_fraction: float, num_heads: int = 0) -> EncoderConfig:
    """The generator's EncoderConfig for discriminator `cfg`: same depth and embedding width,
    hidden = round(fraction · hidden), FFN 4× that, heads = `num_heads` or max(1, hidden // 64)."""
    if not 0.0 < hidden_fraction <= 1.0:
        raise ValueError(f"config.electra.generator_hidden_fraction={hidden_fraction} must be in (0, 1]")
    hidden = round(hidden_fraction * cfg.hidden_size)
    if hidden < 1:
        raise ValueError(f"config.electra.generator_hidden_fraction={hidden_fraction} × config.model.hidden_size="
                         f"{cfg.hidden_size} rounds to a generator hidden size of {hidden}; raise the fraction")
    heads = num_heads or max(1, hidden // 64)
    if hidden % heads:
        raise ValueError(f"config.electra.generator_hidden_fraction={hidden_fraction} gives a generator hidden size "
                         f"{hidden} (round({hidden_fraction} × config.model.hidden_size={cfg.hidden_size})) that its "
                         f"{heads} heads (config.electra.generator_num_heads={num_heads}; 0: max(1, hidden // 64)) "
                         f"do not divide; pick a fraction or a head count that divides it")
    width = cfg.embedding_dim
    return dataclasses.replace(cfg, hidden_size=hidden, num_heads=heads, ffn_size=4 * hidden,
                               embedding_size=0 if width == hidden else width, arrangement="")


def generator_config_from(saved: dict, cfg: EncoderConfig) -> EncoderConfig:
    """`generator_config` of discriminator `cfg` with the `electra` section of a run's saved config.json."""
    section = {**Electra.default_sections()["electra"].to_dict(), **saved.get("electra", {})}
    return generator_config(cfg, section["generator_hidden_fraction"], section["generator_num_heads"])


def generator_params(params: dict) -> dict:
    """The generator's full `EncoderForMLM` params: its own tensors with the shared embeddings
    (word / position / type tables and the embedding LayerNorm) of the discriminator's `encoder` merged in."""
    own = params[GENERATOR_KEY]
    shared = {k: v for k, v in params["encoder"]["embeddings"].items() if k != PROJECTION}
    embeddings = {**shared, **own["encoder"].get("embeddings", {})}
    return {**own, "encoder": {**own["encoder"], "embeddings": embeddings}}


def discriminator_params(params: dict) -> dict:
    """The `EncoderForReplacedTokenDetection` params (everything but the generator's own)."""
    return {k: v for k, v in params.items() if k != GENERATOR_KEY}


def own_generator_params(generator: dict) -> dict:
    """The inverse of the merge in `generator_params`: the generator's params without the shared embeddings."""
    encoder = dict(generator["encoder"])
    embeddings = {k: v for k, v in encoder.pop("embeddings").items() if k == PROJECTION}
    if embeddings:
        encoder["embeddings"] = embeddings
    return {**generator, "encoder": encoder}


def mlm_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The MLM run of the same discriminator on the same text: `config` with `objective="mlm"` and its
    `electra` section swapped for an `mlm` section with the same mask rate and slots (BERT's 80/10/10
    replacement). What ELECTRA is compared with (atm.bench, reproduce/electra.py)."""
    tree = config.to_dict()
    section = {**Electra.default_sections()["electra"].to_dict(), **tree.pop("electra", {})}
    out = ml_collections.ConfigDict({**tree, "objective": "mlm"})
    out.mlm = MaskedLM.default_sections()["mlm"]
    out.mlm.update(mask_rate=section["mask_rate"], max_predictions=section["max_predictions"])
    return out


def replace_tokens(keys_Bx2: jax.Array, ids_BxL: jax.Array, positions_BxM: jax.Array, weights_BxM: jax.Array,
                   logits_BxMxV: jax.Array, temperature: float = 1.0) -> dict:
    """Draw one token per weighted slot from softmax(logits / T) by Gumbel-max (no gradient), write it
    into the original ids, and label each position replaced (1) only where the draw differs from the original.

    `keys_Bx2`: one raw PRNG key per row (`jax.random.key_data`), so a row's draw does not depend on the
    batch it sits in. Returns input_ids (B, L) for the discriminator, labels (B, L) float, drawn (B, M)."""
    logits = jax.lax.stop_gradient(logits_BxMxV).astype(jnp.float32) / temperature

    def gumbel_row(key_2):
        return jax.random.gumbel(jax.random.wrap_key_data(key_2), logits.shape[1:], jnp.float32)

    drawn_BxM = jnp.argmax(logits + jax.vmap(gumbel_row)(keys_Bx2), axis=-1).astype(ids_BxL.dtype)
    rows = jnp.arange(ids_BxL.shape[0])[:, None]
    originals_BxM = jnp.take_along_axis(ids_BxL, positions_BxM, axis=1)
    new_BxM = jnp.where(weights_BxM > 0, drawn_BxM, originals_BxM)
    corrupted_BxL = ids_BxL.at[rows, positions_BxM].set(new_BxM)
    return {"input_ids": corrupted_BxL, "labels": (corrupted_BxL != ids_BxL).astype(jnp.float32), "drawn": drawn_BxM}


def rtd_sums(logits_BxL: jax.Array, labels_BxL: jax.Array, weights_BxL: jax.Array) -> dict:
    """Summed sigmoid cross-entropy (as torch's BCEWithLogitsLoss), correct answers, and the counts
    behind precision and recall on the replaced class, over the weighted tokens."""
    logits = logits_BxL.astype(jnp.float32)
    bce = optax.sigmoid_binary_cross_entropy(logits, labels_BxL)
    predicted = (logits > 0).astype(jnp.float32)
    return {
        "rtd_loss": (bce * weights_BxL).sum(),
        "rtd_correct": ((predicted == labels_BxL) * weights_BxL).sum(),
        "true_positives": (predicted * labels_BxL * weights_BxL).sum(),
        "predicted_positives": (predicted * weights_BxL).sum(),
        "replaced": (labels_BxL * weights_BxL).sum(),
        "tokens": weights_BxL.sum(),
    }


def precision_recall_f1(true_positives, predicted_positives, replaced):
    precision = true_positives / jnp.maximum(predicted_positives, 1.0)
    recall = true_positives / jnp.maximum(replaced, 1.0)
    return precision, recall, 2 * true_positives / jnp.maximum(predicted_positives + replaced, 1.0)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of `scores` for the positive `labels` (Mann-Whitney U with average ranks for
    ties, as sklearn's roc_auc_score); NaN when either class is absent. F1 at logit 0 says nothing while the
    discriminator never puts a replaced token above one half; the AUC says whether it ranks them first."""
    from scipy.stats import rankdata

    positives = labels > 0.5
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    rank_sum = rankdata(scores)[positives].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def discriminator_fields(params: dict) -> dict[str, int]:
    """config.model shape fields read off a discriminator's params (for errors that name them)."""
    encoder = params["encoder"]
    vocab, width = np.shape(encoder["embeddings"]["word_embeddings"]["embedding"])
    layers = [k for k in encoder if k.startswith("layer_")]
    if "layers" in encoder:
        layer = jax.tree_util.tree_map(lambda x: x[0], encoder["layers"])
        num_layers = int(np.shape(encoder["layers"]["ffn"]["wi"]["kernel"])[0])
    else:
        layer, num_layers = encoder[layers[0]], len(layers)
    hidden, heads, _ = np.shape(layer["attention"]["query"]["kernel"])
    return {"vocab_size": int(vocab), "num_layers": num_layers, "hidden_size": int(hidden), "num_heads": int(heads),
            "ffn_size": int(np.shape(layer["ffn"]["wi"]["kernel"])[1]),
            "embedding_size": 0 if width == hidden else int(width)}


def check_discriminator_fits(pretrained: dict, cfg: EncoderConfig):
    """config.init_from an ELECTRA run: its discriminator's shape must be config.model's (an error naming
    every differing key with both values). A no-op for params that are not an ELECTRA run's."""
    if GENERATOR_KEY not in pretrained or "discriminator_head" not in pretrained:
        return
    theirs = discriminator_fields(pretrained)
    ours = {k: getattr(cfg, k) for k in theirs}
    if theirs["embedding_size"] == 0 and ours["embedding_size"] == cfg.hidden_size:
        ours["embedding_size"] = 0
    differ = [f"config.model.{k}={ours[k]} but the ELECTRA discriminator has {k}={theirs[k]}"
              for k in theirs if theirs[k] != ours[k]]
    if differ:
        raise ValueError("config.init_from is an ELECTRA run whose discriminator does not fit this model: "
                         + "; ".join(differ) + " (set config.model to the discriminator's shape)")


@register
class Electra(Objective):
    name = "electra"

    @staticmethod
    def default_sections():
        return {"electra": ml_collections.ConfigDict({
            "generator_hidden_fraction": 0.25,  # generator hidden = round(fraction · config.model.hidden_size)
            "generator_num_heads": 0,  # 0: max(1, generator hidden // 64), as google-research/electra
            "rtd_weight": 50.0,  # λ
            "mask_rate": 0.15,  # 0.25 for ELECTRA-large
            "mask_token_rate": 0.85,  # of the chosen slots; the rest keep their token (no random replacement)
            "max_predictions": -1,  # mask slots per sequence; -1: round(mask_rate · seq_len)
            "temperature": 1.0,  # of the generator's softmax when drawing replacements
        })}

    @staticmethod
    def value_ranges():
        return {"electra.generator_hidden_fraction": atm_config.SHARE,
                "electra.generator_num_heads": atm_config.NON_NEGATIVE,
                "electra.rtd_weight": atm_config.POSITIVE, "electra.mask_rate": atm_config.SHARE,
                "electra.mask_token_rate": atm_config.UNIT, "electra.temperature": atm_config.POSITIVE,
                "electra.max_predictions": ("-1 (from mask_rate) or >= 1", lambda v: v == -1 or v >= 1)}

    def __init__(self, config, vocab, train_data=None):
        super().__init__(config, vocab, train_data)
        e = config.electra
        atm_config.check_values(config, self.value_ranges())  # also when built without atm.config.validate
        self.model_cfg = atm_config.model_config(config)
        if self.model_cfg.arrangement:
            raise ValueError(f"config.model.arrangement={self.model_cfg.arrangement!r}: ELECTRA's discriminator "
                             "labels every token, so it runs full layers; NarrowBERT runs start from it with init_from")
        if self.model_cfg.vocab_size < vocab.size:
            raise ValueError(f"config.model.vocab_size={self.model_cfg.vocab_size} is smaller than the "
                             f"vocabulary ({vocab.size} pieces, config.data.vocab)")
        self.generator_cfg = generator_config(self.model_cfg, e.generator_hidden_fraction, e.generator_num_heads)
        self.seq_len = config.data.seq_len
        self.num_slots = num_mask_slots(e.mask_rate, self.seq_len, e.max_predictions)
        self.discriminator = {train: EncoderForReplacedTokenDetection(self.model_cfg, deterministic=not train)
                              for train in (True, False)}
        self.generator = {train: EncoderForMLM(self.generator_cfg, deterministic=not train) for train in (True, False)}

    def example_batch(self, batch_size):
        shape = (batch_size, self.seq_len)
        names = ("input_ids", "segment_ids", "positions") + (
            ("word_ids",) if self.config.data.whole_word_masking else ())
        return {k: jax.ShapeDtypeStruct(shape, jnp.int32) for k in names}

    def init_params(self, rng, batch):
        d_rng, g_rng = jax.random.split(rng)
        ids, segments, positions = batch["input_ids"], batch["segment_ids"], batch["positions"]
        params = dict(self.discriminator[False].init(d_rng, ids, segments, positions)["params"])
        slots = jnp.zeros((ids.shape[0], self.num_slots), jnp.int32)
        generator = self.generator[False].init(g_rng, ids, segments, positions, masked_positions_BxM=slots)["params"]
        params[GENERATOR_KEY] = own_generator_params(dict(generator))
        return params

    def prepare(self, batch, rng):
        mask_rng, sample_rng = jax.random.split(rng)
        ids = batch["input_ids"]
        maskable = (batch["segment_ids"] > 0) & ~jnp.isin(ids, jnp.asarray(self.vocab.special_ids))
        e = self.config.electra
        masked = mask_tokens(mask_rng, ids, maskable, num_slots=self.num_slots, mask_rate=e.mask_rate,
                             mask_token_rate=e.mask_token_rate, random_token_rate=0.0, mask_id=self.vocab.mask_id,
                             random_low=self.vocab.first_regular_id, vocab_size=self.vocab.size,
                             word_ids_BxL=batch.get("word_ids"))
        tokens = (batch["segment_ids"] > 0).sum().astype(jnp.float32)
        scale = tokens / jnp.maximum(masked["masked_weights"].sum(), 1.0)
        return {**batch, **masked, "original_ids": ids,
                "sample_keys": jax.random.key_data(jax.random.split(sample_rng, ids.shape[0])),
                "generator_scale": jnp.full((ids.shape[0],), scale, jnp.float32)}

    def forward(self, params, batch, rng, train: bool) -> dict:
        """Generator at the masked slots, replacements drawn, discriminator on every token: summed figures
        (`masked_lm_sums` of the generator, `rtd_sums` of the discriminator) and the corrupted batch."""
        g_rng, d_rng = jax.random.split(rng)
        segments, positions = batch["segment_ids"], batch["positions"]
        logits_BxMxV = self.generator[train].apply(
            {"params": generator_params(params)}, batch["input_ids"], segments, positions,
            masked_positions_BxM=batch["masked_positions"], rngs={"dropout": g_rng})
        mlm_sum, mlm = masked_lm_sums(logits_BxMxV, batch["masked_targets"], batch["masked_weights"])
        corrupted = replace_tokens(batch["sample_keys"], batch["original_ids"], batch["masked_positions"],
                                   batch["masked_weights"], logits_BxMxV, self.config.electra.temperature)
        logits_BxL = self.discriminator[train].apply(
            {"params": discriminator_params(params)}, corrupted["input_ids"], segments, positions,
            rngs={"dropout": d_rng})
        rtd = rtd_sums(logits_BxL, corrupted["labels"], (segments > 0).astype(jnp.float32))
        return {"mlm_loss": mlm_sum, "mlm_correct": mlm["accuracy"], "masked": mlm["weight"], **rtd,
                "corrupted_ids": corrupted["input_ids"], "labels": corrupted["labels"], "rtd_logits": logits_BxL}

    def loss(self, params, frozen, batch, rng, train):
        out = self.forward(params, batch, rng, train)
        tokens = out["tokens"]
        scale = batch["generator_scale"][0]  # tokens / masked slots of the whole batch (prepare)
        generator_loss = scale * out["mlm_loss"]
        precision, recall, f1 = precision_recall_f1(out["true_positives"], out["predicted_positives"], out["replaced"])
        sums = {"weight": tokens, "generator_loss": generator_loss, "generator_accuracy": scale * out["mlm_correct"],
                "discriminator_loss": out["rtd_loss"], "discriminator_accuracy": out["rtd_correct"],
                "rtd_precision": precision * tokens, "rtd_recall": recall * tokens, "rtd_f1": f1 * tokens,
                "replaced_share": out["replaced"]}
        return generator_loss + self.config.electra.rtd_weight * out["rtd_loss"], sums

    COUNTS = ("mlm_loss", "mlm_correct", "masked", "rtd_loss", "rtd_correct", "true_positives",
              "predicted_positives", "replaced", "tokens")

    def eval_outputs(self, params, frozen, batch, rng):
        out = self.forward(params, batch, rng, False)
        return {**{k: out[k] for k in self.COUNTS}, "rtd_logits": out["rtd_logits"], "rtd_labels": out["labels"],
                "rtd_weights": batch["segment_ids"] > 0}

    def summarize(self, outputs, batches, eval_data=None):
        t = {k: float(sum(np.sum(o[k]) for o in outputs)) for k in self.COUNTS}
        masked, tokens = max(t["masked"], 1.0), max(t["tokens"], 1.0)
        precision, recall, f1 = (float(x) for x in precision_recall_f1(
            t["true_positives"], t["predicted_positives"], t["replaced"]))
        generator_loss, discriminator_loss = t["mlm_loss"] / masked, t["rtd_loss"] / tokens
        return {"loss": generator_loss + self.config.electra.rtd_weight * discriminator_loss,
                "generator_loss": generator_loss, "generator_accuracy": t["mlm_correct"] / masked,
                "discriminator_loss": discriminator_loss, "discriminator_accuracy": t["rtd_correct"] / tokens,
                "rtd_precision": precision, "rtd_recall": recall, "rtd_f1": f1, "replaced_share": t["replaced"] / tokens,
                "rtd_auc": self.eval_auc(outputs)}

    @staticmethod
    def eval_auc(outputs) -> float:
        """The discriminator's ROC AUC over every non-padding eval token (0.5: no better than chance)."""
        weights = np.concatenate([np.asarray(o["rtd_weights"]).ravel() for o in outputs]) > 0
        scores = np.concatenate([np.asarray(o["rtd_logits"], np.float32).ravel() for o in outputs])[weights]
        labels = np.concatenate([np.asarray(o["rtd_labels"]).ravel() for o in outputs])[weights]
        return roc_auc(scores, labels)

    def flops_per_token(self):
        """6× the matmul FLOPs of both models: the discriminator (layers, embedding projection, RTD head) on
        every token, the generator's layers and projection on every token and its MLM head on the slots."""
        n, d, g = self.seq_len, self.model_cfg, self.generator_cfg
        e = d.embedding_dim

        def projection(cfg):
            return 2 * e * cfg.hidden_size if e != cfg.hidden_size else 0

        disc = narrow.stack_forward_flops(d, n) / n + projection(d) + 2 * (d.hidden_size ** 2 + d.hidden_size)
        gen = narrow.stack_forward_flops(g, n) / n + projection(g) + (self.num_slots / n) * 2 * (
            g.hidden_size * e + e * g.vocab_size)
        return 3.0 * (disc + gen)
