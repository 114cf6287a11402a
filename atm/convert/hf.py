"""Hugging Face BERT / RoBERTa / XLM-R / ELECTRA (discriminator and generator) / BERT-architecture MiniLM ⇄ atm.

    from atm.convert import hf
    hf_config, state_dict = hf.read_hf_dir("path/to/hf_dir")        # safetensors without torch
    cfg, params, head = hf.convert_state_dict(hf_config, state_dict, scan_layers=True)
    logits = hf.model_for(head, cfg).apply({"params": params}, ids_BxL, segment_ids_BxL)

The parameter-name mapping is data: one table per architecture (`ARCHITECTURES`), each row
(HF name, atm path, layout, condition). Body rows are relative to the architecture's body prefix
("bert.", "roberta.", "electra."; "" in a headless `BertModel` checkpoint) and per-layer rows to
`encoder.layer.{i}.`. The head a checkpoint carries decides the atm model (`HEAD_MODELS`):
  mlm            EncoderForMLM                     *ForMaskedLM (BERT, RoBERTa, XLM-R, ELECTRA generator)
  discriminator  EncoderForReplacedTokenDetection  ElectraForPreTraining
  encoder        the encoder alone                 BertModel / RobertaModel / ElectraModel (e.g. MiniLM)

Layouts (D hidden, N heads, H head size): torch Linear weights are (out, in), Flax kernels (in, out);
Q/K/V become DenseGeneral kernels (D, N, H) with (N, H) biases; the attention output dense (N, H, D).
LayerNorm weight/bias (or the old gamma/beta) → scale/bias. RoBERTa/XLM-R number positions from
padding_idx + 1: `EncoderConfig.position_offset = pad_token_id + 1`; HF derives positions from the ids
(pads keep padding_idx), atm from `positions_BxL` (default arange): both agree at every non-pad
position of right-padded rows. ELECTRA's embeddings have their own width (`embedding_size`),
projected to the hidden size. scan_layers=False puts layer i under `encoder/layer_i`;
scan_layers=True stacks all layers under `encoder/layers` with a leading layer axis.

The params returned always have exactly the tree, shapes and dtypes of the atm model's init; every
tensor of the checkpoint is used or known-unused (position-id buffers, the pooler, BERT's NSP head),
and tied copies (decoder = word embeddings) must be equal. Anything else is an error that lists the
missing and the extra names. tests/test_convert.py and tests/test_hf_equivalence.py check the
outputs against transformers within 1e-4.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from atm.models.encoder import EncoderConfig, EncoderForMLM

# HF hidden_act → atm activation, and back.
_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_new", "gelu_pytorch_tanh": "gelu_new", "relu": "relu",
                "silu": "silu", "swish": "silu"}
_HF_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_new", "relu": "relu", "silu": "silu"}

Row = tuple[str, str, str, str]  # (HF name, atm path with "/", layout, condition)

# --- the tables -------------------------------------------------------------------------------------------------
EMBEDDING_ROWS: tuple[Row, ...] = (  # HF names under the body prefix
    ("embeddings.word_embeddings.weight", "encoder/embeddings/word_embeddings/embedding", "copy", ""),
    ("embeddings.position_embeddings.weight", "encoder/embeddings/position_embeddings/embedding", "copy", ""),
    ("embeddings.token_type_embeddings.weight", "encoder/embeddings/token_type_embeddings/embedding", "copy",
     "token_types"),
    ("embeddings.LayerNorm.weight", "encoder/embeddings/layer_norm/scale", "copy", ""),
    ("embeddings.LayerNorm.bias", "encoder/embeddings/layer_norm/bias", "copy", ""),
)
ELECTRA_PROJECTION_ROWS: tuple[Row, ...] = (
    ("embeddings_project.weight", "encoder/embeddings/embeddings_project/kernel", "dense", "projected"),
    ("embeddings_project.bias", "encoder/embeddings/embeddings_project/bias", "copy", "projected"),
)
LAYER_ROWS: tuple[Row, ...] = (  # HF names under `{body}encoder.layer.{i}.`, atm paths under the layer
    ("attention.self.query.weight", "attention/query/kernel", "qkv_kernel", ""),
    ("attention.self.query.bias", "attention/query/bias", "qkv_bias", ""),
    ("attention.self.key.weight", "attention/key/kernel", "qkv_kernel", ""),
    ("attention.self.key.bias", "attention/key/bias", "qkv_bias", ""),
    ("attention.self.value.weight", "attention/value/kernel", "qkv_kernel", ""),
    ("attention.self.value.bias", "attention/value/bias", "qkv_bias", ""),
    ("attention.output.dense.weight", "attention/output/kernel", "out_kernel", ""),
    ("attention.output.dense.bias", "attention/output/bias", "copy", ""),
    ("attention.output.LayerNorm.weight", "attention_layer_norm/scale", "copy", ""),
    ("attention.output.LayerNorm.bias", "attention_layer_norm/bias", "copy", ""),
    ("intermediate.dense.weight", "ffn/wi/kernel", "dense", ""),
    ("intermediate.dense.bias", "ffn/wi/bias", "copy", ""),
    ("output.dense.weight", "ffn/wo/kernel", "dense", ""),
    ("output.dense.bias", "ffn/wo/bias", "copy", ""),
    ("output.LayerNorm.weight", "ffn_layer_norm/scale", "copy", ""),
    ("output.LayerNorm.bias", "ffn_layer_norm/bias", "copy", ""),
)


def _mlm_head_rows(dense: str, layer_norm: str, bias: str, decoder: str) -> tuple[Row, ...]:
    return ((f"{dense}.weight", "mlm_head/transform/kernel", "dense", ""),
            (f"{dense}.bias", "mlm_head/transform/bias", "copy", ""),
            (f"{layer_norm}.weight", "mlm_head/layer_norm/scale", "copy", ""),
            (f"{layer_norm}.bias", "mlm_head/layer_norm/bias", "copy", ""),
            (bias, "mlm_head/output_bias", "copy", ""),
            (decoder, "mlm_head/decoder/kernel", "dense", "untied"))


@dataclasses.dataclass(frozen=True)
class Head:
    rows: tuple[Row, ...]  # full HF names; the first one identifies the head in a checkpoint
    aliases: tuple[tuple[str, str, str], ...] = ()  # (HF name, HF name it must equal, condition): tied copies
    activation: str = ""  # the head's fixed activation in HF ("" : the model's hidden_act)


@dataclasses.dataclass(frozen=True)
class Architecture:
    name: str
    model_types: tuple[str, ...]  # HF config model_type values
    body: str  # the encoder's prefix in HF models with a head
    body_rows: tuple[Row, ...]
    heads: Mapping[str, Head]
    hf_classes: Mapping[str, str]  # atm head kind → transformers class written by export
    positions_from_padding: bool = False  # RoBERTa: positions start at pad_token_id + 1
    ignored_prefixes: tuple[str, ...] = ("pooler.",)  # under the body: tensors atm does not use


_BERT_MLM = Head(_mlm_head_rows("cls.predictions.transform.dense", "cls.predictions.transform.LayerNorm",
                                "cls.predictions.bias", "cls.predictions.decoder.weight"),
                 aliases=(("cls.predictions.decoder.weight", "{body}embeddings.word_embeddings.weight", "tied"),
                          ("cls.predictions.decoder.bias", "cls.predictions.bias", "")))
_ROBERTA_MLM = Head(_mlm_head_rows("lm_head.dense", "lm_head.layer_norm", "lm_head.bias", "lm_head.decoder.weight"),
                    aliases=(("lm_head.decoder.weight", "{body}embeddings.word_embeddings.weight", "tied"),
                             ("lm_head.decoder.bias", "lm_head.bias", "")),
                    activation="gelu")  # RobertaLMHead applies erf-GELU whatever hidden_act says
_ROBERTA_CLASSES = {"mlm": "RobertaForMaskedLM", "encoder": "RobertaModel"}

ARCHITECTURES: dict[str, Architecture] = {a.name: a for a in (
    Architecture("bert", ("bert",), "bert.", EMBEDDING_ROWS, {"mlm": _BERT_MLM},
                 {"mlm": "BertForMaskedLM", "encoder": "BertModel"}),
    Architecture("roberta", ("roberta", "camembert"), "roberta.", EMBEDDING_ROWS, {"mlm": _ROBERTA_MLM},
                 _ROBERTA_CLASSES, positions_from_padding=True),
    Architecture("xlm-roberta", ("xlm-roberta",), "roberta.", EMBEDDING_ROWS, {"mlm": _ROBERTA_MLM},
                 {"mlm": "XLMRobertaForMaskedLM", "encoder": "XLMRobertaModel"}, positions_from_padding=True),
    Architecture("electra", ("electra",), "electra.", EMBEDDING_ROWS + ELECTRA_PROJECTION_ROWS, {
        "mlm": Head(_mlm_head_rows("generator_predictions.dense", "generator_predictions.LayerNorm",
                                   "generator_lm_head.bias", "generator_lm_head.weight"),
                    aliases=(("generator_lm_head.weight", "{body}embeddings.word_embeddings.weight", "tied"),),
                    activation="gelu"),  # ElectraGeneratorPredictions: get_activation("gelu")
        "discriminator": Head((
            ("discriminator_predictions.dense.weight", "discriminator_head/dense/kernel", "dense", ""),
            ("discriminator_predictions.dense.bias", "discriminator_head/dense/bias", "copy", ""),
            ("discriminator_predictions.dense_prediction.weight", "discriminator_head/prediction/kernel", "dense", ""),
            ("discriminator_predictions.dense_prediction.bias", "discriminator_head/prediction/bias", "copy", ""))),
    }, {"mlm": "ElectraForMaskedLM", "discriminator": "ElectraForPreTraining", "encoder": "ElectraModel"}),
)}
# Tensors of a checkpoint that atm does not use anywhere (absolute names).
IGNORED_SUFFIXES = ("embeddings.position_ids", "embeddings.token_type_ids")  # buffers
IGNORED_PREFIXES = ("cls.seq_relationship.",)  # BertForPreTraining's next-sentence head

_CONDITIONS = {
    "": lambda cfg: True,
    "token_types": lambda cfg: cfg.type_vocab_size > 0,
    "tied": lambda cfg: cfg.tie_embeddings,
    "untied": lambda cfg: not cfg.tie_embeddings,
    "projected": lambda cfg: cfg.embedding_dim != cfg.hidden_size,
}


# --- per-tensor layouts: (to atm, to HF) ---------------------------------------------------------------------
def _layouts(cfg: EncoderConfig) -> dict[str, tuple]:
    d, n, h = cfg.hidden_size, cfg.num_heads, cfg.head_size
    return {
        "copy": (lambda x: x, lambda x: x),
        "dense": (lambda w: w.T, lambda k: k.T),
        "qkv_kernel": (lambda w: w.T.reshape(d, n, h), lambda k: k.reshape(d, -1).T),  # (N·H, D) ⇄ (D, N, H)
        "qkv_bias": (lambda b: b.reshape(n, h), lambda b: b.reshape(-1)),
        "out_kernel": (lambda w: w.T.reshape(n, h, d), lambda k: k.reshape(-1, d).T),  # (D, N·H) ⇄ (N, H, D)
    }


# --- configs ---------------------------------------------------------------------------------------------------
def _get(hf_config: Any, key: str, default: Any = None) -> Any:
    if isinstance(hf_config, Mapping):
        return hf_config.get(key, default)
    return getattr(hf_config, key, default)


def architecture_for(model_type: str) -> Architecture:
    for arch in ARCHITECTURES.values():
        if model_type in arch.model_types:
            return arch
    supported = sorted(t for a in ARCHITECTURES.values() for t in a.model_types)
    raise ValueError(f"Hugging Face model_type={model_type!r} is not supported; supported: {supported} "
                     "(MiniLM checkpoints with the BERT architecture have model_type 'bert')")


def encoder_config_from_hf(hf_config: Any, **overrides: Any) -> EncoderConfig:
    """EncoderConfig with the shape and numerics of a HF BERT/RoBERTa/XLM-R/ELECTRA config (object or dict).

    `overrides` set atm-only fields (attention_impl, scan_layers, dtype, remat_policy, ...) or replace
    converted ones. HF's attention-probability dropout is kept only with attention_impl="einsum" (the
    one implementation with attention dropout); otherwise it becomes 0.0 unless overridden.
    """
    arch = architecture_for(_get(hf_config, "model_type", ""))
    position_type = _get(hf_config, "position_embedding_type", "absolute") or "absolute"
    if position_type != "absolute":
        raise ValueError(f"HF config position_embedding_type={position_type!r}: atm supports 'absolute' only")
    if _get(hf_config, "is_decoder", False) or _get(hf_config, "add_cross_attention", False):
        raise ValueError("HF config is_decoder/add_cross_attention: atm converts encoders only")
    hidden_act = _get(hf_config, "hidden_act", "gelu")
    if hidden_act not in _ACTIVATIONS:
        raise ValueError(f"HF config hidden_act={hidden_act!r} has no atm equivalent "
                         f"(supported: {sorted(_ACTIVATIONS)})")
    hidden = int(_get(hf_config, "hidden_size"))
    embedding_size = int(_get(hf_config, "embedding_size", None) or hidden)
    pad = _get(hf_config, "pad_token_id")
    fields = dict(
        vocab_size=int(_get(hf_config, "vocab_size")),
        num_layers=int(_get(hf_config, "num_hidden_layers")),
        hidden_size=hidden,
        num_heads=int(_get(hf_config, "num_attention_heads")),
        ffn_size=int(_get(hf_config, "intermediate_size")),
        max_positions=int(_get(hf_config, "max_position_embeddings")),
        type_vocab_size=int(_get(hf_config, "type_vocab_size", 2)),
        embedding_size=0 if embedding_size == hidden else embedding_size,
        position_offset=(1 if pad is None else int(pad)) + 1 if arch.positions_from_padding else 0,
        pre_layer_norm=False,
        activation=_ACTIVATIONS[hidden_act],
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


def hf_config_from_encoder(cfg: EncoderConfig, arch: Architecture, head: str, pad_token_id: int = 0,
                           base: Mapping[str, Any] | None = None) -> dict:
    """A transformers config.json for `cfg` (over `base`, the imported model's own config, when given)."""
    if cfg.pre_layer_norm:
        raise ValueError("config.model.pre_layer_norm=True: Hugging Face BERT/RoBERTa/ELECTRA are post-LN; "
                         "a pre-LN atm model has no transformers equivalent")
    if cfg.activation not in _HF_ACTIVATIONS:
        raise ValueError(f"config.model.activation={cfg.activation!r} has no transformers name")
    if arch.positions_from_padding:
        if cfg.position_offset < 1:
            raise ValueError(f"config.model.position_offset={cfg.position_offset}: {arch.name} numbers positions "
                             "from pad_token_id + 1 (2 in RoBERTa/XLM-R); export this model as bert")
        pad_token_id = cfg.position_offset - 1
    elif cfg.position_offset:
        raise ValueError(f"config.model.position_offset={cfg.position_offset}: model_type {arch.model_types[0]!r} "
                         "numbers positions from 0; export as roberta or xlm-roberta")
    if cfg.embedding_dim != cfg.hidden_size and arch.name != "electra":
        raise ValueError(f"config.model.embedding_size={cfg.embedding_size}: only ELECTRA has factorised embeddings")
    out = dict(base or {})
    out.update(
        model_type=arch.model_types[0], architectures=[arch.hf_classes[head]], vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.ffn_size, hidden_act=_HF_ACTIVATIONS[cfg.activation],
        max_position_embeddings=cfg.max_positions, type_vocab_size=cfg.type_vocab_size,
        layer_norm_eps=cfg.layer_norm_eps, hidden_dropout_prob=cfg.hidden_dropout,
        attention_probs_dropout_prob=cfg.attention_dropout, initializer_range=cfg.initializer_range,
        tie_word_embeddings=cfg.tie_embeddings, pad_token_id=pad_token_id, position_embedding_type="absolute")
    if arch.name == "electra":
        out["embedding_size"] = cfg.embedding_dim
    return out


# --- the atm model of each head ----------------------------------------------------------------------------------
def model_for(head: str, cfg: EncoderConfig) -> nn.Module:
    """The atm module whose params `convert_state_dict` returns for `head`."""
    if head == "mlm":
        return EncoderForMLM(cfg)
    if head == "discriminator":
        from atm.models.electra import EncoderForReplacedTokenDetection
        return EncoderForReplacedTokenDetection(cfg)
    if head == "encoder":
        from atm.models.heads import EncoderWithHeads
        return EncoderWithHeads(cfg, ())  # params {"encoder": ...}
    raise ValueError(f"unknown head {head!r}; known: mlm, discriminator, encoder")


def head_of_params(params: Mapping[str, Any]) -> str:
    """"mlm", "discriminator" or "encoder" from the top-level keys of atm params."""
    if "mlm_head" in params:
        return "mlm"
    if "discriminator_head" in params:
        return "discriminator"
    if set(params) == {"encoder"}:
        return "encoder"
    raise ValueError(f"params with top-level keys {sorted(params)} are not an encoder with an MLM or "
                     "discriminator head (task-head models are exported as their encoder: keep params['encoder'])")


def expected_params_shapes(cfg: EncoderConfig, head: str = "mlm") -> Any:
    """ShapeDtypeStructs of the initialised params of `model_for(head, cfg)` (nothing materialised)."""
    ids = jnp.zeros((1, 2), jnp.int32)
    return jax.eval_shape(lambda: nn.unbox(model_for(head, cfg).init(jax.random.key(0), ids)["params"]))


def check_params(params: Any, cfg: EncoderConfig, what: str = "converted params", head: str = "mlm"):
    """Raise ValueError unless `params` has exactly model_for(head, cfg)'s tree, shapes and dtypes."""
    expected = expected_params_shapes(cfg, head)
    got_paths = {jax.tree_util.keystr(p): (tuple(x.shape), jnp.dtype(x.dtype))
                 for p, x in jax.tree_util.tree_leaves_with_path(params)}
    want_paths = {jax.tree_util.keystr(p): (tuple(x.shape), jnp.dtype(x.dtype))
                  for p, x in jax.tree_util.tree_leaves_with_path(expected)}
    name = type(model_for(head, cfg)).__name__
    problems = [f"missing {k}" for k in sorted(set(want_paths) - set(got_paths))]
    problems += [f"unexpected {k}" for k in sorted(set(got_paths) - set(want_paths))]
    problems += [f"{k}: got {got_paths[k]}, {name} wants {want_paths[k]}"
                 for k in sorted(set(got_paths) & set(want_paths)) if got_paths[k] != want_paths[k]]
    if problems or jax.tree_util.tree_structure(params) != jax.tree_util.tree_structure(expected):
        raise ValueError(f"{what} do not match {name}(cfg): " + "; ".join(problems[:10] or
                                                                         ["tree structure differs"]))


# --- import ---------------------------------------------------------------------------------------------------
def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch.Tensor (bf16/fp16 go through float32: numpy has no bfloat16)
        x = x.detach().cpu()
        if x.dtype.is_floating_point:
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def _candidates(name: str) -> list[str]:
    """`name` and its pre-2019 spelling (LayerNorm gamma/beta)."""
    if name.endswith("LayerNorm.weight"):
        return [name, name[: -len("weight")] + "gamma"]
    if name.endswith("LayerNorm.bias"):
        return [name, name[: -len("bias")] + "beta"]
    return [name]


def _rows(arch: Architecture, head: str, cfg: EncoderConfig, body: str):
    """(full HF name, atm path tuple, layout) of every tensor of this model, layers as `layers/{i}/...`."""
    out = []
    for name, path, layout, cond in arch.body_rows:
        if _CONDITIONS[cond](cfg):
            out.append((body + name, tuple(path.split("/")), layout))
    for i in range(cfg.num_layers):
        for name, path, layout, cond in LAYER_ROWS:
            out.append((f"{body}encoder.layer.{i}.{name}", ("layers", i) + tuple(path.split("/")), layout))
    if head != "encoder":
        for name, path, layout, cond in arch.heads[head].rows:
            if _CONDITIONS[cond](cfg):
                out.append((name, tuple(path.split("/")), layout))
    return out


def _aliases(arch: Architecture, head: str, cfg: EncoderConfig, body: str) -> list[tuple[str, str]]:
    if head == "encoder":
        return []
    return [(name.format(body=body), target.format(body=body)) for name, target, cond in arch.heads[head].aliases
            if _CONDITIONS[cond](cfg)]


def _body_prefix(state_dict: Mapping[str, Any], arch: Architecture) -> str:
    suffix = "embeddings.word_embeddings.weight"
    bodies = [k[: -len(suffix)] for k in state_dict if k.endswith(suffix)]
    if len(bodies) != 1 or bodies[0] not in ("", arch.body):
        raise ValueError(f"{arch.name} checkpoint: expected one '{arch.body}{suffix}' (or '{suffix}' in a "
                         f"headless model), found {bodies or 'none'}")
    return bodies[0]


def detect_head(state_dict: Mapping[str, Any], arch: Architecture) -> str:
    """The head a checkpoint carries: the first whose identifying tensor is present, else "encoder"."""
    found = [head for head, table in arch.heads.items() if table.rows[0][0] in state_dict]
    if len(found) > 1:
        raise ValueError(f"{arch.name} checkpoint has several heads {found}; atm converts one")
    return found[0] if found else "encoder"


def _detect_architecture(state_dict: Mapping[str, Any]) -> Architecture:
    """For state_dicts without a config: the architecture whose body prefix and head names appear."""
    for arch in ARCHITECTURES.values():
        if any(k.startswith(arch.body) for k in state_dict) and detect_head(state_dict, arch) != "encoder":
            return arch
    raise ValueError("cannot tell the architecture of this state_dict; pass model_type")


def params_from_hf(state_dict: Mapping[str, Any], cfg: EncoderConfig, model_type: str | None = None,
                   head: str | None = None) -> dict:
    """atm params (of `model_for(head, cfg)`) from a HF state_dict (torch tensors or arrays).

    `head` defaults to the one the checkpoint carries. Every tensor must be used (or be a known-unused
    buffer, pooler or NSP head); tied copies must be equal. Missing and extra tensors are listed."""
    if cfg.pre_layer_norm:
        raise ValueError("HF BERT/RoBERTa/ELECTRA are post-LN; cfg.pre_layer_norm must be False")
    arch = architecture_for(model_type) if model_type else _detect_architecture(state_dict)
    body = _body_prefix(state_dict, arch)
    head = head or detect_head(state_dict, arch)
    if head != "encoder" and head not in arch.heads:
        raise ValueError(f"{arch.name} has no {head!r} head (it has {sorted(arch.heads)})")
    if head != "encoder" and arch.heads[head].activation and cfg.activation != arch.heads[head].activation:
        raise ValueError(f"{arch.name} {head} head always applies {arch.heads[head].activation!r}, but hidden_act "
                         f"is {cfg.activation!r}: atm's head uses the model activation; not convertible exactly")
    layouts = _layouts(cfg)
    used: set[str] = set()
    missing: list[str] = []
    params: dict = {}
    layers: list[dict] = [{} for _ in range(cfg.num_layers)]
    for name, path, layout in _rows(arch, head, cfg, body):
        key = next((k for k in _candidates(name) if k in state_dict), None)
        if key is None:
            missing.append(name)
            continue
        used.add(key)
        value = layouts[layout][0](_to_numpy(state_dict[key]))
        tree, path = (layers[path[1]], path[2:]) if path[0] == "layers" else (params, path)
        for part in path[:-1]:
            tree = tree.setdefault(part, {})
        tree[path[-1]] = value
    for name, target in _aliases(arch, head, cfg, body):
        if name in state_dict:
            used.add(name)
            if target in state_dict and not np.array_equal(_to_numpy(state_dict[name]), _to_numpy(state_dict[target])):
                raise ValueError(f"{name} differs from {target}, which it is tied to "
                                 "(convert with tie_embeddings=False if the decoder is untied)")
    ignorable = tuple(body + p for p in arch.ignored_prefixes) + IGNORED_PREFIXES
    extra = sorted(k for k in state_dict if k not in used and not k.endswith(IGNORED_SUFFIXES)
                   and not k.startswith(ignorable))
    if missing or extra:
        def listing(names):
            return f"{names[:12]}{f' ... ({len(names)} in all)' if len(names) > 12 else ''}"
        problems = ([f"missing {listing(missing)}"] if missing else []) + (
            [f"tensors atm would drop (a different architecture, head or more layers than "
             f"num_layers={cfg.num_layers}?) {listing(extra)}"] if extra else [])
        raise ValueError(f"{arch.name} checkpoint ({head} head) does not match the config: " + "; ".join(problems))
    if cfg.num_layers:
        if cfg.scan_layers:
            params.setdefault("encoder", {})["layers"] = jax.tree_util.tree_map(lambda *xs: np.stack(xs), *layers)
        else:
            for i, layer in enumerate(layers):
                params.setdefault("encoder", {})[f"layer_{i}"] = layer
    params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, cfg.weight_dtype), params)
    check_params(params, cfg, head=head)
    return params


def convert_state_dict(hf_config: Any, state_dict: Mapping[str, Any], head: str | None = None,
                       **overrides: Any) -> tuple[EncoderConfig, dict, str]:
    """(EncoderConfig, params, head) from a HF config and state_dict."""
    cfg = encoder_config_from_hf(hf_config, **overrides)
    arch = architecture_for(_get(hf_config, "model_type"))
    head = head or detect_head(state_dict, arch)
    return cfg, params_from_hf(state_dict, cfg, arch.model_types[0], head), head


def from_hf_model(model: Any, **overrides: Any) -> tuple[EncoderConfig, dict]:
    """(EncoderConfig, params) from an instantiated HF torch model."""
    cfg, params, _ = convert_state_dict(model.config, model.state_dict(), **overrides)
    return cfg, params


# --- export ---------------------------------------------------------------------------------------------------
def hf_state_dict_from_params(params: Any, cfg: EncoderConfig, model_type: str = "bert",
                              with_aliases: bool = True) -> dict[str, np.ndarray]:
    """The inverse of `params_from_hf`: a HF state_dict (numpy float32) of the head the params carry.

    With `with_aliases`, tied copies (decoder = embeddings, decoder.bias = bias) are included, as in
    `model.state_dict()`; without, the tensors `save_pretrained` writes. Position-id buffers are left out."""
    head = head_of_params(params)
    check_params(params, cfg, "params", head)
    arch = architecture_for(model_type)
    body = arch.body if head != "encoder" else ""
    layouts = _layouts(cfg)
    params = jax.tree_util.tree_map(lambda x: np.asarray(jax.device_get(x), np.float32), params)

    def at(tree, path):
        for key in path:
            tree = tree[key]
        return tree

    out = {}
    for name, path, layout in _rows(arch, head, cfg, body):
        if path[0] == "layers":
            i, rest = path[1], path[2:]
            value = at(params["encoder"]["layers"], rest)[i] if cfg.scan_layers else at(
                params["encoder"][f"layer_{i}"], rest)
        else:
            value = at(params, path)
        out[name] = layouts[layout][1](value)
    if with_aliases:
        for name, target in _aliases(arch, head, cfg, body):
            out[name] = out[target]
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


# --- Hugging Face directories ----------------------------------------------------------------------------------
def read_state_dict(hf_dir: str) -> dict[str, np.ndarray]:
    """The tensors of a HF checkpoint directory: model.safetensors (sharded or not; read with numpy,
    no torch) or pytorch_model.bin (needs torch)."""
    from safetensors import safe_open

    index = os.path.join(hf_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
        paths = [os.path.join(hf_dir, name) for name in files]
    else:
        paths = [p for p in [os.path.join(hf_dir, "model.safetensors")] if os.path.exists(p)]
    if paths:
        tensors = {}
        for path in paths:
            with safe_open(path, framework="numpy") as f:
                for key in f.keys():
                    tensors[key] = f.get_tensor(key)
        return tensors
    binary = os.path.join(hf_dir, "pytorch_model.bin")
    if os.path.exists(binary):
        try:
            import torch
        except ImportError:
            raise ImportError(f"{binary}: reading pytorch_model.bin needs torch (pip install torch); "
                              "a model.safetensors checkpoint needs no torch") from None
        return {k: _to_numpy(v) for k, v in torch.load(binary, map_location="cpu", weights_only=True).items()}
    present = sorted(os.path.basename(p) for p in glob.glob(os.path.join(hf_dir, "*")))
    raise FileNotFoundError(f"{hf_dir}: no model.safetensors, model.safetensors.index.json or pytorch_model.bin "
                            f"(found {present})")


def read_hf_dir(hf_dir: str) -> tuple[dict, dict[str, np.ndarray]]:
    """(config.json as a dict, state_dict) of a Hugging Face checkpoint directory."""
    path = os.path.join(hf_dir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{hf_dir}: no config.json; is this a Hugging Face checkpoint directory?")
    with open(path) as f:
        hf_config = json.load(f)
    architecture_for(hf_config.get("model_type", ""))  # an unknown architecture fails before the tensors are read
    return hf_config, read_state_dict(hf_dir)


def write_hf_dir(out: str, params: Any, cfg: EncoderConfig, model_type: str, pad_token_id: int = 0,
                 base_config: Mapping[str, Any] | None = None) -> dict:
    """Write config.json + model.safetensors that transformers' `from_pretrained` loads. Returns the config."""
    from safetensors.numpy import save_file

    head = head_of_params(params)
    arch = architecture_for(model_type)
    hf_config = hf_config_from_encoder(cfg, arch, head, pad_token_id, base_config)
    state = hf_state_dict_from_params(params, cfg, model_type, with_aliases=False)
    os.makedirs(out, exist_ok=True)
    save_file(state, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(hf_config, f, indent=2, sort_keys=True)
    return hf_config
