"""Vocabularies. One interface for SentencePiece (trained here) and imported WordPiece.

Every vocabulary exposes the special ids the objectives need ([PAD], [CLS],
[SEP], [MASK], [UNK]) and `first_regular_id`, the lowest id that random-token
replacement may draw.

Training a multilingual vocabulary from text files:

    python -m atm.data.vocab --input='../shared/data/mlm_text/wikiann_sentences/*.txt' \
        --vocab_size=32000 --out=vocabs/wikiann32k [--alpha=0.3] [--max_lines=N] [--spoken_share=0.7]

writes vocabs/wikiann32k.model/.vocab and vocabs/wikiann32k.sampling.json (lines, rate and
sampled lines per language). The training lines are drawn per language with temperature
sampling, q_lang ∝ n_lang^alpha (alpha=1: proportional, 0: uniform), so small languages are
not drowned by large ones.

Language convention (`line_language`): a line `LANG<TAB>text` whose LANG looks like a language
code (`en`, `sw`, `en-US`, `pt_BR`) is in LANG and the prefix is dropped; any other line is in
the language of its file, the code at the end of the file name before the extension (`en.txt`,
`wiki.de.txt`, `train-sw.txt`, `en-US.txt`); a file whose name has no code forms its own group,
named after the file.
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import re
import sys
from typing import Iterable, Mapping, Protocol, Sequence

import numpy as np

import sentencepiece as spm

SPECIAL_PIECES = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # ids 0..4 in vocabularies trained by atm


class Vocabulary(Protocol):
    size: int
    pad_id: int
    unk_id: int
    cls_id: int
    sep_id: int
    mask_id: int

    @property
    def special_ids(self) -> tuple[int, ...]: ...

    @property
    def first_regular_id(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


@dataclasses.dataclass
class SentencePieceVocabulary:
    """A SentencePiece model trained with atm's special-piece layout (see `train_sentencepiece`)."""
    path: str

    def __post_init__(self):
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"SentencePiece model {self.path} does not exist (config.data.vocab)")
        self._sp = spm.SentencePieceProcessor(model_file=self.path)
        self.size = self._sp.get_piece_size()
        ids = [self._sp.piece_to_id(p) for p in SPECIAL_PIECES]
        if ids != list(range(len(SPECIAL_PIECES))):
            raise ValueError(f"{self.path}: special pieces {SPECIAL_PIECES} must have ids 0..4, got {ids}; "
                             "train it with `python -m atm.data.vocab`")
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = ids

    @property
    def special_ids(self) -> tuple[int, ...]:
        return (self.pad_id, self.cls_id, self.sep_id, self.mask_id)

    @property
    def first_regular_id(self) -> int:
        return len(SPECIAL_PIECES)

    def encode(self, text: str) -> list[int]:
        return self._sp.encode(text)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self._sp.encode(texts, num_threads=os.cpu_count() or 1)

    def decode(self, ids: Sequence[int]) -> str:
        return self._sp.decode([int(i) for i in ids])

    def id_to_piece(self, i: int) -> str:
        return self._sp.id_to_piece(int(i))

    def word_start_table(self):
        """Bool per id: does this piece start a word (`starts_word`)? For whole-word masking."""
        import numpy as np
        return np.array([starts_word(self._sp.id_to_piece(i)) for i in range(self.size)])


# Scripts written without spaces between words (code point ranges): CJK ideographs, kana, Thai, Lao, Myanmar, Khmer.
UNSPACED_SCRIPTS = ((0x3040, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2FA1F),
                    (0x0E00, 0x0EFF), (0x1000, 0x109F), (0x1780, 0x17FF))


def starts_word(piece: str, marker: str = "\u2581") -> bool:
    """Does a vocabulary piece begin a word, for whole-word masking? When it carries the word-start marker
    ("▁" in SentencePiece, "Ġ" in byte-level BPE), or when its first character is of a script written without
    spaces: there every character counts as a word, as BERT's tokenizer splits CJK ideographs. Otherwise an
    unspaced sentence (Chinese, Japanese, Thai) is one "word", masked all at once or not at all."""
    if piece.startswith(marker):
        return True
    first = ord(piece[0]) if piece else 0
    return any(low <= first <= high for low, high in UNSPACED_SCRIPTS)


def load_vocabulary(path: str) -> Vocabulary:
    """The vocabulary at `path` (config.data.vocab): an atm SentencePiece model (.model, ids 0..4 =
    [PAD] [UNK] [CLS] [SEP] [MASK]) or a Hugging Face tokenizer — a directory (such as the `tokenizer/`
    of an imported checkpoint) or one of its files (tokenizer.json, vocab.txt, vocab.json,
    sentencepiece.bpe.model) — see atm/data/hf_vocab.py."""
    from atm.data import hf_vocab

    if not os.path.exists(path):
        raise FileNotFoundError(f"vocabulary {path} does not exist (config.data.vocab)")
    source = vocabulary_source(path)
    if os.path.isdir(source):
        return hf_vocab.load_hf_tokenizer(source)
    return SentencePieceVocabulary(path)


def vocabulary_source(path: str) -> str:
    """What a vocabulary path stands for: a file of a Hugging Face tokenizer directory (tokenizer.json,
    vocab.txt, ...) stands for its directory, which is what `load_vocabulary` reads; any other path for itself."""
    from atm.data import hf_vocab

    if os.path.basename(path) in hf_vocab.TOKENIZER_FILES:
        return os.path.dirname(os.path.abspath(path))
    return path


def train_sentencepiece(lines: Iterable[str], vocab_size: int, out_prefix: str) -> SentencePieceVocabulary:
    """Train a unigram SentencePiece model with ids 0..4 = [PAD] [UNK] [CLS] [SEP] [MASK]."""
    os.makedirs(os.path.dirname(os.path.abspath(out_prefix)), exist_ok=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_prefix=out_prefix, vocab_size=vocab_size, model_type="unigram",
        pad_id=0, unk_id=1, bos_id=2, eos_id=3, pad_piece="[PAD]", unk_piece="[UNK]", bos_piece="[CLS]",
        eos_piece="[SEP]", user_defined_symbols=["[MASK]"], character_coverage=0.9995, hard_vocab_limit=False,
        num_threads=os.cpu_count() or 1, minloglevel=2)
    return SentencePieceVocabulary(out_prefix + ".model")


# --------------------------------------------------------------- multilingual sampling
LANG_CODE = r"[a-z]{2,3}(?:[-_][A-Za-z]{2,4})?"
_LANG_PREFIX = re.compile(rf"^({LANG_CODE})\t(.*)$", re.S)
_LANG_IN_NAME = re.compile(rf"(?:^|[._-])({LANG_CODE})$")


def file_language(path: str) -> str:
    """The language code at the end of the file name ("wiki.de.txt" -> "de"), else the file name."""
    stem = os.path.basename(path)
    stem = stem.rsplit(".", 1)[0] if "." in stem else stem
    match = _LANG_IN_NAME.search(stem)
    return match.group(1) if match else os.path.basename(path)


def line_language(line: str, default: str) -> tuple[str, str]:
    """(language, text) of one line under the `LANG<TAB>text` convention."""
    match = _LANG_PREFIX.match(line)
    return (match.group(1), match.group(2)) if match else (default, line)


def temperature_rates(sizes: Mapping[str, float], alpha: float = 0.3) -> dict[str, float]:
    """Sampling rates q_k = n_k^alpha / sum_j n_j^alpha (alpha 1: proportional, 0: uniform).

    The multilingual recipe of XLM/XLM-R (languages) and of multi-task learning (tasks).
    Entries with n_k = 0 get rate 0."""
    if alpha < 0:
        raise ValueError(f"alpha={alpha} must be >= 0")
    if not sizes or any(n < 0 for n in sizes.values()):
        raise ValueError(f"need non-negative sizes, got {dict(sizes)}")
    weights = {k: (float(n) ** alpha if n > 0 else 0.0) for k, n in sizes.items()}
    total = sum(weights.values())
    if total <= 0:
        raise ValueError(f"all sizes are zero: {dict(sizes)}")
    return {k: w / total for k, w in weights.items()}


def read_lines_by_language(patterns: str, key: str = "--input") -> dict[str, list[str]]:
    """Non-blank stripped lines of the files matching comma-separated globs, grouped by language."""
    by_language: dict[str, list[str]] = {}
    for pattern in [p.strip() for p in patterns.split(",") if p.strip()]:
        paths = sorted(glob.glob(os.path.expanduser(pattern)))
        if not paths:
            raise FileNotFoundError(f"{key}: no file matches {pattern!r}")
        for path in paths:
            default = file_language(path)
            with open(path, encoding="utf-8") as f:
                for number, line in enumerate(f, start=1):
                    language, text = line_language(line.rstrip("\r\n"), default)
                    if text.strip():
                        by_language.setdefault(language, []).append(text.strip())
    if not by_language:
        raise ValueError(f"{key}={patterns!r}: the files contain no text")
    return by_language


def sample_by_language(by_language: Mapping[str, Sequence[str]], alpha: float = 0.3, total: int = 0,
                       seed: int = 0) -> tuple[list[tuple[str, str]], dict[str, dict]]:
    """`total` (language, line) pairs (default: as many as there are lines) drawn with temperature
    rates per language.

    A language gets round(q * total) lines: whole shuffled passes over its lines (so a small
    language is repeated) plus a shuffled remainder. Deterministic in `seed`."""
    sizes = {k: len(v) for k, v in by_language.items()}
    rates = temperature_rates(sizes, alpha)
    total = total or sum(sizes.values())
    out, stats = [], {}
    for i, language in enumerate(sorted(by_language)):
        lines = by_language[language]
        want = int(round(rates[language] * total))
        rng = np.random.default_rng([seed, i])
        passes, rest = divmod(want, len(lines))
        for _ in range(passes):
            out.extend((language, lines[j]) for j in rng.permutation(len(lines)))
        out.extend((language, lines[j]) for j in rng.permutation(len(lines))[:rest])
        stats[language] = {"lines": len(lines), "rate": rates[language], "sampled": want,
                           "proportional_rate": len(lines) / sum(sizes.values())}
    order = np.random.default_rng([seed, len(stats)]).permutation(len(out))
    return [out[j] for j in order], stats


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m atm.data.vocab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="comma-separated globs of text files, one example a line")
    parser.add_argument("--vocab_size", type=int, required=True)
    parser.add_argument("--out", required=True, help="output prefix: writes PREFIX.model, PREFIX.vocab, "
                                                     "PREFIX.sampling.json")
    parser.add_argument("--alpha", type=float, default=0.3, help="temperature exponent: q ∝ n^alpha")
    parser.add_argument("--max_lines", type=int, default=0, help="training lines to draw (0: as many as read)")
    parser.add_argument("--spoken_share", type=float, default=0.0,
                        help="share of the drawn lines turned into spoken form (ATM uses 0.7)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.vocab_size <= len(SPECIAL_PIECES):
        parser.error(f"--vocab_size={args.vocab_size} must exceed the {len(SPECIAL_PIECES)} special pieces")
    if not 0.0 <= args.spoken_share <= 1.0:
        parser.error(f"--spoken_share={args.spoken_share} must be in [0, 1]")
    by_language = read_lines_by_language(args.input)
    pairs, stats = sample_by_language(by_language, args.alpha, args.max_lines, args.seed)
    lines = [text for _, text in pairs]
    if args.spoken_share:
        from atm.data.spoken import spoken_form
        spoken = np.random.default_rng([args.seed, 1]).random(len(pairs)) < args.spoken_share
        lines = [spoken_form(text, language) if s else text for (language, text), s in zip(pairs, spoken)]
    vocab = train_sentencepiece(lines, args.vocab_size, args.out)
    summary = {"input": args.input, "alpha": args.alpha, "vocab_size": vocab.size, "lines": len(lines),
               "spoken_share": args.spoken_share, "seed": args.seed, "languages": stats}
    with open(args.out + ".sampling.json", "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1, ensure_ascii=False)
    print(f"{'language':>12} {'lines':>9} {'share':>7} {'rate':>7} {'sampled':>9}")
    for language, s in sorted(stats.items(), key=lambda kv: -kv[1]["lines"]):
        print(f"{language:>12} {s['lines']:>9} {s['proportional_rate']:>7.3f} {s['rate']:>7.3f} {s['sampled']:>9}")
    print(f"wrote {args.out}.model ({vocab.size} pieces) from {len(lines)} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
