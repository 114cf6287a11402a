"""From `config.data` to a vocabulary and train/eval batchers.

Sources: "synthetic" (atm's own generated utterances) and "text_files" (one
example per line, globs in `config.data.files`). When `config.data.vocab` is
empty a SentencePiece model is trained on the training text into the workdir.
"""
from __future__ import annotations

import glob
import os

import jax
import numpy as np
from jax.experimental import multihost_utils

from atm.data import synthetic
from atm.data.pipeline import Batcher
from atm.data.vocab import SentencePieceVocabulary, train_sentencepiece


def read_text_files(patterns: str, key: str = "config.data.files") -> list[str]:
    lines = []
    for pattern in [p.strip() for p in patterns.split(",") if p.strip()]:
        paths = sorted(glob.glob(os.path.expanduser(pattern)))
        if not paths:
            raise FileNotFoundError(f"{key}: no file matches {pattern!r}")
        for path in paths:
            with open(path, encoding="utf-8") as f:
                lines.extend(line.strip() for line in f if line.strip())
    if not lines:
        raise ValueError(f"{key}={patterns!r}: the files contain no text")
    return lines


def load_texts(data_config) -> list[str]:
    if data_config.source == "synthetic":
        langs = tuple(x.strip() for x in data_config.languages.split(",") if x.strip())
        return synthetic.utterances(data_config.num_examples, seed=1234, languages=langs)
    if data_config.source == "text_files":
        if not data_config.files:
            raise ValueError("config.data.source='text_files' needs config.data.files (comma-separated globs)")
        return read_text_files(data_config.files)
    raise ValueError(f"config.data.source={data_config.source!r}: use 'synthetic' or 'text_files'")


def split_train_eval(texts: list[str], eval_fraction: float) -> tuple[list[str], list[str]]:
    """A fixed held-out split: every k-th line goes to eval."""
    if eval_fraction <= 0:
        return texts, texts[:0]
    every = max(2, round(1 / eval_fraction))
    return ([t for i, t in enumerate(texts) if i % every], [t for i, t in enumerate(texts) if i % every == 0])


def load_vocab(data_config, workdir: str, train_texts: list[str]):
    if data_config.vocab:
        return SentencePieceVocabulary(data_config.vocab)
    prefix = os.path.join(workdir, "vocab")
    if jax.process_index() == 0 and not os.path.exists(prefix + ".model"):
        train_sentencepiece(train_texts, data_config.vocab_size, prefix)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("atm:vocab")
    return SentencePieceVocabulary(prefix + ".model")


def build(config, workdir: str):
    """(vocab, train Batcher, eval Batcher or None) for this process."""
    data = config.data
    train_texts, eval_texts = split_train_eval(load_texts(data), data.eval_fraction)
    vocab = load_vocab(data, workdir, train_texts)

    def batcher(texts, seed):
        examples = [np.asarray(ids, np.int32) for ids in vocab.encode_batch(texts)]
        return Batcher(examples, data.seq_len, config.train.batch_size, seed, data.pack, vocab.cls_id,
                       vocab.sep_id, vocab.pad_id, jax.process_index(), jax.process_count())

    return vocab, batcher(train_texts, config.seed), (batcher(eval_texts, 0) if eval_texts else None)
