"""Hugging Face interop: import → atm equals transformers; export → transformers loads it and equals again.

For each architecture a tiny random transformers model is built from a config (torch CPU, no
download), saved with its tokenizer files (made here: a WordPiece vocab.txt, a byte-level BPE trained
on the sample, a SentencePiece model trained on the sample), imported with atm.convert and run
through `atm.from_pretrained` on raw multilingual text, so tokenizer, padding and model are checked
together. Outputs (hidden states, MLM / discriminator logits) agree within 1e-4 at every non-pad
position; token ids agree exactly with transformers' tokenizers.
"""
from __future__ import annotations

import json
import os
import unicodedata

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import atm  # noqa: E402
from atm.convert import hf, workdir as atm_workdir  # noqa: E402
from atm.data.vocab import load_vocabulary  # noqa: E402

TOLERANCE = 1e-4
TEXTS = ["Héllo wörld! Ça va? naïve café Straße", "你好世界，今天天气很好。", "こんにちは 世界 🤗🎉 emoji 👍🏽",
         "Ελληνικά και русский текст", "  spaces   and\ttabs ÀÉÎÕÜ", "the quick brown fox", "ok"]
CORPUS = TEXTS * 5 + ["the quick brown fox jumps over the lazy dog"] * 5


# --- tokenizer files, made here ----------------------------------------------------------------------------------
def write_wordpiece(directory, lowercase: bool):
    chars = sorted({c for t in CORPUS for c in t + unicodedata.normalize("NFD", t.lower()) if not c.isspace()})
    words = ["the", "quick", "brown", "fox", "hello", "café", "va", "ok"]
    vocab = (["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars
             + ["##" + c for c in chars] + words + ["##ick", "##own", "##llo"])
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(vocab) + "\n")
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
        json.dump({"do_lower_case": lowercase, "tokenizer_class": "BertTokenizer"}, f)
    return directory


def write_byte_level_bpe(directory):
    import tokenizers

    tokenizer = tokenizers.ByteLevelBPETokenizer()
    tokenizer.train_from_iterator(CORPUS, vocab_size=400, min_frequency=1,
                                  special_tokens=["<s>", "<pad>", "</s>", "<unk>"], show_progress=False)
    os.makedirs(directory, exist_ok=True)
    tokenizer.save_model(str(directory))
    path = os.path.join(directory, "vocab.json")
    vocab = json.load(open(path, encoding="utf-8"))
    vocab["<mask>"] = len(vocab)  # last, as in RoBERTa
    json.dump(vocab, open(path, "w", encoding="utf-8"), ensure_ascii=False)
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "RobertaTokenizer"}, f)
    return directory


def write_xlmr_sentencepiece(directory):
    import sentencepiece as spm

    os.makedirs(directory, exist_ok=True)
    spm.SentencePieceTrainer.train(  # XLM-R's own layout: <unk> 0, <s> 1, </s> 2, no pad
        sentence_iterator=iter(CORPUS), model_prefix=os.path.join(directory, "sentencepiece.bpe"), vocab_size=150,
        model_type="unigram", unk_id=0, bos_id=1, eos_id=2, pad_id=-1, character_coverage=1.0,
        hard_vocab_limit=False, minloglevel=2)
    os.remove(os.path.join(directory, "sentencepiece.bpe.vocab"))
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "XLMRobertaTokenizer"}, f)
    return directory


TOKENIZERS = {  # kind → (writer, transformers class)
    "wordpiece-uncased": (lambda d: write_wordpiece(d, True), "BertTokenizer"),
    "wordpiece-cased": (lambda d: write_wordpiece(d, False), "BertTokenizer"),
    "roberta-bpe": (write_byte_level_bpe, "RobertaTokenizer"),
    "xlmr-sentencepiece": (write_xlmr_sentencepiece, "XLMRobertaTokenizer"),
}

# --- models ------------------------------------------------------------------------------------------------------
# name → (transformers config class, model class, tokenizer kind, extra config)
ARCHS = {
    "bert": ("BertConfig", "BertForMaskedLM", "wordpiece-uncased", {}),
    "minilm": ("BertConfig", "BertModel", "wordpiece-cased", {"hidden_size": 48, "num_attention_heads": 4}),
    "roberta": ("RobertaConfig", "RobertaForMaskedLM", "roberta-bpe",
                {"type_vocab_size": 1, "layer_norm_eps": 1e-5, "pad_token_id": 1}),
    "xlm-roberta": ("XLMRobertaConfig", "XLMRobertaForMaskedLM", "xlmr-sentencepiece",
                    {"type_vocab_size": 1, "layer_norm_eps": 1e-5, "pad_token_id": 1}),
    "electra-discriminator": ("ElectraConfig", "ElectraForPreTraining", "wordpiece-uncased", {"embedding_size": 16}),
    "electra-generator": ("ElectraConfig", "ElectraForMaskedLM", "wordpiece-uncased",
                          {"embedding_size": 24, "hidden_size": 16, "num_attention_heads": 2}),
}


def build_hf_dir(directory, name, seed=0):
    config_cls, model_cls, tokenizer_kind, extra = ARCHS[name]
    TOKENIZERS[tokenizer_kind][0](directory)
    vocab = load_vocabulary(str(directory))
    torch.manual_seed(seed)
    fields = dict(vocab_size=vocab.size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=66, initializer_range=0.2)  # large init: logits far from 0
    config = getattr(transformers, config_cls)(**{**fields, **extra})
    model = getattr(transformers, model_cls)(config)
    with torch.no_grad():  # non-zero biases and LN params so every converted tensor matters
        for param_name, p in model.named_parameters():
            if param_name.endswith("bias") or "LayerNorm" in param_name or "layer_norm" in param_name:
                p.add_(0.1 * torch.randn_like(p))
    model.eval().save_pretrained(str(directory))
    return model


def hf_outputs(model, batch):
    ids, mask = torch.tensor(batch["input_ids"], dtype=torch.long), torch.tensor(batch["segment_ids"], dtype=torch.long)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    head = getattr(out, "logits", None)
    return out.hidden_states[-1].numpy(), None if head is None else head.numpy()


def max_differences(pretrained, model, batch):
    """(max |atm - HF| over hidden states, over head outputs), non-pad positions only."""
    want_hidden, want_head = hf_outputs(model, batch)
    valid = batch["segment_ids"] > 0
    hidden = np.abs(pretrained.hidden_states(TEXTS) - want_hidden)[valid].max()
    if want_head is None:
        return hidden, None
    got_head = pretrained.mlm_logits(TEXTS) if pretrained.head == "mlm" else pretrained.discriminator_logits(TEXTS)
    return hidden, np.abs(got_head - want_head)[valid].max()


_BUILT: dict = {}


def imported_arch(name, tmp_path_factory):
    """(name, directory with hf/ and its import atm/, the torch model), built once per module."""
    if name not in _BUILT:
        base = tmp_path_factory.mktemp(name.replace("-", "_"))
        model = build_hf_dir(base / "hf", name)
        atm_workdir.import_hf_dir(str(base / "hf"), str(base / "atm"))
        _BUILT[name] = (name, base, model)
    return _BUILT[name]


@pytest.fixture(scope="module", params=list(ARCHS))
def imported(request, tmp_path_factory):
    return imported_arch(request.param, tmp_path_factory)


def test_import_matches_transformers(imported):
    name, base, model = imported
    pretrained = atm.from_pretrained(str(base / "atm"))
    batch = pretrained.encode(TEXTS)
    assert (batch["segment_ids"] == 0).any(), "the batch must contain padding"
    reference = transformers.AutoTokenizer.from_pretrained(str(base / "hf"))
    want = reference(TEXTS, padding=True, return_tensors="np")
    np.testing.assert_array_equal(batch["input_ids"], want["input_ids"])  # specials, padding and all
    np.testing.assert_array_equal(batch["segment_ids"], want["attention_mask"])
    hidden, head = max_differences(pretrained, model, batch)
    print(f"\n{name}: max |atm - HF| hidden {hidden:.2e}, head {head if head is None else f'{head:.2e}'}")
    assert hidden < TOLERANCE
    assert head is None or head < TOLERANCE
    want_hidden, _ = hf_outputs(model, batch)  # mean pooling over the attention mask, as sentence-transformers
    mask = batch["segment_ids"][:, :, None]
    np.testing.assert_allclose(pretrained.sentence_embeddings(TEXTS), (want_hidden * mask).sum(1) / mask.sum(1),
                               atol=TOLERANCE)
    assert pretrained.head == {"BertModel": "encoder", "ElectraForPreTraining": "discriminator"}.get(
        ARCHS[name][1], "mlm")
    # a Hugging Face directory loads directly too, to the same params
    direct = atm.from_pretrained(str(base / "hf"))
    np.testing.assert_array_equal(direct.params["encoder"]["embeddings"]["word_embeddings"]["embedding"],
                                  pretrained.params["encoder"]["embeddings"]["word_embeddings"]["embedding"])


def test_export_loads_in_transformers_and_matches(imported):
    name, base, model = imported
    out = base / "exported"
    atm_workdir.export_workdir(str(base / "atm"), str(out))
    config = json.load(open(out / "config.json"))
    assert config["architectures"] == [ARCHS[name][1]]
    reloaded = getattr(transformers, ARCHS[name][1]).from_pretrained(str(out)).eval()
    original = model.state_dict()
    for key, value in reloaded.state_dict().items():  # bit-identical weights, pooler excepted (atm has none)
        if "pooler" not in key:
            np.testing.assert_array_equal(value.numpy(), original[key].numpy(), err_msg=key)
    pretrained = atm.from_pretrained(str(base / "atm"))
    hidden, head = max_differences(pretrained, reloaded, pretrained.encode(TEXTS))
    assert hidden < TOLERANCE and (head is None or head < TOLERANCE)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(out))
    np.testing.assert_array_equal(tokenizer(TEXTS, padding=True, return_tensors="np")["input_ids"],
                                  pretrained.encode(TEXTS)["input_ids"])


@pytest.mark.parametrize("kind", list(TOKENIZERS))
def test_tokenizer_ids_equal_transformers(tmp_path, kind):
    writer, cls = TOKENIZERS[kind]
    directory = writer(str(tmp_path / "files"))
    reference = getattr(transformers, cls).from_pretrained(directory)
    reference.save_pretrained(str(tmp_path / "json"))  # transformers writes tokenizer.json: the other path
    for source in (directory, str(tmp_path / "json")):
        vocab = load_vocabulary(source)
        for text in TEXTS + ["[MASK] <mask> un-known: qxzv!"]:
            assert vocab.encode(text) == reference(text, add_special_tokens=False)["input_ids"], (source, text)
        assert vocab.encode_batch(TEXTS) == [vocab.encode(t) for t in TEXTS]
        specials = (vocab.pad_id, vocab.unk_id, vocab.cls_id, vocab.sep_id, vocab.mask_id)
        assert specials == (reference.pad_token_id, reference.unk_token_id, reference.cls_token_id,
                            reference.sep_token_id, reference.mask_token_id)
        assert vocab.size == len(reference)
    assert vocab.first_regular_id == (104 if kind.startswith("wordpiece") else 4)
    if kind == "wordpiece-cased":  # casing matters: the uncased vocabulary lower-cases and strips accents
        uncased = load_vocabulary(write_wordpiece(str(tmp_path / "uncased"), True))
        assert uncased.encode(TEXTS[0]) != vocab.encode(TEXTS[0])


def _rewrite_weights(hf_dir, change):
    from safetensors.numpy import load_file, save_file

    path = os.path.join(hf_dir, "model.safetensors")
    tensors = load_file(path)
    change(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


def test_clear_errors_name_what_is_wrong(tmp_path_factory, tmp_path):
    import shutil

    _, base, _ = imported_arch("bert", tmp_path_factory)
    hf_dir = tmp_path / "hf"
    shutil.copytree(base / "hf", hf_dir)
    _rewrite_weights(hf_dir, lambda t: t.pop("bert.encoder.layer.1.output.dense.bias"))
    with pytest.raises(ValueError, match=r"missing \['bert.encoder.layer.1.output.dense.bias'\]"):
        atm_workdir.import_hf_dir(str(hf_dir), str(tmp_path / "a"))
    shutil.copy(base / "hf" / "model.safetensors", hf_dir / "model.safetensors")
    _rewrite_weights(hf_dir, lambda t: t.update({"bert.encoder.layer.2.output.dense.bias": np.zeros(32, np.float32)}))
    with pytest.raises(ValueError, match=r"would drop .*\['bert.encoder.layer.2.output.dense.bias'\]"):
        atm_workdir.import_hf_dir(str(hf_dir), str(tmp_path / "b"))
    config = json.load(open(hf_dir / "config.json"))
    json.dump({**config, "model_type": "gpt2"}, open(hf_dir / "config.json", "w"))
    with pytest.raises(ValueError, match="model_type='gpt2' is not supported"):
        atm_workdir.import_hf_dir(str(hf_dir), str(tmp_path / "c"))
    os.remove(hf_dir / "model.safetensors")
    json.dump(config, open(hf_dir / "config.json", "w"))
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        atm_workdir.import_hf_dir(str(hf_dir), str(tmp_path / "d"))


def test_cli_import_and_finetune_from_it(tmp_path_factory, tmp_path, capsys):
    """`python -m atm.convert import` writes a workdir that fine-tuning starts from (config.init_from)."""
    from atm.convert.__main__ import main

    _, base, _ = imported_arch("roberta", tmp_path_factory)
    assert main(["import", f"--hf_dir={base / 'hf'}", f"--out={tmp_path / 'cli'}"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["head"] == "mlm"
    assert main(["import", f"--hf_dir={base / 'hf'}", f"--out={tmp_path / 'cli'}"]) == 1  # never overwrites
    assert "already holds checkpoints" in capsys.readouterr().err

    from atm import train
    from helpers import apply_overrides, tiny_config

    with pytest.raises(ValueError, match="is an imported checkpoint"):  # resuming it would start from scratch
        train.train_and_evaluate(tiny_config(), str(tmp_path / "cli"))
    from test_finetune import write_bio_folder
    import configs.finetune.from_workdir as from_workdir

    config = apply_overrides(from_workdir.get_config(str(tmp_path / "cli")), {
        "finetune.bio_folder": str(write_bio_folder(tmp_path / "bio", n_train=64, n_eval=16)),
        "finetune.eval_split": "validation", "data.seq_len": 24, "train.steps": 1, "train.batch_size": 16,
        "train.eval_every": 1, "checkpoint.every": 1, "model.hidden_dropout": 0.0})
    summary = train.train_and_evaluate(config, str(tmp_path / "finetuned"))
    encoder_tensors = 5 + 16 * 2
    assert f"Initialised {encoder_tensors} of" in capsys.readouterr().out
    assert np.isfinite(summary["loss"]) and "eval_slot_f1" in summary
