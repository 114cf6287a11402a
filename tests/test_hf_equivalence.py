"""Golden test: atm's EncoderForMLM with converted weights reproduces Hugging Face's logits.

Small random-weight HF BertForMaskedLM and RobertaForMaskedLM (built from configs, no download) in
eval mode; right-padded batches with an attention mask; every non-pad logit within 1e-4.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from atm.convert import hf as convert  # noqa: E402
from atm.models.encoder import EncoderForMLM  # noqa: E402

VOCAB, HIDDEN, LAYERS, HEADS, FFN, SEQ = 100, 64, 2, 4, 128, 12
TOLERANCE = 1e-4


def _hf_model(family: str):
    torch.manual_seed(0 if family == "bert" else 1)
    common = dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                  intermediate_size=FFN, initializer_range=0.2)  # large init: logits far from trivial
    if family == "bert":
        model = transformers.BertForMaskedLM(transformers.BertConfig(max_position_embeddings=32, **common))
    else:
        model = transformers.RobertaForMaskedLM(transformers.RobertaConfig(
            max_position_embeddings=SEQ + 2, type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1, **common))
    with torch.no_grad():  # non-zero biases and LN params so every converted tensor matters
        for name, p in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


@pytest.fixture(scope="module", params=["bert", "roberta"])
def hf_case(request):
    family = request.param
    model = _hf_model(family)
    pad = model.config.pad_token_id
    rng = np.random.default_rng(0)
    lengths = np.array([SEQ, 7, 3])
    ids = rng.integers(3, VOCAB, size=(3, SEQ))  # ids ≥ 3: never RoBERTa's pad (1)
    mask = np.arange(SEQ)[None, :] < lengths[:, None]
    ids = np.where(mask, ids, pad)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask.astype(np.int64))).logits
    return family, model, ids, mask, logits.numpy()


def _atm_logits(cfg, params, ids, mask, masked_positions=None):
    model = EncoderForMLM(cfg)
    fn = jax.jit(lambda p, i, s, m: model.apply({"params": p}, i, s, masked_positions_BxM=m))
    return np.asarray(fn(params, jnp.asarray(ids, jnp.int32), jnp.asarray(mask, jnp.int32),
                         None if masked_positions is None else jnp.asarray(masked_positions, jnp.int32)))


def test_config_conversion(hf_case):
    family, model, *_ = hf_case
    cfg = convert.encoder_config_from_hf(model.config)
    assert (cfg.vocab_size, cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.ffn_size) == (
        VOCAB, LAYERS, HIDDEN, HEADS, FFN)
    if family == "roberta":
        assert (cfg.position_offset, cfg.type_vocab_size, cfg.max_positions) == (2, 1, SEQ + 2)
    else:
        assert (cfg.position_offset, cfg.type_vocab_size) == (0, 2)


@pytest.mark.parametrize("impl", ["einsum", "xla"])
@pytest.mark.parametrize("scan", [False, True], ids=["layers", "scan"])
def test_logits_match_hf(hf_case, impl, scan):
    family, model, ids, mask, want = hf_case
    cfg, params = convert.from_hf_model(model, attention_impl=impl, scan_layers=scan)
    got = _atm_logits(cfg, params, ids, mask)
    assert got.shape == want.shape
    error = np.abs(got - want)[mask].max()
    assert error < TOLERANCE, f"{family} {impl} scan={scan}: max |atm - HF| = {error:.2e}"
    assert np.abs(want[mask]).max() > 1.0  # the comparison is not between near-zero logits


def test_gathered_head_equals_full_head(hf_case):
    _, model, ids, mask, _ = hf_case
    cfg, params = convert.from_hf_model(model)
    positions = np.array([[0, 5, 11, 3], [6, 0, 2, 2], [1, 2, 0, 0]])
    full = _atm_logits(cfg, params, ids, mask)
    gathered = _atm_logits(cfg, params, ids, mask, positions)
    np.testing.assert_allclose(gathered, np.take_along_axis(full, positions[:, :, None], axis=1),
                               atol=1e-5, rtol=1e-5)


def test_round_trip_to_hf(hf_case):
    """atm params → HF state_dict → the same tensors; scan and per-layer layouts hold the same weights."""
    family, model, *_ = hf_case
    cfg_scan, scanned = convert.from_hf_model(model, scan_layers=True)
    cfg_list, listed = convert.from_hf_model(model, scan_layers=False)
    back = convert.hf_state_dict_from_params(scanned, cfg_scan, model.config.model_type)
    assert back.keys() == convert.hf_state_dict_from_params(listed, cfg_list, model.config.model_type).keys()
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    assert set(back) == {k for k in state if not k.endswith(("position_ids", "token_type_ids"))}
    for k, v in back.items():
        np.testing.assert_array_equal(v, state[k], err_msg=k)


def test_converter_rejects_mismatches(hf_case):
    _, model, *_ = hf_case
    cfg = convert.encoder_config_from_hf(model.config)
    with pytest.raises(ValueError, match="would drop"):
        convert.params_from_hf(model.state_dict(), dataclasses.replace(cfg, num_layers=1))
    with pytest.raises(ValueError, match="do not match EncoderForMLM"):
        convert.params_from_hf(model.state_dict(), dataclasses.replace(cfg, max_positions=cfg.max_positions + 1))
    with pytest.raises(ValueError, match="not supported"):
        convert.encoder_config_from_hf({"model_type": "gpt2"})
