"""NarrowBERT (arXiv 2301.04761): the last layers run only on a query set S of positions.

Arrangement notation (`EncoderConfig.arrangement`), full part ":" narrow part, each a run of
groups `[count]pattern` with pattern `sf` (attention + feed-forward), `s` (attention only) or `f`
(feed-forward only):

    "2sf:10sf"   2 full layers over all n tokens give H; then 10 narrow layers on G = H[S]:
                 G <- LN(G + Attn(Q = G W_Q, K = H W_K, V = H W_V)), G <- LN(G + FFN(G)).
                 K and V always come from H, the output of the last full layer (SparseQueries).
    "12s:12f"    ContextFirst: the 12 attention blocks over all tokens, then the 12 feed-forward
                 blocks on S only.
    "4sf" / ""   all layers full (plain BERT; with a query set the output is gathered at the end).

Parameters are the full layers' own: the i-th attention block of the arrangement uses
`layer_i/attention` (+ its LayerNorm), the i-th feed-forward block `layer_i/ffn`, so every
arrangement has exactly BERT's parameter tree and a BERT checkpoint loads with no conversion.

Folded attention: a narrow layer's keys and values are H W_K + b_K and H W_V + b_V over all L tokens
(4·L·D² FLOPs), which dominates when S is small. When `folds_attention` says so, the layer instead
folds W_K into each query and W_V after the attention-weighted sum of H (`encoder.folded_attention`):
4·M·D² + 4·M·N·L·D, exactly the same function of the same parameters (b_K cancels in the softmax).

S is chosen by the caller through `Encoder(..., query_positions_BxM=...)`: the masked slots in MLM
pretraining (a fixed count per sequence), [CLS] for sequence and pair classification. Without a query
set (token tagging, extractive QA) S is every position: the same function of the same parameters,
with no speed-up.
"""
from __future__ import annotations

import dataclasses
import functools
import re
from typing import Sequence

import jax
import jax.numpy as jnp

from atm.models.encoder import EncoderConfig, attention_mask_from_segments, gather_positions

_GROUP = re.compile(r"(\d*)(sf|s|f)")


@dataclasses.dataclass(frozen=True)
class Step:
    """One call of layer `layer`'s blocks: `sublayers` "sf", "s" or "f", over all tokens or only S."""
    layer: int
    sublayers: str
    narrow: bool


def _parse_part(part: str, arrangement: str) -> list[str]:
    blocks, pos = [], 0
    while pos < len(part):
        match = _GROUP.match(part, pos)
        if not match or match.group(1) == "0":
            raise ValueError(f"config.model.arrangement={arrangement!r}: cannot read {part[pos:]!r}; write groups "
                             f"like '2sf', 's', '12f' (count, then sf | s | f), e.g. '2sf:10sf' or '12s:12f'")
        count = int(match.group(1) or 1)
        blocks += [b for _ in range(count) for b in match.group(2)]
        pos = match.end()
    return blocks


@functools.lru_cache(maxsize=None)
def plan(arrangement: str, num_layers: int) -> tuple[Step, ...]:
    """The arrangement as layer calls, in order. Raises ValueError naming what does not fit."""
    parts = arrangement.replace(" ", "").split(":")
    if len(parts) > 2 or not parts[0]:
        raise ValueError(f"config.model.arrangement={arrangement!r}: write FULL:NARROW, e.g. '2sf:10sf' "
                         f"(at least one full block first: the narrow layers' keys and values come from it)")
    blocks = [(b, False) for b in _parse_part(parts[0], arrangement)]
    blocks += [(b, True) for b in _parse_part(parts[1] if len(parts) == 2 else "", arrangement)]
    counts = {b: sum(1 for x, _ in blocks if x == b) for b in "sf"}
    if counts["s"] != num_layers or counts["f"] != num_layers:
        raise ValueError(f"config.model.arrangement={arrangement!r} has {counts['s']} attention (s) and "
                         f"{counts['f']} feed-forward (f) blocks; config.model.num_layers={num_layers} needs "
                         f"{num_layers} of each (e.g. '{max(num_layers - 1, 1)}sf:1sf' or "
                         f"'{num_layers}s:{num_layers}f')")
    steps, next_layer = [], {"s": 0, "f": 0}
    for block, narrow in blocks:
        layer = next_layer[block]
        next_layer[block] += 1
        previous = steps[-1] if steps else None
        if (block == "f" and previous and previous.sublayers == "s" and previous.layer == layer
                and previous.narrow == narrow):
            steps[-1] = Step(layer, "sf", narrow)  # one call for a whole layer
        else:
            steps.append(Step(layer, block, narrow))
    return tuple(steps)


def has_narrow_steps(cfg: EncoderConfig) -> bool:
    return bool(cfg.arrangement) and any(step.narrow for step in plan(cfg.arrangement, cfg.num_layers))


def is_plain(cfg: EncoderConfig) -> bool:
    """True when the arrangement is BERT's own order: layer i's attention then its FFN, all full."""
    steps = plan(cfg.arrangement, cfg.num_layers) if cfg.arrangement else ()
    return all(s == Step(i, "sf", False) for i, s in enumerate(steps))


def check_arrangement(cfg: EncoderConfig):
    """Validate `cfg.arrangement` against the rest of the config (called by EncoderConfig)."""
    plan(cfg.arrangement, cfg.num_layers)
    if cfg.scan_layers and not is_plain(cfg):
        raise ValueError(f"config.model.arrangement={cfg.arrangement!r} calls layers one by one; it needs "
                         f"config.model.scan_layers=False (a scanned stack runs every layer over all tokens)")


def run_arrangement(cfg: EncoderConfig, layers: Sequence, x_BxLxD: jax.Array, segment_ids_BxL: jax.Array,
                    query_positions_BxM: jax.Array | None) -> jax.Array:
    """The layer stack of `Encoder` in `cfg.arrangement`: (B, L, D) in; (B, M, D) out with a query set,
    else (B, L, D). `layers` are the encoder's bound layer modules (a scanned stack only when plain)."""
    mask = attention_mask_from_segments(segment_ids_BxL)
    if cfg.scan_layers:  # check_arrangement allows scan only for the plain order
        h, _ = layers(x_BxLxD, mask, None)
        return h if query_positions_BxM is None else gather_positions(h, query_positions_BxM)
    steps = plan(cfg.arrangement, cfg.num_layers)
    h = x_BxLxD
    for step in (s for s in steps if not s.narrow):
        h, _ = layers[step.layer](h, mask, None, step.sublayers)
    narrow_steps = [s for s in steps if s.narrow]
    if query_positions_BxM is None:  # S = every position
        g, narrow_mask = h, mask
    else:
        g = gather_positions(h, query_positions_BxM)
        query_segments_BxM = jnp.take_along_axis(segment_ids_BxL, query_positions_BxM, axis=1)
        narrow_mask = attention_mask_from_segments(segment_ids_BxL, query_segments_BxM)
    for step in narrow_steps:
        g, _ = layers[step.layer](g, narrow_mask, h, step.sublayers)  # keys/values: H, the last full output
    return g


def attention_forward_flops(cfg: EncoderConfig, num_queries: float, num_keys: float, folded: bool) -> float:
    """Forward FLOPs of one attention block for one sequence: M = `num_queries` queries over
    L = `num_keys` keys. Unfolded: Q and output projections (4·M·D²), K and V (4·L·D²), QK^T and PV
    (4·M·L·D). Folded (`encoder.folded_attention`): Q and output projections, W_K folded into the
    queries and W_V applied to the pooled H (8·M·D² in all), scores and pooling per head (4·M·N·L·D)."""
    d, m, n = cfg.hidden_size, num_queries, num_keys
    if folded:
        return 2 * 4 * d * d * m + 2 * 2 * m * cfg.num_heads * n * d
    return 2 * (2 * d * d * m + 2 * d * d * n) + 2 * 2 * m * n * d


def folds_attention(cfg: EncoderConfig, num_queries: float, num_keys: float) -> bool:
    """Whether a narrow layer's attention (M queries per sequence, keys and values from L tokens of H)
    runs folded. `cfg.narrow_attention` "folded" / "unfolded" force it; "auto" folds when its forward
    FLOPs are lower (`attention_forward_flops`): M·(D + (N - 1)·L) < L·D, i.e. about M·N < D.
    E.g. always for [CLS]-only inference (M = 1); MLM at D 256, N 4, L 128 with M = 19 slots folds,
    at D 768, N 12, L 512 with M = 77 it does not. Never for S = every position (M = L)."""
    if cfg.narrow_attention != "auto":
        return cfg.narrow_attention == "folded"
    return (attention_forward_flops(cfg, num_queries, num_keys, True)
            < attention_forward_flops(cfg, num_queries, num_keys, False))


def stack_forward_flops(cfg: EncoderConfig, seq_len: int, num_queries: float | None = None) -> float:
    """Forward FLOPs of the layer stack for one sequence of `seq_len` tokens, `num_queries` of them in S
    (None: every position). Attention block: `attention_forward_flops` (narrow ones folded where
    `folds_attention` says so); feed-forward on its queries."""
    d, f, n = cfg.hidden_size, cfg.ffn_size, seq_len
    m_narrow = n if num_queries is None else num_queries
    steps = (plan(cfg.arrangement, cfg.num_layers) if cfg.arrangement
             else tuple(Step(i, "sf", False) for i in range(cfg.num_layers)))
    total = 0.0
    for step in steps:
        m = m_narrow if step.narrow else n
        if "s" in step.sublayers:
            # Full layers have no separate keys (kv = x); narrow ones always get H as kv, even when S = all.
            total += attention_forward_flops(cfg, m, n, step.narrow and folds_attention(cfg, m, n))
        if "f" in step.sublayers:
            total += 2 * 2 * d * f * m
    return total
