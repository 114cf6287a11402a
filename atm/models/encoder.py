"""BERT / RoBERTa / XLM-R style transformer encoder (pure-functional Flax linen).

Shapes in names: B batch, L length, M masked positions per sequence, D hidden,
N heads, H head size, F feed-forward size, V vocabulary.

Every parameter is created with logical axis names and every large activation is
constrained with `act_*` names; `atm/sharding.py` maps both onto the mesh.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "gelu": functools.partial(jax.nn.gelu, approximate=False),  # BERT/RoBERTa "gelu" (erf)
    "gelu_new": functools.partial(jax.nn.gelu, approximate=True),  # tanh approximation
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
}
ATTENTION_IMPLS = ("einsum", "xla", "cudnn", "jax")  # "jax": let jax.nn.dot_product_attention choose
REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}
NARROW_ATTENTION = ("auto", "folded", "unfolded")  # see atm/models/narrow.py folds_attention
# How learned position embeddings start. "sinusoidal": the Transformer's sin/cos table at the scale of the
# other embeddings; offsets are then linear maps of it, so attention to neighbours is learnable from step 0.
POSITION_INITS = ("normal", "sinusoidal")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    vocab_size: int = 30522
    num_layers: int = 12
    hidden_size: int = 768
    num_heads: int = 12
    ffn_size: int = 3072
    max_positions: int = 512
    type_vocab_size: int = 2  # 0: no token-type embedding (RoBERTa uses 1)
    embedding_size: int = 0  # 0: = hidden_size; else ELECTRA's factorised embeddings, projected to hidden_size
    position_offset: int = 0  # RoBERTa/XLM-R number positions from padding_idx + 1 = 2
    pre_layer_norm: bool = False  # False: BERT post-LN; True: pre-LN (ATM teachers)
    activation: str = "gelu"
    layer_norm_eps: float = 1e-12
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.0
    tie_embeddings: bool = True
    dtype: str = "float32"  # compute dtype
    param_dtype: str = "float32"
    attention_impl: str = "xla"
    scan_layers: bool = False
    remat_policy: str = "none"
    initializer_range: float = 0.02
    position_init: str = "normal"  # POSITION_INITS; only the starting values differ, the parameters are the same
    # NarrowBERT layer arrangement, e.g. "2sf:10sf" or ContextFirst "12s:12f" (atm/models/narrow.py);
    # "" keeps all layers full. Narrow layers reuse the full layers' parameters.
    arrangement: str = ""
    # Narrow layers' attention: "auto" folds W_K, W_V into the queries when that is cheaper
    # (`narrow.folds_attention`), "folded" / "unfolded" force it. The same function and parameters.
    narrow_attention: str = "auto"

    def __post_init__(self):
        checks = {
            "activation": (self.activation, ACTIVATIONS),
            "attention_impl": (self.attention_impl, ATTENTION_IMPLS),
            "remat_policy": (self.remat_policy, REMAT_POLICIES),
            "dtype": (self.dtype, DTYPES),
            "param_dtype": (self.param_dtype, DTYPES),
            "narrow_attention": (self.narrow_attention, NARROW_ATTENTION),
            "position_init": (self.position_init, POSITION_INITS),
        }
        for key, (value, valid) in checks.items():
            if value not in valid:
                raise ValueError(f"config.model.{key}={value!r} is not one of {sorted(valid)}")
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"config.model.hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}")
        if self.attention_dropout > 0 and self.attention_impl != "einsum":
            raise ValueError(
                f"config.model.attention_dropout={self.attention_dropout} needs attention_impl='einsum' "
                f"(jax.nn.dot_product_attention has no dropout); got {self.attention_impl!r}")
        if self.arrangement:
            from atm.models import narrow  # imported here: narrow builds on this module
            narrow.check_arrangement(self)

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def embedding_dim(self) -> int:
        return self.embedding_size or self.hidden_size

    @property
    def compute_dtype(self):
        return DTYPES[self.dtype]

    @property
    def weight_dtype(self):
        return DTYPES[self.param_dtype]


# Parameter initialisers with logical axis names: every model piece (heads, ELECTRA, distillation
# projections) builds its parameters with these, so they shard by the one rules table.
def normal_init(cfg: EncoderConfig, names: tuple[str | None, ...]):
    """N(0, initializer_range²), BERT's weight initialiser."""
    return nn.with_logical_partitioning(nn.initializers.normal(cfg.initializer_range), names)


def sinusoidal_init(cfg: EncoderConfig, names: tuple[str | None, ...]):
    """sin/cos of position × 10000^(-2i/width) (Vaswani et al.), scaled to RMS `initializer_range`."""
    def init(key, shape, dtype=jnp.float32):
        del key
        positions, width = shape
        rates = 1.0 / 10000.0 ** (jnp.arange(0, width, 2) / width)
        angles = jnp.arange(positions)[:, None] * rates[None, :]
        table = jnp.zeros(shape).at[:, 0::2].set(jnp.sin(angles)).at[:, 1::2].set(jnp.cos(angles[:, :width // 2]))
        return (table * cfg.initializer_range * 2 ** 0.5).astype(dtype)
    return nn.with_logical_partitioning(init, names)


def zeros_init(names):
    return nn.with_logical_partitioning(nn.initializers.zeros_init(), names)


def ones_init(names):
    return nn.with_logical_partitioning(nn.initializers.ones_init(), names)


def layer_norm(cfg: EncoderConfig, name: str) -> nn.LayerNorm:
    """LayerNorm over the last axis, whatever its size (hidden_size, or embedding_size in ELECTRA)."""
    return nn.LayerNorm(epsilon=cfg.layer_norm_eps, dtype=cfg.compute_dtype, param_dtype=cfg.weight_dtype,
                        scale_init=ones_init(("embed",)), bias_init=zeros_init(("embed",)), name=name)


def attention_mask_from_segments(segment_ids_BxL: Array, query_segment_ids_BxM: Array | None = None) -> Array:
    """Boolean (B, 1, M, L): a query sees keys of its own segment; 0 marks padding.

    With one example per row this is the usual padding mask; with packed rows it
    is block-diagonal, so packed examples never see each other. Queries default to
    every position (M = L); NarrowBERT's narrow layers pass the segments of their query set.
    """
    queries_BxM = segment_ids_BxL if query_segment_ids_BxM is None else query_segment_ids_BxM
    same = queries_BxM[:, :, None] == segment_ids_BxL[:, None, :]
    return (same & (segment_ids_BxL[:, None, :] > 0))[:, None, :, :]


def dot_product_attention(q_BxLxNxH, k_BxSxNxH, v_BxSxNxH, mask_Bx1xLxS, *, impl: str,
                          dropout_rate: float = 0.0, dropout_rng: Array | None = None) -> Array:
    """The one attention function. `impl` picks our einsum reference or jax.nn.dot_product_attention."""
    if impl == "einsum":
        scale = q_BxLxNxH.shape[-1] ** -0.5
        logits = jnp.einsum("blnh,bsnh->bnls", q_BxLxNxH * scale, k_BxSxNxH).astype(jnp.float32)
        logits = jnp.where(mask_Bx1xLxS, logits, jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(logits, axis=-1)
        if dropout_rate > 0.0 and dropout_rng is not None:
            keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, probs.shape)
            probs = jnp.where(keep, probs / (1.0 - dropout_rate), 0.0)
        return jnp.einsum("bnls,bsnh->blnh", probs.astype(v_BxSxNxH.dtype), v_BxSxNxH)
    return jax.nn.dot_product_attention(q_BxLxNxH, k_BxSxNxH, v_BxSxNxH, mask=mask_Bx1xLxS,
                                        implementation=None if impl == "jax" else impl)


def folded_attention(q_BxMxNxH: Array, kv_BxSxD: Array, mask_Bx1xMxS: Array, key_kernel_DxNxH: Array,
                     value_kernel_DxNxH: Array, value_bias_NxH: Array, *, dropout_rate: float = 0.0,
                     dropout_rng: Array | None = None) -> Array:
    """Attention of a few queries over kv = H with W_K, W_V folded into the queries (no K, V of all S tokens).

    Per head h: scores = (H W_K,h + b_K,h) q_h = H (W_K,h q_h) + b_K,h·q_h. The b_K,h·q_h term is the
    same for every key, so the softmax cancels it: it is dropped, exactly (b_K gets no gradient here,
    and in the unfolded form its gradient is zero up to rounding). Then context_h = Σ_j a_hj V_hj =
    (a_h^T H) W_V,h + (Σ_j a_hj) b_V,h, with Σ_j a_hj = 1 unless attention dropout rescaled a.
    Cost per sequence: 4·M·D² (folding the queries, unfolding the context) + 4·M·N·S·D, instead of
    4·S·D² (K and V) + 4·M·S·D. Same scaling, mask and dropout as `dot_product_attention`'s einsum form.
    """
    dtype = q_BxMxNxH.dtype
    scale = q_BxMxNxH.shape[-1] ** -0.5
    kv_BxSxD = kv_BxSxD.astype(dtype)
    qk_BxMxNxD = jnp.einsum("bmnh,dnh->bmnd", q_BxMxNxH * scale, key_kernel_DxNxH.astype(dtype))
    qk_BxMxNxD = nn.with_logical_constraint(qk_BxMxNxD, ("act_batch", "act_length", "act_heads", "act_embed"))
    logits = jnp.einsum("bmnd,bsd->bnms", qk_BxMxNxD, kv_BxSxD).astype(jnp.float32)
    logits = jnp.where(mask_Bx1xMxS, logits, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits, axis=-1)
    dropped = dropout_rate > 0.0 and dropout_rng is not None
    if dropped:  # the einsum form's mask: same shape (B, N, M, S), same rng
        keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, probs.shape)
        probs = jnp.where(keep, probs / (1.0 - dropout_rate), 0.0)
    pooled_BxMxNxD = jnp.einsum("bnms,bsd->bmnd", probs.astype(dtype), kv_BxSxD)
    pooled_BxMxNxD = nn.with_logical_constraint(pooled_BxMxNxD, ("act_batch", "act_length", "act_heads", "act_embed"))
    ctx = jnp.einsum("bmnd,dnh->bmnh", pooled_BxMxNxD, value_kernel_DxNxH.astype(dtype))
    bias = value_bias_NxH.astype(dtype)
    if dropped:
        return ctx + jnp.swapaxes(probs.sum(-1), 1, 2)[..., None].astype(dtype) * bias
    return ctx + bias


class SelfAttention(nn.Module):
    cfg: EncoderConfig
    deterministic: bool

    @nn.compact
    def __call__(self, x_BxLxD: Array, mask: Array, kv_BxSxD: Array | None = None) -> Array:
        """Queries from x; keys and values from `kv` (defaults to x; NarrowBERT passes the full sequence).

        With `kv` (a narrow layer) and few queries, W_K and W_V are folded into the queries
        (`folded_attention`, chosen by `narrow.folds_attention`): the same parameters and function."""
        cfg = self.cfg
        fold = False
        if kv_BxSxD is not None and not self.is_initializing():  # init creates key/value the usual way
            from atm.models import narrow
            fold = narrow.folds_attention(cfg, x_BxLxD.shape[1], kv_BxSxD.shape[1])
        kv_BxSxD = x_BxLxD if kv_BxSxD is None else kv_BxSxD
        proj = functools.partial(
            nn.DenseGeneral, features=(cfg.num_heads, cfg.head_size), dtype=cfg.compute_dtype,
            param_dtype=cfg.weight_dtype, kernel_init=normal_init(cfg, ("embed", "heads", "kv")),
            bias_init=zeros_init(("heads", "kv")))
        names = ("act_batch", "act_length", "act_heads", "act_kv")
        q = nn.with_logical_constraint(proj(name="query")(x_BxLxD), names)
        use_dropout = cfg.attention_dropout > 0.0 and not self.deterministic
        if fold:  # read the key/value kernels from the param tree; no K, V over all tokens
            key, value = (nn.unbox(self.get_variable("params", n)) for n in ("key", "value"))
            ctx = folded_attention(q, kv_BxSxD, mask, key["kernel"], value["kernel"], value["bias"],
                                   dropout_rate=cfg.attention_dropout,
                                   dropout_rng=self.make_rng("dropout") if use_dropout else None)
        else:
            k = nn.with_logical_constraint(proj(name="key")(kv_BxSxD), names)
            v = nn.with_logical_constraint(proj(name="value")(kv_BxSxD), names)
            ctx = dot_product_attention(q, k, v, mask, impl=cfg.attention_impl, dropout_rate=cfg.attention_dropout,
                                        dropout_rng=self.make_rng("dropout") if use_dropout else None)
        ctx = nn.with_logical_constraint(ctx, names)
        out = nn.DenseGeneral(features=cfg.hidden_size, axis=(-2, -1), dtype=cfg.compute_dtype,
                              param_dtype=cfg.weight_dtype, kernel_init=normal_init(cfg, ("heads", "kv", "embed")),
                              bias_init=zeros_init(("embed",)), name="output")(ctx)
        return nn.with_logical_constraint(out, ("act_batch", "act_length", "act_embed"))


class FeedForward(nn.Module):
    cfg: EncoderConfig

    @nn.compact
    def __call__(self, x_BxLxD: Array) -> Array:
        cfg = self.cfg
        h = nn.Dense(cfg.ffn_size, dtype=cfg.compute_dtype, param_dtype=cfg.weight_dtype,
                     kernel_init=normal_init(cfg, ("embed", "mlp")), bias_init=zeros_init(("mlp",)), name="wi")(x_BxLxD)
        h = nn.with_logical_constraint(ACTIVATIONS[cfg.activation](h), ("act_batch", "act_length", "act_mlp"))
        out = nn.Dense(cfg.hidden_size, dtype=cfg.compute_dtype, param_dtype=cfg.weight_dtype,
                       kernel_init=normal_init(cfg, ("mlp", "embed")), bias_init=zeros_init(("embed",)), name="wo")(h)
        return nn.with_logical_constraint(out, ("act_batch", "act_length", "act_embed"))


class EncoderLayer(nn.Module):
    """One transformer layer, post-LN (BERT) or pre-LN. Returns (x, None) so it can be scanned.

    `sublayers` "s" runs only the attention block (with its residual and LN), "f" only the
    feed-forward block: NarrowBERT's ContextFirst arrangement calls them apart.
    """
    cfg: EncoderConfig
    deterministic: bool

    @nn.compact
    def __call__(self, x_BxLxD: Array, mask: Array, kv_BxSxD: Array | None = None, sublayers: str = "sf"):
        cfg = self.cfg
        drop = nn.Dropout(cfg.hidden_dropout, deterministic=self.deterministic)
        x = x_BxLxD
        if "s" in sublayers:
            attention = SelfAttention(cfg, self.deterministic, name="attention")
            if cfg.pre_layer_norm:
                attention_ln = layer_norm(cfg, "attention_layer_norm")
                kv = None if kv_BxSxD is None else attention_ln(kv_BxSxD)
                x = x + drop(attention(attention_ln(x), mask, kv))
            else:
                x = layer_norm(cfg, "attention_layer_norm")(x + drop(attention(x, mask, kv_BxSxD)))
        if "f" in sublayers:
            ffn = FeedForward(cfg, name="ffn")
            if cfg.pre_layer_norm:
                x = x + drop(ffn(layer_norm(cfg, "ffn_layer_norm")(x)))
            else:
                x = layer_norm(cfg, "ffn_layer_norm")(x + drop(ffn(x)))
        return nn.with_logical_constraint(x, ("act_batch", "act_length", "act_embed")), None


def layer_class(cfg: EncoderConfig):
    """EncoderLayer wrapped in remat when a policy is configured."""
    if cfg.remat_policy == "none":
        return EncoderLayer
    if cfg.scan_layers:
        return nn.remat(EncoderLayer, policy=REMAT_POLICIES[cfg.remat_policy], prevent_cse=False)
    # Unscanned layers are always called with all four arguments; `sublayers` (self is 0) is static.
    return nn.remat(EncoderLayer, policy=REMAT_POLICIES[cfg.remat_policy], prevent_cse=True, static_argnums=(4,))


class Embeddings(nn.Module):
    cfg: EncoderConfig
    deterministic: bool

    def setup(self):
        cfg = self.cfg
        embed = functools.partial(nn.Embed, dtype=cfg.compute_dtype, param_dtype=cfg.weight_dtype)
        width = cfg.embedding_dim
        self.word_embeddings = embed(cfg.vocab_size, width, embedding_init=normal_init(cfg, ("vocab", "embed")))
        position_init = sinusoidal_init if cfg.position_init == "sinusoidal" else normal_init
        self.position_embeddings = embed(cfg.max_positions, width, embedding_init=position_init(cfg, ("positions", "embed")))
        if cfg.type_vocab_size > 0:
            self.token_type_embeddings = embed(cfg.type_vocab_size, width, embedding_init=normal_init(cfg, ("types", "embed")))
        if not cfg.pre_layer_norm:
            self.layer_norm = layer_norm(cfg, "layer_norm")
        self.dropout = nn.Dropout(cfg.hidden_dropout, deterministic=self.deterministic)
        if width != cfg.hidden_size:  # ELECTRA: embeddings of width E, projected to the hidden size D
            self.embeddings_project = nn.Dense(cfg.hidden_size, dtype=cfg.compute_dtype, param_dtype=cfg.weight_dtype,
                                               kernel_init=normal_init(cfg, (None, "embed")), bias_init=zeros_init(("embed",)))

    def _lookup(self, table: nn.Embed, ids_BxL: Array) -> Array:
        # Gather the FSDP-sharded embed dimension before the lookup, as FSDP does for every weight,
        # so the row gather (and its scatter-add gradient) never mixes batch and embed sharding.
        full_VxD = nn.with_logical_constraint(table.embedding, ("act_vocab", "act_embed"))
        return jnp.take(full_VxD, ids_BxL, axis=0).astype(self.cfg.compute_dtype)

    def __call__(self, ids_BxL: Array, positions_BxL: Array, token_types_BxL: Array | None) -> Array:
        x = self._lookup(self.word_embeddings, ids_BxL)
        x = x + self._lookup(self.position_embeddings, positions_BxL + self.cfg.position_offset)
        if self.cfg.type_vocab_size > 0:
            x = x + self._lookup(self.token_type_embeddings,
                                 jnp.zeros_like(ids_BxL) if token_types_BxL is None else token_types_BxL)
        if not self.cfg.pre_layer_norm:
            x = self.layer_norm(x)
        x = self.dropout(x)
        if self.cfg.embedding_dim != self.cfg.hidden_size:
            x = self.embeddings_project(x)
        return nn.with_logical_constraint(x, ("act_batch", "act_length", "act_embed"))

    def attend(self, x_BxMxD: Array) -> Array:
        """Logits against the (tied) word-embedding table."""
        return self.word_embeddings.attend(x_BxMxD)


class Encoder(nn.Module):
    """Embeddings + L layers (+ final LN when pre-LN). Returns hidden states (B, L, D)."""
    cfg: EncoderConfig
    deterministic: bool = True

    def setup(self):
        cfg = self.cfg
        self.embeddings = Embeddings(cfg, self.deterministic)
        layer = layer_class(cfg)
        if cfg.scan_layers:
            self.layers = nn.scan(
                layer, variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True},
                in_axes=(nn.broadcast, nn.broadcast), length=cfg.num_layers,
                metadata_params={nn.PARTITION_NAME: "layers"})(cfg, self.deterministic)
        else:
            self.layers = [layer(cfg, self.deterministic, name=f"layer_{i}") for i in range(cfg.num_layers)]
        if cfg.pre_layer_norm:
            self.final_layer_norm = layer_norm(cfg, "final_layer_norm")

    def __call__(self, ids_BxL: Array, segment_ids_BxL: Array | None = None, positions_BxL: Array | None = None,
                 token_types_BxL: Array | None = None, query_positions_BxM: Array | None = None) -> Array:
        """Hidden states (B, L, D), or (B, M, D) at `query_positions_BxM` (NarrowBERT's query set S:
        with narrow layers in `cfg.arrangement` only S runs through them; otherwise a gather at the end)."""
        if segment_ids_BxL is None:
            segment_ids_BxL = jnp.ones_like(ids_BxL)
        if positions_BxL is None:
            positions_BxL = jnp.broadcast_to(jnp.arange(ids_BxL.shape[1]), ids_BxL.shape)
        x = self.embeddings(ids_BxL, positions_BxL, token_types_BxL)
        if self.cfg.arrangement:
            from atm.models import narrow
            x = narrow.run_arrangement(self.cfg, self.layers, x, segment_ids_BxL, query_positions_BxM)
        else:
            mask = attention_mask_from_segments(segment_ids_BxL)
            if self.cfg.scan_layers:
                x, _ = self.layers(x, mask, None)
            else:
                for layer in self.layers:
                    x, _ = layer(x, mask, None, "sf")
            if query_positions_BxM is not None:
                x = gather_positions(x, query_positions_BxM)
        if self.cfg.pre_layer_norm:
            x = self.final_layer_norm(x)
        return x

    def attend(self, x_BxMxD: Array) -> Array:
        return self.embeddings.attend(x_BxMxD)


def gather_positions(x_BxLxD: Array, positions_BxM: Array) -> Array:
    return jnp.take_along_axis(x_BxLxD, positions_BxM[:, :, None], axis=1)


class MLMHead(nn.Module):
    """BERT/RoBERTa LM head: dense → activation → LN → vocabulary projection (tied or not) + bias.

    The dense maps to the embedding width (ELECTRA's generator: hidden_size → embedding_size)."""
    cfg: EncoderConfig

    @nn.compact
    def __call__(self, h_BxMxD: Array, attend: Callable[[Array], Array]) -> Array:
        cfg = self.cfg
        h = nn.Dense(cfg.embedding_dim, dtype=cfg.compute_dtype, param_dtype=cfg.weight_dtype,
                     kernel_init=normal_init(cfg, ("embed", "mlp")), bias_init=zeros_init(("mlp",)), name="transform")(h_BxMxD)
        h = layer_norm(cfg, "layer_norm")(ACTIVATIONS[cfg.activation](h))
        if cfg.tie_embeddings:
            logits = attend(h)
        else:
            logits = nn.Dense(cfg.vocab_size, use_bias=False, dtype=cfg.compute_dtype, param_dtype=cfg.weight_dtype,
                              kernel_init=normal_init(cfg, ("embed", "vocab")), name="decoder")(h)
        bias = self.param("output_bias", zeros_init(("vocab",)), (cfg.vocab_size,), cfg.weight_dtype)
        logits = logits + bias.astype(logits.dtype)
        return nn.with_logical_constraint(logits, ("act_batch", "act_length", "act_vocab"))


class EncoderForMLM(nn.Module):
    """Encoder + MLM head evaluated only at `masked_positions_BxM` (all positions when None).

    The masked positions are the encoder's query set: NarrowBERT's narrow layers run only on them."""
    cfg: EncoderConfig
    deterministic: bool = True

    def setup(self):
        self.encoder = Encoder(self.cfg, self.deterministic)
        self.mlm_head = MLMHead(self.cfg)

    def __call__(self, ids_BxL: Array, segment_ids_BxL: Array | None = None, positions_BxL: Array | None = None,
                 token_types_BxL: Array | None = None, masked_positions_BxM: Array | None = None) -> Array:
        h = self.encoder(ids_BxL, segment_ids_BxL, positions_BxL, token_types_BxL, masked_positions_BxM)
        return self.mlm_head(h, self.encoder.attend)


def param_count(params: Any, exclude_embeddings: bool = False) -> int:
    """Parameters in a (possibly abstract) tree; `exclude_embeddings` drops the embedding tables."""
    total = 0
    for path, leaf in jax.tree_util.tree_leaves_with_path(nn.unbox(params)):
        keys = [getattr(k, "key", str(k)) for k in path]
        if exclude_embeddings and "embeddings" in keys and keys[-1] == "embedding":
            continue
        total += int(leaf.size)
    return total
