"""Vocabularies. One interface for SentencePiece (trained here) and imported WordPiece.

Every vocabulary exposes the special ids the objectives need ([PAD], [CLS],
[SEP], [MASK], [UNK]) and `first_regular_id`, the lowest id that random-token
replacement may draw.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Iterable, Protocol, Sequence

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


def train_sentencepiece(lines: Iterable[str], vocab_size: int, out_prefix: str) -> SentencePieceVocabulary:
    """Train a unigram SentencePiece model with ids 0..4 = [PAD] [UNK] [CLS] [SEP] [MASK]."""
    os.makedirs(os.path.dirname(os.path.abspath(out_prefix)), exist_ok=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_prefix=out_prefix, vocab_size=vocab_size, model_type="unigram",
        pad_id=0, unk_id=1, bos_id=2, eos_id=3, pad_piece="[PAD]", unk_piece="[UNK]", bos_piece="[CLS]",
        eos_piece="[SEP]", user_defined_symbols=["[MASK]"], character_coverage=0.9995, hard_vocab_limit=False,
        num_threads=os.cpu_count() or 1, minloglevel=2)
    return SentencePieceVocabulary(out_prefix + ".model")
