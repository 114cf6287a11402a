"""Hugging Face checkpoint directory ⇄ atm workdir.

An imported workdir looks like a run directory of `python -m atm.main`:

    WORKDIR/config.json        the resolved atm config: config.model from the HF config,
                               config.data.vocab = WORKDIR/tokenizer
    WORKDIR/checkpoints/0/     orbax checkpoint whose state holds the converted params
    WORKDIR/tokenizer/         the HF tokenizer files (atm.data.vocab.load_vocabulary reads them) and the
                               HF config.json, from which AutoTokenizer takes the class when they name none
    WORKDIR/hf_import.json     where it came from: model_type, head, the HF config

so `--config.init_from=WORKDIR` starts pretraining, distillation or fine-tuning from it (with the
model shape and vocabulary of `config_from_workdir`), and `export_workdir` turns it, or any atm run
directory, back into a transformers directory.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
from typing import Any

import jax
import numpy as np

from atm.convert import hf
from atm.models.encoder import EncoderConfig

IMPORT_RECORD = "hf_import.json"
TOKENIZER_DIR = "tokenizer"
# Model fields a run may choose freely; every other field is the checkpoint's shape and numerics.
RUNTIME_FIELDS = ("dtype", "param_dtype", "attention_impl", "remat_policy", "hidden_dropout", "attention_dropout",
                  "narrow_attention")


def _copy_tokenizer(source: str, target: str) -> list[str]:
    from atm.data.hf_vocab import TOKENIZER_FILES

    names = [n for n in TOKENIZER_FILES if os.path.exists(os.path.join(source, n))]
    if names:
        os.makedirs(target, exist_ok=True)
        for name in names:
            shutil.copy2(os.path.join(source, name), os.path.join(target, name))
    return names


def import_hf_dir(hf_dir: str, out: str, **overrides: Any) -> dict:
    """Convert the HF checkpoint in `hf_dir` into an atm workdir `out`; returns the import record.

    `overrides` set EncoderConfig fields such as scan_layers or attention_impl."""
    from atm import checkpoint as atm_checkpoint
    from atm.config import default_config
    from atm.data.vocab import load_vocabulary

    hf_dir, out = os.path.abspath(hf_dir), os.path.abspath(out)
    if os.path.isdir(os.path.join(out, "checkpoints")) and os.listdir(os.path.join(out, "checkpoints")):
        raise FileExistsError(f"{out} already holds checkpoints; import into a new directory")
    hf_config, state_dict = hf.read_hf_dir(hf_dir)
    cfg, params, head = hf.convert_state_dict(hf_config, state_dict, **overrides)
    os.makedirs(out, exist_ok=True)
    tokenizer_files = _copy_tokenizer(hf_dir, os.path.join(out, TOKENIZER_DIR))
    if tokenizer_files:  # AutoTokenizer picks the class from config.json's model_type when the files name none
        shutil.copy2(os.path.join(hf_dir, "config.json"), os.path.join(out, TOKENIZER_DIR, "config.json"))

    config = default_config("mlm")
    config.model.update(dataclasses.asdict(cfg))
    if tokenizer_files:
        vocab = load_vocabulary(os.path.join(out, TOKENIZER_DIR))
        if vocab.size > cfg.vocab_size:
            raise ValueError(f"{hf_dir}: the tokenizer has {vocab.size} tokens but the model only "
                             f"vocab_size={cfg.vocab_size} embeddings")
        config.data.vocab = os.path.join(out, TOKENIZER_DIR)
        config.data.vocab_size = vocab.size
    config.data.seq_len = min(config.data.seq_len, cfg.max_positions - cfg.position_offset)
    with open(os.path.join(out, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2, sort_keys=True))
    record = {"source": hf_dir, "model_type": hf_config["model_type"], "head": head,
              "tokenizer_files": tokenizer_files, "hf_config": hf_config}
    with open(os.path.join(out, IMPORT_RECORD), "w") as f:
        json.dump(record, f, indent=2, sort_keys=True)
    ckpt = atm_checkpoint.Checkpointer(os.path.join(out, "checkpoints"), keep=1, async_save=False)
    ckpt.save(0, {"step": np.zeros((), np.int32), "params": params}, {"next_step": 0, "imported_from": hf_dir},
              force=True)
    ckpt.close()
    return record


def read_config(workdir: str) -> dict:
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{workdir}: no config.json; is this an atm workdir (python -m atm.main or "
                                "python -m atm.convert import)?")
    with open(path) as f:
        return json.load(f)


def encoder_config(saved: dict, **overrides: Any) -> EncoderConfig:
    fields = {f.name for f in dataclasses.fields(EncoderConfig)}
    return EncoderConfig(**{**{k: v for k, v in saved["model"].items() if k in fields}, **overrides})


def vocabulary_path(workdir: str, saved: dict) -> str | None:
    """The vocabulary a workdir's model was trained or imported with (the run's own copy first)."""
    for candidate in (os.path.join(workdir, TOKENIZER_DIR), os.path.join(workdir, "vocab.model"),
                      saved.get("data", {}).get("vocab") or ""):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


def _load_all(workdir: str, **overrides: Any) -> tuple[EncoderConfig, dict, dict]:
    """(EncoderConfig, every param of the latest intact checkpoint on the host, saved config)."""
    from atm import checkpoint as atm_checkpoint

    workdir = os.path.abspath(workdir)
    saved = read_config(workdir)
    ckpt_dir = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(ckpt_dir):
        raise FileNotFoundError(f"{workdir}: no checkpoint under {ckpt_dir}")
    _, params = atm_checkpoint.Checkpointer(ckpt_dir, 1, False).latest_intact_params(workdir)
    params = jax.tree_util.tree_map(np.asarray, jax.device_get(params))
    cfg = encoder_config(saved, **overrides)
    if cfg.scan_layers != ("layers" in params["encoder"]):  # the checkpoint's layout decides
        cfg = dataclasses.replace(cfg, scan_layers="layers" in params["encoder"])
    return cfg, params, saved


def _model_params(params: dict) -> dict:
    """The params of the one model a workdir stands for: an ELECTRA run's discriminator (its generator is
    exported beside it), a fine-tuned model's encoder (task heads have no transformers counterpart here)."""
    from atm.objectives import electra

    if "discriminator_head" in params:
        return electra.discriminator_params(params)
    if "mlm_head" not in params:
        return {"encoder": params["encoder"]}
    return params


def load_workdir(workdir: str, **overrides: Any) -> tuple[EncoderConfig, dict, str, dict]:
    """(EncoderConfig, params of its latest checkpoint, head, saved config) of an atm workdir.

    A fine-tuned model keeps its encoder (task heads have no transformers counterpart here); an ELECTRA
    pretraining run gives its discriminator (head "discriminator")."""
    cfg, params, saved = _load_all(workdir, **overrides)
    params = _model_params(params)
    return cfg, params, hf.head_of_params(params), saved


def _guess_model_type(cfg: EncoderConfig, vocab_path: str | None) -> str:
    if cfg.embedding_dim != cfg.hidden_size:
        return "electra"
    if cfg.position_offset:
        sentencepiece = vocab_path and os.path.exists(os.path.join(vocab_path, "sentencepiece.bpe.model"))
        return "xlm-roberta" if sentencepiece else "roberta"
    return "bert"


ELECTRA_GENERATOR_DIR = "generator"  # export of an ELECTRA run: OUT/ the discriminator, OUT/generator/ the generator


def check_electra_export(workdir: str, saved: dict, record: dict, cfg: EncoderConfig, head: str, model_type: str):
    """An ELECTRA run exports as electra only; electra is only for ELECTRA runs, imported ELECTRA checkpoints
    and factorised embeddings (which no other transformers class holds)."""
    objective = saved.get("objective", "mlm")
    if head == "discriminator" and model_type != "electra":
        raise ValueError(f"--model_type={model_type}: {workdir} holds an ELECTRA discriminator "
                         f"(config.objective={objective!r}); export it with --model_type=electra")
    electra_source = (objective == "electra" or record.get("model_type") == "electra"
                      or cfg.embedding_dim != cfg.hidden_size)
    if model_type == "electra" and not electra_source:
        raise ValueError(f"--model_type=electra: {workdir} is not an ELECTRA run (config.objective={objective!r}, "
                         f"imported model_type={record.get('model_type')!r}, config.model.embedding_size="
                         f"{cfg.embedding_size}); export it as {_guess_model_type(cfg, None)} or pretrain with "
                         "--config=configs/electra.py")


def _write_tokenizer(vocab_path: str | None, out: str):
    if vocab_path and os.path.isdir(vocab_path):
        _copy_tokenizer(vocab_path, out)
    elif vocab_path:  # an atm-trained SentencePiece model: transformers has no class with its id layout
        shutil.copy2(vocab_path, os.path.join(out, "atm_" + os.path.basename(vocab_path)))
        print(f"note: {vocab_path} is an atm SentencePiece vocabulary ([PAD] [UNK] [CLS] [SEP] [MASK] = 0..4); "
              f"copied to {out}, no transformers tokenizer files written", flush=True)


def export_workdir(workdir: str, out: str, model_type: str | None = None) -> dict:
    """Write a transformers directory (config.json, model.safetensors, tokenizer files) from an atm workdir.

    An ELECTRA pretraining run (config.objective="electra") writes its discriminator as
    `ElectraForPreTraining` in `out` and its generator, shared embeddings included, as `ElectraForMaskedLM`
    in `out/generator`."""
    from atm.data.vocab import load_vocabulary
    from atm.objectives import electra

    workdir = os.path.abspath(workdir)
    cfg, all_params, saved = _load_all(workdir)
    params = _model_params(all_params)
    head = hf.head_of_params(params)
    record = {}
    if os.path.exists(os.path.join(workdir, IMPORT_RECORD)):
        with open(os.path.join(workdir, IMPORT_RECORD)) as f:
            record = json.load(f)
    vocab_path = vocabulary_path(workdir, saved)
    is_electra_run = saved.get("objective") == "electra" and electra.GENERATOR_KEY in all_params
    model_type = (model_type or record.get("model_type") or ("electra" if is_electra_run else None)
                  or _guess_model_type(cfg, vocab_path))
    check_electra_export(workdir, saved, record, cfg, head, model_type)
    pad_id = load_vocabulary(vocab_path).pad_id if vocab_path else 0
    hf_config = hf.write_hf_dir(out, params, cfg, model_type, pad_id, record.get("hf_config"))
    _write_tokenizer(vocab_path, out)
    if is_electra_run:
        generator_dir = os.path.join(out, ELECTRA_GENERATOR_DIR)
        generator_cfg = electra.generator_config_from(saved, cfg)
        hf.write_hf_dir(generator_dir, electra.generator_params(all_params), generator_cfg, "electra", pad_id)
        _write_tokenizer(vocab_path, generator_dir)
    return hf_config


def config_from_workdir(config, workdir: str):
    """Point an atm config at a workdir (imported or trained): its model shape and layout, its
    vocabulary, and `init_from`. Runtime choices (dtype, attention_impl, remat, dropout) stay the config's."""
    workdir = os.path.abspath(workdir)
    saved = read_config(workdir)
    runtime = {k: config.model[k] for k in RUNTIME_FIELDS if k in config.model}
    cfg = encoder_config(saved)
    config.model.update({**dataclasses.asdict(cfg), **runtime})
    vocab = vocabulary_path(workdir, saved)
    if vocab:
        config.data.vocab = vocab
    config.init_from = workdir
    limit = cfg.max_positions - cfg.position_offset
    if config.data.seq_len > limit:
        config.data.seq_len = limit
    return config
