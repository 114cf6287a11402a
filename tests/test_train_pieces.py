"""Optimizer pieces and encoder options: schedule, weight-decay mask, remat, scan, bf16."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from atm.models.encoder import EncoderConfig, EncoderForMLM
from atm.train import learning_rate_schedule, weight_decay_mask


def opt(**kw):
    c = dict(learning_rate=1.0, warmup_steps=10, schedule="linear", end_learning_rate_fraction=0.0)
    c.update(kw)
    return ml_collections.ConfigDict(c)


def test_warmup_then_linear_and_cosine_decay():
    linear = learning_rate_schedule(opt(), 110)
    assert [float(linear(s)) for s in (0, 5, 10, 60, 110)] == pytest.approx([0.0, 0.5, 1.0, 0.5, 0.0])
    cosine = learning_rate_schedule(opt(schedule="cosine", end_learning_rate_fraction=0.1), 110)
    assert float(cosine(10)) == pytest.approx(1.0)
    assert float(cosine(60)) == pytest.approx(0.1 + 0.9 * 0.5)
    assert float(cosine(110)) == pytest.approx(0.1)


def _params(cfg):
    model = EncoderForMLM(cfg)
    ids = jnp.ones((2, 8), jnp.int32)
    return model, nn.unbox(model.init(jax.random.key(0), ids, masked_positions_BxM=jnp.zeros((2, 2), jnp.int32)))


def test_no_weight_decay_on_layer_norm_and_biases():
    _, variables = _params(EncoderConfig(vocab_size=50, num_layers=1, hidden_size=16, num_heads=2, ffn_size=32,
                                         max_positions=16))
    mask = weight_decay_mask(variables["params"])
    flat = {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_leaves_with_path(mask)}
    for path, decays in flat.items():
        is_norm_or_bias = "layer_norm" in path or path.endswith("['bias']") or "output_bias" in path
        assert decays == (not is_norm_or_bias), path
    assert flat["['encoder']['layer_0']['attention']['query']['kernel']"]
    assert flat["['encoder']['embeddings']['word_embeddings']['embedding']"]


def _loss_and_grads(cfg, params):
    model = EncoderForMLM(cfg)
    ids = jax.random.randint(jax.random.key(1), (2, 12), 5, 50)
    positions = jnp.array([[1, 4], [2, 9]])

    def loss(p):
        return jnp.mean(model.apply({"params": p}, ids, masked_positions_BxM=positions).astype(jnp.float32) ** 2)
    return jax.value_and_grad(loss)(params)


BASE = dict(vocab_size=50, num_layers=3, hidden_size=16, num_heads=2, ffn_size=32, max_positions=16,
            hidden_dropout=0.0)


@pytest.mark.parametrize("policy", ["full", "dots", "dots_no_batch"])
def test_remat_gives_the_same_loss_and_gradients(policy):
    plain = EncoderConfig(**BASE)
    _, variables = _params(plain)
    ref = _loss_and_grads(plain, variables["params"])
    got = _loss_and_grads(EncoderConfig(**BASE, remat_policy=policy), variables["params"])
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(got[1]), jax.tree_util.tree_leaves(ref[1])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_scanned_layers_equal_unrolled_layers():
    plain = EncoderConfig(**BASE)
    _, variables = _params(plain)
    p = variables["params"]
    stacked = {**p, "encoder": {"embeddings": p["encoder"]["embeddings"],
                                "layers": jax.tree_util.tree_map(lambda *xs: jnp.stack(xs),
                                                                 *[p["encoder"][f"layer_{i}"] for i in range(3)])}}
    ref = _loss_and_grads(plain, p)
    got = _loss_and_grads(EncoderConfig(**BASE, scan_layers=True, remat_policy="full"), stacked)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-6)


def test_bfloat16_compute_stays_close_to_float32():
    plain = EncoderConfig(**BASE)
    _, variables = _params(plain)
    ref, _ = _loss_and_grads(plain, variables["params"])
    got, grads = _loss_and_grads(EncoderConfig(**BASE, dtype="bfloat16"), variables["params"])
    assert abs(float(got) - float(ref)) / float(ref) < 0.03
    assert all(g.dtype == jnp.float32 for g in jax.tree_util.tree_leaves(grads))  # params stay fp32


def test_bad_model_values_are_named():
    with pytest.raises(ValueError, match="config.model.activation"):
        EncoderConfig(**{**BASE, "activation": "swish2"})
    with pytest.raises(ValueError, match="attention_impl='einsum'"):
        EncoderConfig(**{**BASE, "attention_dropout": 0.1})


def test_sinusoidal_position_start():
    """position_init="sinusoidal" starts the learned position table at Vaswani's sin/cos, RMS = initializer_range;
    the parameters are the same ones "normal" makes (same shape), so checkpoints and exports do not change."""
    cfg = EncoderConfig(vocab_size=50, num_layers=1, hidden_size=16, num_heads=2, ffn_size=32, max_positions=16)
    _, normal = _params(cfg)
    _, sinus = _params(EncoderConfig(**{**cfg.__dict__, "position_init": "sinusoidal"}))
    table = np.asarray(sinus["params"]["encoder"]["embeddings"]["position_embeddings"]["embedding"])
    assert table.shape == normal["params"]["encoder"]["embeddings"]["position_embeddings"]["embedding"].shape
    pos, i = np.arange(16)[:, None], np.arange(8)[None, :]
    angle = pos / 10000 ** (2 * i / 16)
    expected = np.empty((16, 16))
    expected[:, 0::2], expected[:, 1::2] = np.sin(angle), np.cos(angle)
    np.testing.assert_allclose(table, expected * 0.02 * 2 ** 0.5, atol=1e-7)
    assert np.sqrt(np.mean(table ** 2)) == pytest.approx(0.02, rel=1e-6)
    with pytest.raises(ValueError, match="config.model.position_init"):
        EncoderConfig(**{**cfg.__dict__, "position_init": "rope"})
