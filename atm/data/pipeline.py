"""Deterministic, resumable batches: batch `step` is a pure function of (seed, step).

Nothing iterates statefully, so the data position saved in a checkpoint is just
the next step; a resumed run sees exactly the batches an uninterrupted run would
have seen, and each process builds only its own rows of the global batch.

Sequences are `[CLS] tokens [SEP]`, truncated to `seq_len`. With packing, several
examples share a row: `segment_ids` number them 1, 2, ... (0 = padding) and
`positions` restart at 0 in each, so the encoder's block-diagonal mask keeps them apart.
"""
from __future__ import annotations

import bisect
import dataclasses
import hashlib
import json
from typing import Sequence

import numpy as np

Example = np.ndarray  # int32 token ids, no special tokens


def stream_fingerprint(settings: list, token_arrays) -> str:
    """Identifies a batch stream: its settings and the first examples' tokens."""
    h = hashlib.sha256(json.dumps(settings).encode())
    for tokens in token_arrays:
        h.update(np.asarray(tokens, np.int32).tobytes())
    return h.hexdigest()[:16]


def greedy_rows(lengths: np.ndarray, seq_len: int, pack: bool) -> list[list[int]]:
    """Group examples, taken in the given order, into rows: greedily while they fit in `seq_len`
    (`lengths` include [CLS]/[SEP] and are already cut to seq_len), or one per row without packing.
    Returns the examples' positions in `lengths`, row by row: deterministic and cheap."""
    if not pack:
        return [[j] for j in range(len(lengths))]
    rows, current, used = [], [], 0
    for j, n in enumerate(lengths.tolist()):
        if used + n > seq_len and current:
            rows.append(current)
            current, used = [], 0
        current.append(j)
        used += n
    if current:
        rows.append(current)
    return rows


def pack_row(examples: Sequence[Example], seq_len: int, cls_id: int, sep_id: int, pad_id: int,
             word_starts: Sequence[np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """One row holding `examples` as `[CLS] tokens [SEP]` segments 1, 2, ... (each cut to seq_len);
    with `word_starts` (per example, bool per token) also `word_ids`: 1, 2, ... per word across the
    row, 0 for special tokens and padding."""
    row = {"input_ids": np.full(seq_len, pad_id, np.int32),
           "segment_ids": np.zeros(seq_len, np.int32),
           "positions": np.zeros(seq_len, np.int32)}
    if word_starts is not None:
        row["word_ids"] = np.zeros(seq_len, np.int32)
        words_so_far = 0
    used = 0
    for segment, tokens in enumerate(examples, start=1):
        n = min(len(tokens) + 2, seq_len)
        row["input_ids"][used:used + n] = np.concatenate([[cls_id], tokens[:n - 2], [sep_id]])
        row["segment_ids"][used:used + n] = segment
        row["positions"][used:used + n] = np.arange(n)
        if word_starts is not None and n > 2:
            starts = np.asarray(word_starts[segment - 1][:n - 2], bool).copy()
            starts[0] = True  # a piece without "▁" at the start still begins a word
            word_ids = words_so_far + np.cumsum(starts)
            row["word_ids"][used + 1:used + n - 1] = word_ids
            words_so_far = int(word_ids[-1])
        used += n
    return row


class StreamPosition:
    """The data position saved in checkpoints: the next step, valid only for the same stream."""

    def fingerprint(self) -> str:
        raise NotImplementedError

    def state(self, next_step: int) -> dict:
        return {"next_step": int(next_step), "fingerprint": self.fingerprint()}

    def check_state(self, state: dict, where: str):
        if state.get("fingerprint") != self.fingerprint():
            raise ValueError(f"{where}: the checkpoint was written for another data stream "
                             f"(fingerprint {state.get('fingerprint')} != {self.fingerprint()}); "
                             "config.data, config.finetune or config.train.batch_size changed since it was saved")


@dataclasses.dataclass
class Batcher(StreamPosition):
    examples: Sequence[Example]
    seq_len: int
    batch_size: int  # global
    seed: int
    pack: bool
    cls_id: int
    sep_id: int
    pad_id: int
    process_index: int = 0
    process_count: int = 1
    word_starts: Sequence[np.ndarray] | None = None  # per example, bool per token: emits `word_ids` when set

    def __post_init__(self):
        if not len(self.examples):
            raise ValueError("the data source produced no examples")
        if self.batch_size % self.process_count:
            raise ValueError(f"config.train.batch_size={self.batch_size} is not divisible by the "
                             f"{self.process_count} processes")
        self._lengths = np.minimum(np.array([len(e) for e in self.examples]) + 2, self.seq_len)
        self._epoch_starts: list[int] = [0]  # first global row of each epoch sized so far
        self._cached_epoch = (-1, [])

    # --- epochs: a shuffled order of examples, grouped into rows -----------------------
    def _rows_of_epoch(self, epoch: int) -> list[list[int]]:
        if self._cached_epoch[0] == epoch:
            return self._cached_epoch[1]
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.examples))
        rows = [[int(order[j]) for j in row] for row in greedy_rows(self._lengths[order], self.seq_len, self.pack)]
        self._cached_epoch = (epoch, rows)
        return rows

    def _locate(self, global_row: int) -> tuple[int, int]:
        """(epoch, row within epoch) of the global_row-th row of the endless stream."""
        while self._epoch_starts[-1] <= global_row:  # size epochs (packing varies them) as far as needed
            self._epoch_starts.append(self._epoch_starts[-1] + len(self._rows_of_epoch(len(self._epoch_starts) - 1)))
        epoch = bisect.bisect_right(self._epoch_starts, global_row) - 1
        return epoch, global_row - self._epoch_starts[epoch]

    def _row(self, members: list[int]) -> dict[str, np.ndarray]:
        return pack_row([self.examples[i] for i in members], self.seq_len, self.cls_id, self.sep_id, self.pad_id,
                        None if self.word_starts is None else [self.word_starts[i] for i in members])

    # --- the public interface -----------------------------------------------------------
    @property
    def local_batch_size(self) -> int:
        return self.batch_size // self.process_count

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """This process's rows of global batch `step`."""
        first = step * self.batch_size + self.process_index * self.local_batch_size
        rows = []
        for r in range(first, first + self.local_batch_size):
            epoch, index = self._locate(r)
            rows.append(self._row(self._rows_of_epoch(epoch)[index]))
        return {name: np.stack([row[name] for row in rows]) for name in rows[0]}

    def fingerprint(self) -> str:
        return stream_fingerprint([self.seq_len, self.batch_size, self.seed, self.pack, len(self.examples),
                                   self.word_starts is not None], self.examples[:1000])
