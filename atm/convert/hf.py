"""Hugging Face `BertForMaskedLM` / `RobertaForMaskedLM` / `XLMRobertaForMaskedLM` ⇄ atm `EncoderForMLM`.

    from transformers import AutoModelForMaskedLM
    from atm.convert import hf
    cfg, params = hf.from_hf_model(AutoModelForMaskedLM.from_pretrained("xlm-roberta-base"),
                                   attention_impl="xla", scan_layers=True)
    logits = EncoderForMLM(cfg).apply({"params": params}, ids_BxL, segment_ids_BxL)

Layout differences the converter handles (D hidden, N heads, H head size, F FFN size, V vocabulary):
  - torch Linear weights are (out, in); Flax kernels are (in, out). Q/K/V become DenseGeneral kernels
    (D, N, H) with (N, H) biases; the attention output dense becomes (N, H, D).
  - LayerNorm weight/bias (or the old gamma/beta) → scale/bias.
  - The MLM head: transform dense + LN + decoder tied to the word embeddings (an untied decoder
    becomes `mlm_head/decoder/kernel` (D, V)) + the output bias.
  - RoBERTa/XLM-R number positions from padding_idx + 1 = 2: `EncoderConfig.position_offset=2`, and
    their position table keeps its 514 rows. HF derives positions from the ids (pads keep padding_idx),
    atm from `positions_BxL` (default arange); both agree at every non-pad position of right-padded rows.
  - scan_layers=False puts layer i under `encoder/layer_i`; scan_layers=True stacks all layers under
    `encoder/layers` with a leading layer axis.
The params returned always have exactly the tree, shapes and dtypes of
`nn.unbox(EncoderForMLM(cfg).init(...)["params"])`; a mismatch raises before anything is returned.
`tests/test_hf_equivalence.py` checks the logits against HF's within 1e-4.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from atm.models.encoder import EncoderConfig, EncoderForMLM

BERT_FAMILY = ("bert",)
ROBERTA_FAMILY = ("roberta", "xlm-roberta", "camembert")
# HF hidden_act → atm activation.
_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_new", "gelu_pytorch_tanh": "gelu_new", "relu": "relu",
                "silu": "silu", "swish": "silu"}
_HEAD_PREFIX = {"bert": "cls.predictions.", "roberta": "lm_head."}
# Head parameter names under each family's head prefix.
_HEAD_NAMES = {
    "bert": {"dense": "transform.dense", "layer_norm": "transform.LayerNorm"},
    "roberta": {"dense": "dense", "layer_norm": "layer_norm"},
}


def _get(hf_config: Any, key: str, default: Any = None) -> Any:
    if isinstance(hf_config, Mapping):
        return hf_config.get(key, default)
    return getattr(hf_config, key, default)


def _family(model_type: str) -> str:
    if model_type in BERT_FAMILY:
        return "bert"
    if model_type in ROBERTA_FAMILY:
        return "roberta"
    raise ValueError(f"Hugging Face model_type={model_type!r} is not supported; "
                     f"supported: {sorted(BERT_FAMILY + ROBERTA_FAMILY)}")


def encoder_config_from_hf(hf_config: Any, **overrides: Any) -> EncoderConfig:
    """EncoderConfig with the shape and numerics of a HF BERT/RoBERTa/XLM-R config (object or dict).

    `overrides` set atm-only fields (attention_impl, scan_layers, dtype, remat_policy, ...) or replace
    converted ones. HF's attention-probability dropout is kept only with attention_impl="einsum" (the
    one implementation with attention dropout); otherwise it becomes 0.0 unless overridden.
    """
    model_type = _get(hf_config, "model_type", "")
    family = _family(model_type)
    position_type = _get(hf_config, "position_embedding_type", "absolute") or "absolute"
    if position_type != "absolute":
        raise ValueError(f"HF config position_embedding_type={position_type!r}: atm supports 'absolute' only")
    if _get(hf_config, "is_decoder", False) or _get(hf_config, "add_cross_attention", False):
        raise ValueError("HF config is_decoder/add_cross_attention: atm converts encoders only")
    hidden_act = _get(hf_config, "hidden_act", "gelu")
    if hidden_act not in _ACTIVATIONS:
        raise ValueError(f"HF config hidden_act={hidden_act!r} has no atm equivalent "
                         f"(supported: {sorted(_ACTIVATIONS)})")
    activation = _ACTIVATIONS[hidden_act]
    if family == "roberta" and activation != "gelu":
        # RobertaLMHead applies erf-GELU whatever hidden_act says; atm's head uses the model activation.
        raise ValueError(f"RoBERTa-style config with hidden_act={hidden_act!r}: its LM head always uses "
                         "'gelu', atm's head uses the model activation; not convertible exactly")
    fields = dict(
        vocab_size=int(_get(hf_config, "vocab_size")),
        num_layers=int(_get(hf_config, "num_hidden_layers")),
        hidden_size=int(_get(hf_config, "hidden_size")),
        num_heads=int(_get(hf_config, "num_attention_heads")),
        ffn_size=int(_get(hf_config, "intermediate_size")),
        max_positions=int(_get(hf_config, "max_position_embeddings")),
        type_vocab_size=int(_get(hf_config, "type_vocab_size", 2)),
        position_offset=(1 if _get(hf_config, "pad_token_id") is None else int(_get(hf_config, "pad_token_id"))) + 1
        if family == "roberta" else 0,
        pre_layer_norm=False,
        activation=activation,
        layer_norm_eps=float(_get(hf_config, "layer_norm_eps", 1e-12)),
        hidden_dropout=float(_get(hf_config, "hidden_dropout_prob", 0.1)),
        tie_embeddings=bool(_get(hf_config, "tie_word_embeddings", True)),
        initializer_range=float(_get(hf_config, "initializer_range", 0.02)),
    )
    impl = overrides.get("attention_impl", EncoderConfig.attention_impl)
    fields["attention_dropout"] = (float(_get(hf_config, "attention_probs_dropout_prob", 0.0))
                                   if impl == "einsum" else 0.0)
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(EncoderConfig)})
    if unknown:
        raise ValueError(f"unknown EncoderConfig fields {unknown}")
    fields.update(overrides)
    return EncoderConfig(**fields)


# --- per-tensor layout transforms: (to atm, to HF) -------------------------------------------------------
def _qkv_kernel(cfg):  # torch (N·H, D) ⇄ (D, N, H)
    return (lambda w: w.T.reshape(cfg.hidden_size, cfg.num_heads, cfg.head_size),
            lambda k: k.reshape(cfg.hidden_size, -1).T)


def _qkv_bias(cfg):  # (N·H,) ⇄ (N, H)
    return lambda b: b.reshape(cfg.num_heads, cfg.head_size), lambda b: b.reshape(-1)


def _out_kernel(cfg):  # torch (D, N·H) ⇄ (N, H, D)
    return (lambda w: w.T.reshape(cfg.num_heads, cfg.head_size, cfg.hidden_size),
            lambda k: k.reshape(-1, cfg.hidden_size).T)


_DENSE = (lambda w: w.T, lambda k: k.T)
_COPY = (lambda x: x, lambda x: x)


def _layer_table(cfg: EncoderConfig) -> list[tuple[tuple[str, ...], str, tuple]]:
    """(atm path inside a layer, HF name inside `encoder.layer.{i}.`, transforms)."""
    table = []
    for name in ("query", "key", "value"):
        table += [(("attention", name, "kernel"), f"attention.self.{name}.weight", _qkv_kernel(cfg)),
                  (("attention", name, "bias"), f"attention.self.{name}.bias", _qkv_bias(cfg))]
    table += [
        (("attention", "output", "kernel"), "attention.output.dense.weight", _out_kernel(cfg)),
        (("attention", "output", "bias"), "attention.output.dense.bias", _COPY),
        (("attention_layer_norm", "scale"), "attention.output.LayerNorm.weight", _COPY),
        (("attention_layer_norm", "bias"), "attention.output.LayerNorm.bias", _COPY),
        (("ffn", "wi", "kernel"), "intermediate.dense.weight", _DENSE),
        (("ffn", "wi", "bias"), "intermediate.dense.bias", _COPY),
        (("ffn", "wo", "kernel"), "output.dense.weight", _DENSE),
        (("ffn", "wo", "bias"), "output.dense.bias", _COPY),
        (("ffn_layer_norm", "scale"), "output.LayerNorm.weight", _COPY),
        (("ffn_layer_norm", "bias"), "output.LayerNorm.bias", _COPY),
    ]
    return table


def _global_table(cfg: EncoderConfig, family: str, body: str) -> list[tuple[tuple[str, ...], str, tuple]]:
    """Embeddings and MLM head: (atm path, full HF name, transforms)."""
    emb = ("encoder", "embeddings")
    table = [
        (emb + ("word_embeddings", "embedding"), f"{body}embeddings.word_embeddings.weight", _COPY),
        (emb + ("position_embeddings", "embedding"), f"{body}embeddings.position_embeddings.weight", _COPY),
        (emb + ("layer_norm", "scale"), f"{body}embeddings.LayerNorm.weight", _COPY),
        (emb + ("layer_norm", "bias"), f"{body}embeddings.LayerNorm.bias", _COPY),
    ]
    if cfg.type_vocab_size > 0:
        table.append((emb + ("token_type_embeddings", "embedding"),
                      f"{body}embeddings.token_type_embeddings.weight", _COPY))
    head, names = _HEAD_PREFIX[family], _HEAD_NAMES[family]
    table += [
        (("mlm_head", "transform", "kernel"), f"{head}{names['dense']}.weight", _DENSE),
        (("mlm_head", "transform", "bias"), f"{head}{names['dense']}.bias", _COPY),
        (("mlm_head", "layer_norm", "scale"), f"{head}{names['layer_norm']}.weight", _COPY),
        (("mlm_head", "layer_norm", "bias"), f"{head}{names['layer_norm']}.bias", _COPY),
        (("mlm_head", "output_bias"), f"{head}bias", _COPY),
    ]
    if not cfg.tie_embeddings:
        table.append((("mlm_head", "decoder", "kernel"), f"{head}decoder.weight", _DENSE))
    return table


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch.Tensor (bf16/fp16 go through float32: numpy has no bfloat16)
        x = x.detach().cpu()
        if x.dtype.is_floating_point:
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def _lookup(state_dict: Mapping[str, Any], name: str, used: set) -> np.ndarray:
    candidates = [name]
    if name.endswith("LayerNorm.weight"):
        candidates.append(name[: -len("weight")] + "gamma")  # pre-2019 checkpoints
    if name.endswith("LayerNorm.bias"):
        candidates.append(name[: -len("bias")] + "beta")
    if name.endswith(("cls.predictions.bias", "lm_head.bias")):
        candidates.append(name[: -len("bias")] + "decoder.bias")
    for key in candidates:
        if key in state_dict:
            used.add(key)
            return _to_numpy(state_dict[key])
    raise KeyError(f"HF state_dict has no {name!r} (looked for {candidates}); is this a *ForMaskedLM "
                   f"checkpoint of the configured shape?")


def _detect(state_dict: Mapping[str, Any]) -> tuple[str, str]:
    """(family, body prefix) from the state_dict's names."""
    suffix = "embeddings.word_embeddings.weight"
    bodies = [k[: -len(suffix)] for k in state_dict if k.endswith(suffix)]
    if len(bodies) != 1:
        raise ValueError(f"HF state_dict: expected one '*{suffix}', found {bodies or 'none'}")
    if any(k.startswith(_HEAD_PREFIX["bert"]) for k in state_dict):
        return "bert", bodies[0]
    if any(k.startswith(_HEAD_PREFIX["roberta"]) for k in state_dict):
        return "roberta", bodies[0]
    raise ValueError("HF state_dict has no MLM head ('cls.predictions.*' or 'lm_head.*'); convert a "
                     "BertForMaskedLM / RobertaForMaskedLM / XLMRobertaForMaskedLM")


def _set(tree: dict, path: tuple[str, ...], value):
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def expected_params_shapes(cfg: EncoderConfig) -> Any:
    """ShapeDtypeStructs of `nn.unbox(EncoderForMLM(cfg).init(...)['params'])` (nothing materialised)."""
    ids = jnp.zeros((1, 2), jnp.int32)
    return jax.eval_shape(lambda: nn.unbox(EncoderForMLM(cfg).init(jax.random.key(0), ids)["params"]))


def check_params(params: Any, cfg: EncoderConfig, what: str = "converted params"):
    """Raise ValueError unless `params` has exactly EncoderForMLM(cfg)'s tree, shapes and dtypes."""
    expected = expected_params_shapes(cfg)
    got_paths = {jax.tree_util.keystr(p): (tuple(x.shape), jnp.dtype(x.dtype))
                 for p, x in jax.tree_util.tree_leaves_with_path(params)}
    want_paths = {jax.tree_util.keystr(p): (tuple(x.shape), jnp.dtype(x.dtype))
                  for p, x in jax.tree_util.tree_leaves_with_path(expected)}
    problems = [f"missing {k}" for k in sorted(set(want_paths) - set(got_paths))]
    problems += [f"unexpected {k}" for k in sorted(set(got_paths) - set(want_paths))]
    problems += [f"{k}: got {got_paths[k]}, EncoderForMLM wants {want_paths[k]}"
                 for k in sorted(set(got_paths) & set(want_paths)) if got_paths[k] != want_paths[k]]
    if problems or jax.tree_util.tree_structure(params) != jax.tree_util.tree_structure(expected):
        raise ValueError(f"{what} do not match EncoderForMLM(cfg): " + "; ".join(problems[:10] or
                                                                                ["tree structure differs"]))


def _ignorable(key: str, family: str, body: str) -> bool:
    head = _HEAD_PREFIX[family]
    return (key.endswith(("embeddings.position_ids", "embeddings.token_type_ids"))  # buffers
            or key.startswith(f"{body}pooler.")  # unused by MLM
            or key.startswith("cls.seq_relationship."))  # BertForPreTraining's NSP head


def params_from_hf(state_dict: Mapping[str, Any], cfg: EncoderConfig) -> dict:
    """atm EncoderForMLM params from a HF *ForMaskedLM state_dict (torch tensors or arrays).

    Every tensor of the state_dict must be used (or be a known-unused buffer, pooler or NSP head);
    a tied decoder must equal the word embeddings.
    """
    if cfg.pre_layer_norm:
        raise ValueError("HF BERT/RoBERTa are post-LN; cfg.pre_layer_norm must be False")
    family, body = _detect(state_dict)
    used: set[str] = set()
    dtype = cfg.weight_dtype
    params: dict = {}
    for path, name, (to_atm, _) in _global_table(cfg, family, body):
        _set(params, path, to_atm(_lookup(state_dict, name, used)))
    layers = []
    for i in range(cfg.num_layers):
        layer: dict = {}
        for path, name, (to_atm, _) in _layer_table(cfg):
            _set(layer, path, to_atm(_lookup(state_dict, f"{body}encoder.layer.{i}.{name}", used)))
        layers.append(layer)
    if cfg.scan_layers:
        params["encoder"]["layers"] = jax.tree_util.tree_map(lambda *xs: np.stack(xs), *layers)
    else:
        for i, layer in enumerate(layers):
            params["encoder"][f"layer_{i}"] = layer

    head = _HEAD_PREFIX[family]
    decoder_key = f"{head}decoder.weight"
    if cfg.tie_embeddings and decoder_key in state_dict:
        used.add(decoder_key)
        if not np.array_equal(_to_numpy(state_dict[decoder_key]),
                              params["encoder"]["embeddings"]["word_embeddings"]["embedding"]):
            raise ValueError(f"{decoder_key} differs from the word embeddings but cfg.tie_embeddings=True; "
                             "convert with tie_embeddings=False")
    bias_alias = f"{head}decoder.bias"
    if bias_alias in state_dict and f"{head}bias" in used:
        used.add(bias_alias)
        if not np.array_equal(_to_numpy(state_dict[bias_alias]), params["mlm_head"]["output_bias"]):
            raise ValueError(f"{bias_alias} differs from {head}bias")
    left = sorted(k for k in state_dict if k not in used and not _ignorable(k, family, body))
    if left:
        raise ValueError(f"HF state_dict has tensors atm would drop (a different architecture or more layers "
                         f"than cfg.num_layers={cfg.num_layers}?): {left[:8]}{' ...' if len(left) > 8 else ''}")

    params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype), params)
    check_params(params, cfg)
    return params


def hf_state_dict_from_params(params: Any, cfg: EncoderConfig, model_type: str = "bert") -> dict[str, np.ndarray]:
    """The inverse: a HF *ForMaskedLM state_dict (numpy float32) for `model.load_state_dict`.

    Position-id buffers are left out (load with strict=False, or let HF keep its own).
    """
    check_params(params, cfg, "params")
    family = _family(model_type)
    body = "bert." if family == "bert" else "roberta."
    params = jax.tree_util.tree_map(lambda x: np.asarray(jax.device_get(x), np.float32), params)

    def at(tree, path):
        for key in path:
            tree = tree[key]
        return tree

    out = {}
    for path, name, (_, to_hf) in _global_table(cfg, family, body):
        out[name] = to_hf(at(params, path))
    head = _HEAD_PREFIX[family]
    out[f"{head}decoder.bias"] = out[f"{head}bias"]
    if cfg.tie_embeddings:
        out[f"{head}decoder.weight"] = out[f"{body}embeddings.word_embeddings.weight"]
    for i in range(cfg.num_layers):
        for path, name, (_, to_hf) in _layer_table(cfg):
            if cfg.scan_layers:
                value = at(params["encoder"]["layers"], path)[i]
            else:
                value = at(params["encoder"][f"layer_{i}"], path)
            out[f"{body}encoder.layer.{i}.{name}"] = to_hf(value)
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


def from_hf_model(model: Any, **overrides: Any) -> tuple[EncoderConfig, dict]:
    """(EncoderConfig, params) from an instantiated HF torch *ForMaskedLM model."""
    cfg = encoder_config_from_hf(model.config, **overrides)
    return cfg, params_from_hf(model.state_dict(), cfg)
