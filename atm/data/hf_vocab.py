"""Tokenizers of Hugging Face checkpoints behind atm's `Vocabulary` interface (atm/data/vocab.py).

    TokenizersVocabulary         a `tokenizers` pipeline: a tokenizer.json, BERT/ELECTRA/MiniLM WordPiece
                                 (vocab.txt, cased or uncased, accents and CJK as HF), RoBERTa byte-level
                                 BPE (vocab.json + merges.txt)
    XLMRSentencePieceVocabulary  XLM-R's sentencepiece.bpe.model with fairseq ids
                                 (<s> 0, <pad> 1, </s> 2, <unk> 3, pieces shifted by 1, <mask> last)

`load_hf_tokenizer(directory)` picks the files the way transformers does (tokenizer.json first) and
reads the special tokens and casing from tokenizer_config.json / special_tokens_map.json. `encode`
returns ids without special tokens: atm's batchers add [CLS]/<s> and [SEP]/</s> themselves.

A tokenizer.json is read as transformers 5's `AutoTokenizer` reads it (the reference the tests hold
atm to): the class that tokenizer_config.json names (else the one for config.json's model_type)
keeps the file's vocabulary, merges and added tokens but builds its own normalizer and
pre-tokenizer from tokenizer_config.json (`TRANSFORMERS_CLASSES`); only a file without a class
(PreTrainedTokenizerFast, TokenizersBackend) runs the file's own pipeline. The file's padding and
truncation are always dropped: atm's batching decides length, padding and truncation.
"""
from __future__ import annotations

import json
import os
import re
from typing import Sequence

import numpy as np

from atm.data.vocab import starts_word

WORDPIECE_SPECIALS = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
ROBERTA_SPECIALS = {"pad": "<pad>", "unk": "<unk>", "cls": "<s>", "sep": "</s>", "mask": "<mask>"}
# Files a tokenizer may consist of; import copies those present, export writes them back.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json",
                   "merges.txt", "sentencepiece.bpe.model", "added_tokens.json")


def _read_json(path: str) -> dict:
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _token_settings(directory: str) -> dict:
    """tokenizer_config.json overlaid with special_tokens_map.json; AddedToken dicts become their content."""
    settings = {**_read_json(os.path.join(directory, "tokenizer_config.json")),
                **_read_json(os.path.join(directory, "special_tokens_map.json"))}
    return {k: (v["content"] if isinstance(v, dict) and "content" in v else v) for k, v in settings.items()}


class _SpecialIds:
    """Special ids and the derived properties of the Vocabulary interface."""
    size: int
    pad_id: int
    unk_id: int
    cls_id: int
    sep_id: int
    mask_id: int

    @property
    def special_ids(self) -> tuple[int, ...]:
        return (self.pad_id, self.cls_id, self.sep_id, self.mask_id)

    @property
    def first_regular_id(self) -> int:
        """Above every special id except a <mask> at the very end (RoBERTa/XLM-R): random-token replacement
        draws from [first_regular_id, size)."""
        low = [i for i in (self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id) if i < self.size - 1]
        return max(low) + 1

    def _set_special_ids(self, token_to_id, names: dict, where: str):
        ids, missing = {}, []
        for role, token in names.items():
            i = token_to_id(token)
            if i is None:
                missing.append(f"{role}={token!r}")
            ids[role] = i
        if missing:
            raise ValueError(f"{where}: special tokens {missing} are not in the vocabulary")
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (
            ids["pad"], ids["unk"], ids["cls"], ids["sep"], ids["mask"])


class TokenizersVocabulary(_SpecialIds):
    """A `tokenizers.Tokenizer` with special token names; `word_start` tells word-initial pieces apart."""

    def __init__(self, tokenizer, specials: dict, word_start: str, where: str):
        self._tokenizer = tokenizer
        self.where = where
        self.size = tokenizer.get_vocab_size(with_added_tokens=True)
        self._word_start = word_start  # "##" marks continuations (WordPiece); "Ġ" / "▁" mark word starts
        self._set_special_ids(tokenizer.token_to_id, specials, where)

    def encode(self, text: str) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        return self._tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)

    def id_to_piece(self, i: int) -> str:
        return self._tokenizer.id_to_token(int(i)) or ""

    def word_start_table(self) -> np.ndarray:
        pieces = [self.id_to_piece(i) for i in range(self.size)]
        if self._word_start == "##":
            return np.array([not p.startswith("##") for p in pieces])
        return np.array([starts_word(p, self._word_start) for p in pieces])


def wordpiece_tokenizer(vocab_txt: str, settings: dict):
    """BERT's WordPiece pipeline from vocab.txt, as transformers' BertTokenizer builds it."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import WordPiece

    specials = {role: settings.get(f"{role}_token", token) for role, token in WORDPIECE_SPECIALS.items()}
    tokenizer = Tokenizer(WordPiece.from_file(vocab_txt, unk_token=specials["unk"]))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=settings.get("tokenize_chinese_chars", True),
        strip_accents=settings.get("strip_accents"), lowercase=settings.get("do_lower_case", True))
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    tokenizer.add_special_tokens(list(specials.values()))  # "[MASK]" in text is the token, as in transformers
    return tokenizer, specials


def byte_level_bpe_tokenizer(vocab_json: str, merges_txt: str, settings: dict):
    """RoBERTa's byte-level BPE from vocab.json + merges.txt, as transformers' RobertaTokenizer builds it."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE

    specials = {role: settings.get(f"{role}_token", token) for role, token in ROBERTA_SPECIALS.items()}
    tokenizer = Tokenizer(BPE.from_file(vocab_json, merges_txt))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=settings.get("add_prefix_space", False))
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(list(specials.values()))
    return tokenizer, specials


class XLMRSentencePieceVocabulary(_SpecialIds):
    """XLM-R's SentencePiece model with fairseq's id layout: <s> 0, <pad> 1, </s> 2, <unk> 3, then
    SentencePiece piece p at id p + 1 (its own <unk>/<s>/</s> map to the fairseq ones), <mask> last."""
    OFFSET = 1

    def __init__(self, path: str):
        import sentencepiece as spm

        self.where = path
        self._sp = spm.SentencePieceProcessor(model_file=path)
        pieces = self._sp.get_piece_size()
        self.cls_id, self.pad_id, self.sep_id, self.unk_id = 0, 1, 2, 3
        self.mask_id = pieces + self.OFFSET
        self.size = pieces + self.OFFSET + 1
        self._sp_special = {self._sp.unk_id(): self.unk_id, self._sp.bos_id(): self.cls_id,
                            self._sp.eos_id(): self.sep_id}
        # Special tokens written in the text are those tokens, as in transformers; <mask> also takes the
        # whitespace before it (its AddedToken has lstrip=True).
        self._special_text = re.compile(r"(\s*<mask>|<s>|</s>|<pad>|<unk>)")
        self._special_by_text = {"<mask>": self.mask_id, "<s>": self.cls_id, "</s>": self.sep_id,
                                 "<pad>": self.pad_id, "<unk>": self.unk_id}

    def _from_sp(self, i: int) -> int:
        return self._sp_special.get(i, i + self.OFFSET)

    def encode(self, text: str) -> list[int]:
        if "<" not in text:
            return [self._from_sp(i) for i in self._sp.encode(text)]
        ids = []
        for part in self._special_text.split(text):
            if part.strip() in self._special_by_text:
                ids.append(self._special_by_text[part.strip()])
            elif part:
                ids.extend(self._from_sp(i) for i in self._sp.encode(part))
        return ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        if any("<" in t for t in texts):
            return [self.encode(t) for t in texts]
        return [[self._from_sp(i) for i in ids] for ids in self._sp.encode(list(texts), num_threads=os.cpu_count() or 1)]

    def decode(self, ids: Sequence[int]) -> str:
        special = set(self.special_ids) | {self.unk_id}
        return self._sp.decode([int(i) - self.OFFSET for i in ids if int(i) not in special])

    def id_to_piece(self, i: int) -> str:
        names = {self.cls_id: "<s>", self.pad_id: "<pad>", self.sep_id: "</s>", self.unk_id: "<unk>",
                 self.mask_id: "<mask>"}
        return names.get(int(i)) or self._sp.id_to_piece(int(i) - self.OFFSET)

    def word_start_table(self) -> np.ndarray:
        return np.array([starts_word(self.id_to_piece(i)) for i in range(self.size)])


# transformers 5 tokenizer classes (their "Fast" twins are the same class) → the pipeline their __init__ builds.
TRANSFORMERS_CLASSES = {"BertTokenizer": "wordpiece", "ElectraTokenizer": "wordpiece",
                        "DistilBertTokenizer": "wordpiece", "RobertaTokenizer": "bpe",
                        "XLMRobertaTokenizer": "unigram", "PreTrainedTokenizer": "file", "TokenizersBackend": "file"}
# AutoTokenizer's class for a config.json model_type when tokenizer_config.json names none.
CLASS_BY_MODEL_TYPE = {"bert": "BertTokenizer", "electra": "BertTokenizer", "distilbert": "DistilBertTokenizer",
                       "roberta": "RobertaTokenizer", "xlm-roberta": "XLMRobertaTokenizer"}
FAMILY_MODEL = {"wordpiece": "WordPiece", "bpe": "BPE", "unigram": "Unigram"}


def tokenizer_class(directory: str, settings: dict | None = None) -> str:
    """The transformers class `AutoTokenizer` would load for `directory` (without its "Fast" suffix)."""
    settings = _token_settings(directory) if settings is None else settings
    name = settings.get("tokenizer_class")
    if not name:
        model_type = _read_json(os.path.join(directory, "config.json")).get("model_type")
        name = CLASS_BY_MODEL_TYPE.get(model_type, "TokenizersBackend")
    return name[:-len("Fast")] if name.endswith("Fast") else name


def _rebuilt_as_transformers(spec: dict, family: str, settings: dict, where: str):
    """The file's vocabulary, merges and added tokens in the pipeline the transformers class builds
    (transformers/models/{bert,roberta,xlm_roberta}/tokenization_*.py, __init__)."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers

    model = spec["model"]
    if model.get("type") != FAMILY_MODEL[family]:
        raise ValueError(f"{where}: tokenizer_config.json names a {FAMILY_MODEL[family]} tokenizer class but the "
                         f"file's model is {model.get('type')!r}")
    if family == "wordpiece":
        spec["model"] = {"type": "WordPiece", "vocab": model["vocab"], "unk_token": settings.get("unk_token", "[UNK]"),
                         "continuing_subword_prefix": "##", "max_input_chars_per_word": 100}
    elif family == "bpe":
        spec["model"] = {"type": "BPE", "vocab": model["vocab"], "merges": model["merges"], "dropout": None,
                         "unk_token": None, "continuing_subword_prefix": "", "end_of_word_suffix": "",
                         "fuse_unk": False, "byte_fallback": False, "ignore_merges": False}
    else:  # XLMRobertaTokenizer hard-codes <unk> at 3, fairseq's id
        spec["model"] = {"type": "Unigram", "vocab": model["vocab"], "unk_id": 3, "byte_fallback": False}
    charsmap = _precompiled_charsmap(spec.get("normalizer"))
    for part in ("normalizer", "pre_tokenizer", "decoder"):
        spec[part] = None
    tokenizer = Tokenizer.from_str(json.dumps(spec))
    if family == "wordpiece":
        tokenizer.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=settings.get("tokenize_chinese_chars", True),
            strip_accents=settings.get("strip_accents"), lowercase=settings.get("do_lower_case", True))
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece(prefix="##")
    elif family == "bpe":
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=settings.get("add_prefix_space", False))
        tokenizer.decoder = decoders.ByteLevel()
    else:
        scheme = "always" if settings.get("add_prefix_space", True) else "never"
        if charsmap is not None:
            tokenizer.normalizer = normalizers.Precompiled(charsmap)
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme=scheme)])
        tokenizer.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme=scheme)
    return tokenizer


def _precompiled_charsmap(normalizer: dict | None) -> bytes | None:
    import base64

    parts = (normalizer or {}).get("normalizers", [normalizer] if normalizer else [])
    for part in parts:
        if part and part.get("type") == "Precompiled" and part.get("precompiled_charsmap"):
            return base64.b64decode(part["precompiled_charsmap"])
    return None


def _check_template(tokenizer, specials: dict, where: str):
    """A file-defined pipeline must frame one text as atm's batchers do ([CLS] text [SEP])."""
    bare = tokenizer.encode("a", add_special_tokens=False).ids
    framed = tokenizer.encode("a", add_special_tokens=True).ids
    want = [tokenizer.token_to_id(specials["cls"])] + bare + [tokenizer.token_to_id(specials["sep"])]
    if framed != want:
        raise ValueError(f"{where}: its post_processor frames a text as {framed} around {bare}, but atm adds "
                         f"{specials['cls']} ... {specials['sep']}; name the tokenizer class in tokenizer_config.json "
                         f"(one of {sorted(TRANSFORMERS_CLASSES)}) or fix the post_processor")


def tokenizer_from_json(directory: str, settings: dict | None = None) -> TokenizersVocabulary:
    """`directory`/tokenizer.json as `AutoTokenizer` reads it, without the file's padding and truncation."""
    from tokenizers import Tokenizer

    settings = _token_settings(directory) if settings is None else settings
    where = os.path.join(directory, "tokenizer.json")
    name = tokenizer_class(directory, settings)
    if name not in TRANSFORMERS_CLASSES:
        raise ValueError(f"{directory}: tokenizer class {name!r} is not one atm reproduces; it reads "
                         f"{sorted(TRANSFORMERS_CLASSES)} (tokenizer_config.json tokenizer_class)")
    family = TRANSFORMERS_CLASSES[name]
    with open(where, encoding="utf-8") as f:
        spec = json.load(f)
    if family == "file":
        tokenizer = Tokenizer.from_file(where)
        family = {"WordPiece": "wordpiece", "BPE": "bpe"}.get(spec["model"].get("type"), "unigram")
    else:
        tokenizer = _rebuilt_as_transformers(spec, family, settings, where)
    # A file's padding and truncation (e.g. "Fixed": 128) would reach every row: atm's batching decides them.
    tokenizer.no_padding()
    tokenizer.no_truncation()
    defaults = WORDPIECE_SPECIALS if family == "wordpiece" else ROBERTA_SPECIALS
    specials = {role: settings.get(f"{role}_token", token) for role, token in defaults.items()}
    if TRANSFORMERS_CLASSES[name] == "file":
        _check_template(tokenizer, specials, where)
    word_start = {"wordpiece": "##", "bpe": "\u0120"}.get(family, "\u2581")
    return TokenizersVocabulary(tokenizer, specials, word_start, where)


def load_hf_tokenizer(directory: str):
    """The vocabulary of a Hugging Face tokenizer directory (see the module docstring for the order)."""
    def path(name):
        return os.path.join(directory, name)

    settings = _token_settings(directory)
    if os.path.exists(path("tokenizer.json")):
        return tokenizer_from_json(directory, settings)
    if os.path.exists(path("sentencepiece.bpe.model")):
        return XLMRSentencePieceVocabulary(path("sentencepiece.bpe.model"))
    if os.path.exists(path("vocab.json")) and os.path.exists(path("merges.txt")):
        tokenizer, specials = byte_level_bpe_tokenizer(path("vocab.json"), path("merges.txt"), settings)
        return TokenizersVocabulary(tokenizer, specials, "\u0120", path("vocab.json"))
    if os.path.exists(path("vocab.txt")):
        tokenizer, specials = wordpiece_tokenizer(path("vocab.txt"), settings)
        return TokenizersVocabulary(tokenizer, specials, "##", path("vocab.txt"))
    raise FileNotFoundError(f"{directory}: no tokenizer.json, sentencepiece.bpe.model, vocab.json + merges.txt "
                            "or vocab.txt")
