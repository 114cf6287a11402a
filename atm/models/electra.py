"""ELECTRA's discriminator: the encoder plus a replaced-token-detection head (one logit per token).

    dense (D → D) → activation → dense (D → 1)      as HF `ElectraDiscriminatorPredictions`

ELECTRA's generator is `EncoderForMLM` with `embedding_size` set (its head maps to the embedding
width before the tied decoder); both share the factorised embeddings of `EncoderConfig.embedding_size`.
"""
from __future__ import annotations

import flax.linen as nn
import jax

from atm.models.encoder import ACTIVATIONS, Encoder, EncoderConfig, normal_init, zeros_init


class ReplacedTokenDetectionHead(nn.Module):
    cfg: EncoderConfig

    @nn.compact
    def __call__(self, h_BxLxD: jax.Array) -> jax.Array:
        cfg = self.cfg
        h = nn.Dense(cfg.hidden_size, dtype=cfg.compute_dtype, param_dtype=cfg.weight_dtype,
                     kernel_init=normal_init(cfg, ("embed", "mlp")), bias_init=zeros_init(("mlp",)), name="dense")(h_BxLxD)
        h = ACTIVATIONS[cfg.activation](h)
        logits = nn.Dense(1, dtype=cfg.compute_dtype, param_dtype=cfg.weight_dtype,
                          kernel_init=normal_init(cfg, ("mlp", None)), bias_init=zeros_init((None,)), name="prediction")(h)
        return logits[..., 0].astype(jax.numpy.float32)


class EncoderForReplacedTokenDetection(nn.Module):
    """Encoder + per-token "was this token replaced?" logits (B, L)."""
    cfg: EncoderConfig
    deterministic: bool = True

    def setup(self):
        self.encoder = Encoder(self.cfg, self.deterministic)
        self.discriminator_head = ReplacedTokenDetectionHead(self.cfg)

    def __call__(self, ids_BxL, segment_ids_BxL=None, positions_BxL=None, token_types_BxL=None):
        return self.discriminator_head(self.encoder(ids_BxL, segment_ids_BxL, positions_BxL, token_types_BxL))
