"""MLM masking statistics, the gathered head, and preset sizes."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from atm.models import presets
from atm.models.encoder import Encoder, EncoderConfig, EncoderForMLM, param_count
from atm.objectives.mlm import mask_tokens, num_mask_slots


def test_masking_statistics():
    batch, length, vocab, mask_id = 512, 128, 1000, 4
    rng = np.random.default_rng(0)
    ids = jnp.asarray(rng.integers(10, vocab, (batch, length)), jnp.int32)
    real_len = rng.integers(20, length + 1, batch)
    maskable = jnp.asarray(np.arange(length)[None, :] < real_len[:, None])
    slots = num_mask_slots(0.15, length)
    out = jax.jit(lambda r: mask_tokens(r, ids, maskable, num_slots=slots, mask_rate=0.15, mask_token_rate=0.8,
                                        random_token_rate=0.1, mask_id=mask_id, random_low=5,
                                        vocab_size=vocab))(jax.random.key(0))
    w = np.asarray(out["masked_weights"]).astype(bool)
    pos, targets = np.asarray(out["masked_positions"]), np.asarray(out["masked_targets"])
    new = np.take_along_axis(np.asarray(out["input_ids"]), pos, axis=1)

    assert abs(w.sum() / np.asarray(maskable).sum() - 0.15) < 0.005  # 15% of real tokens
    assert np.all(np.take_along_axis(np.asarray(maskable), pos, axis=1)[w])  # never padding
    for row in range(batch):  # distinct positions per row
        assert len(set(pos[row][w[row]])) == w[row].sum()
    is_mask = (new == mask_id)[w]
    kept = (new == targets)[w] & ~is_mask
    random = ~is_mask & ~kept
    total = w.sum()
    assert abs(is_mask.sum() / total - 0.8) < 0.02
    assert abs(random.sum() / total - 0.1) < 0.015 + 1 / vocab  # a random draw may equal the target
    assert abs(kept.sum() / total - 0.1) < 0.015
    untouched = np.ones_like(new, bool)
    np.testing.assert_array_equal(  # positions that were not chosen are unchanged
        np.where(np.isin(np.arange(length)[None, :].repeat(batch, 0), pos), 0, np.asarray(out["input_ids"])),
        np.where(np.isin(np.arange(length)[None, :].repeat(batch, 0), pos), 0, np.asarray(ids)))
    del untouched


def test_masks_depend_only_on_the_key():
    ids = jnp.arange(64, dtype=jnp.int32).reshape(2, 32) + 10
    maskable = jnp.ones_like(ids, bool)
    kw = dict(num_slots=5, mask_rate=0.15, mask_token_rate=0.8, random_token_rate=0.1, mask_id=4, random_low=5,
              vocab_size=100)
    a = mask_tokens(jax.random.key(1), ids, maskable, **kw)
    b = mask_tokens(jax.random.key(1), ids, maskable, **kw)
    c = mask_tokens(jax.random.key(2), ids, maskable, **kw)
    np.testing.assert_array_equal(a["input_ids"], b["input_ids"])
    assert not np.array_equal(a["masked_positions"], c["masked_positions"])


@pytest.mark.parametrize("pre_ln,scan", [(False, False), (True, True)])
def test_gathered_head_equals_full_head_at_masked_positions(pre_ln, scan):
    cfg = EncoderConfig(vocab_size=97, num_layers=2, hidden_size=32, num_heads=4, ffn_size=64, max_positions=40,
                        pre_layer_norm=pre_ln, scan_layers=scan)
    model = EncoderForMLM(cfg)
    ids = jax.random.randint(jax.random.key(0), (3, 24), 5, 97)
    positions = jnp.array([[0, 5, 23], [1, 2, 3], [7, 7, 9]])
    params = model.init(jax.random.key(1), ids, masked_positions_BxM=positions)
    full = model.apply(params, ids)
    gathered = model.apply(params, ids, masked_positions_BxM=positions)
    np.testing.assert_allclose(gathered, np.take_along_axis(np.asarray(full), np.asarray(positions)[..., None], 1),
                               atol=1e-5)


def test_packed_segments_do_not_see_each_other():
    cfg = EncoderConfig(vocab_size=50, num_layers=2, hidden_size=32, num_heads=4, ffn_size=64, max_positions=40,
                        hidden_dropout=0.0)
    model = Encoder(cfg)
    a, b = jnp.arange(5, 15)[None], jnp.arange(20, 28)[None]
    packed = jnp.concatenate([a, b, jnp.zeros((1, 6), jnp.int32)], axis=1)
    segments = jnp.array([[1] * 10 + [2] * 8 + [0] * 6])
    positions = jnp.array([list(range(10)) + list(range(8)) + [0] * 6])
    params = model.init(jax.random.key(0), packed, segments, positions)
    h_packed = model.apply(params, packed, segments, positions)
    h_a, h_b = model.apply(params, a), model.apply(params, b)
    np.testing.assert_allclose(h_packed[:, :10], h_a, atol=1e-5)
    np.testing.assert_allclose(h_packed[:, 10:18], h_b, atol=1e-5)


@pytest.mark.parametrize("name", sorted(presets.NOMINAL_NON_EMBEDDING))
def test_preset_non_embedding_parameter_count(name):
    cfg = EncoderConfig(**presets.get(name))
    shapes = jax.eval_shape(lambda: Encoder(cfg).init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32)))
    count = param_count(shapes["params"], exclude_embeddings=True)
    nominal = presets.NOMINAL_NON_EMBEDDING[name]
    assert abs(count - nominal) / nominal < 0.03, f"{name}: {count / 1e6:.1f}M vs {nominal / 1e6:.1f}M"


def test_every_preset_builds_and_unknown_preset_is_named():
    for name in presets.PRESETS:
        EncoderConfig(**presets.get(name))
    with pytest.raises(ValueError, match="atm_2p3b"):
        presets.get("atm_2.3b")
