"""`atm.from_pretrained(PATH)`: a model, its params and tokenizer, ready for text.

    import atm
    model = atm.from_pretrained("workdirs/bert_base")          # an atm workdir, or a Hugging Face directory
    h = model.hidden_states(["Hello world", "Hallo Welt"])     # (B, L, D), padded to the longest row
    logits = model.mlm_logits(["Paris is the [MASK] of France."])
    e = model.sentence_embeddings(["a sentence", "another"])   # (B, D): mean over the non-pad tokens

Rows are `[CLS] tokens [SEP]` (`<s> ... </s>` for RoBERTa/XLM-R) right-padded with the tokenizer's pad id
to the longest row, as transformers' tokenizer does with `padding=True` (the tokenizer files' own padding
and truncation are ignored); `encode` returns the ids, the mask and the positions (see its docstring).
A text longer than the model's positions is an error unless `max_length` asks for truncation.
Works from the params on the host; jit-compiled per shape.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Sequence

import jax
import numpy as np

from atm.convert import hf
from atm.models.encoder import Encoder, EncoderConfig


@dataclasses.dataclass
class Pretrained:
    cfg: EncoderConfig
    params: Any
    tokenizer: Any  # atm.data.vocab.Vocabulary
    head: str  # "mlm", "discriminator" or "encoder"
    model_type: str | None = None

    @property
    def model(self):
        """The Flax module these params belong to (`params` under "params")."""
        return hf.model_for(self.head, self.cfg)

    @property
    def max_length(self) -> int:
        return self.cfg.max_positions - self.cfg.position_offset

    def encode(self, texts: Sequence[str], max_length: int | None = None) -> dict[str, np.ndarray]:
        """The model's inputs for a batch of texts, as transformers' tokenizer gives them with `padding=True`.

        Each row is `[CLS] pieces [SEP]` (`<s> pieces </s>` for RoBERTa/XLM-R), right-padded with the
        tokenizer's pad id to L = the longest row; the tokenizer files' own padding and truncation are
        never applied. Returns
          input_ids    (B, L) int32
          segment_ids  (B, L) int32: 1 on the row's tokens, 0 on padding (transformers' attention_mask;
                       the token type is 0 everywhere, as for one text in transformers)
          positions    (B, L) int32: 0..L-1 in every row, what the model uses; it adds RoBERTa/XLM-R's
                       offset of 2 itself, so on every token these are transformers' position ids
                       (minus that offset): right padding never shifts them.
        A row longer than the model's `max_length` positions raises ValueError; pass `max_length`
        (at most the model's) to truncate instead: a longer row keeps its first max_length - 2
        pieces and its [SEP], as transformers' `truncation=True, max_length=...` does.
        """
        if isinstance(texts, str):
            raise TypeError("pass a list of strings")
        if self.tokenizer is None:
            raise ValueError("this checkpoint came without tokenizer files; pass token ids to the model directly")
        if max_length is not None and not 2 < max_length <= self.max_length:
            raise ValueError(f"max_length={max_length}: the model has {self.max_length} positions and a row needs "
                             f"[CLS] and [SEP]; pass 3..{self.max_length}")
        tok = self.tokenizer
        pieces = tok.encode_batch(list(texts))
        if max_length is None:
            too_long = [(i, len(p) + 2) for i, p in enumerate(pieces) if len(p) + 2 > self.max_length]
            if too_long:
                i, n = too_long[0]
                raise ValueError(f"text {i} is {n} tokens with its specials ({len(too_long)} of {len(pieces)} texts "
                                 f"exceed the model's {self.max_length} positions); pass max_length="
                                 f"{self.max_length} to truncate them")
        limit = max_length or self.max_length
        rows = [[tok.cls_id] + list(ids)[:limit - 2] + [tok.sep_id] for ids in pieces]
        length = max(len(r) for r in rows)
        ids = np.full((len(rows), length), tok.pad_id, np.int32)
        segments = np.zeros((len(rows), length), np.int32)
        for i, r in enumerate(rows):
            ids[i, :len(r)], segments[i, :len(r)] = r, 1
        positions = np.broadcast_to(np.arange(length, dtype=np.int32), ids.shape).copy()
        return {"input_ids": ids, "segment_ids": segments, "positions": positions}

    def _jitted(self, name: str):
        if not hasattr(self, "_functions"):
            encoder, model = Encoder(self.cfg), self.model
            self._functions = {
                "encoder": jax.jit(lambda p, i, s: encoder.apply({"params": p["encoder"]}, i, s)),
                "head": jax.jit(lambda p, i, s: model.apply({"params": p}, i, s)),
            }
        return self._functions[name]

    def apply_encoder(self, input_ids_BxL: np.ndarray, segment_ids_BxL: np.ndarray) -> np.ndarray:
        """Last-layer hidden states (B, L, D) for token ids; segment_ids 1 on tokens, 0 on padding."""
        return np.asarray(self._jitted("encoder")(self.params, input_ids_BxL, segment_ids_BxL))

    def apply_head(self, input_ids_BxL: np.ndarray, segment_ids_BxL: np.ndarray) -> np.ndarray:
        """The head's outputs for token ids: MLM logits (B, L, V) or discriminator logits (B, L)."""
        if self.head == "encoder":
            raise ValueError("this checkpoint has no head (a headless encoder, e.g. BertModel)")
        return np.asarray(self._jitted("head")(self.params, input_ids_BxL, segment_ids_BxL))

    def hidden_states(self, texts: Sequence[str], max_length: int | None = None) -> np.ndarray:
        """Last-layer hidden states (B, L, D) of `encode(texts, max_length)`; rows past their length are padding."""
        batch = self.encode(texts, max_length)
        return self.apply_encoder(batch["input_ids"], batch["segment_ids"])

    def _head_outputs(self, texts, head: str, max_length: int | None) -> np.ndarray:
        if self.head != head:
            raise ValueError(f"this checkpoint has a {self.head!r} head, not {head!r}")
        batch = self.encode(texts, max_length)
        return self.apply_head(batch["input_ids"], batch["segment_ids"])

    def mlm_logits(self, texts: Sequence[str], max_length: int | None = None) -> np.ndarray:
        """Masked-LM logits at every position (B, L, vocab_size)."""
        return self._head_outputs(texts, "mlm", max_length)

    def discriminator_logits(self, texts: Sequence[str], max_length: int | None = None) -> np.ndarray:
        """ELECTRA's replaced-token logits (B, L)."""
        return self._head_outputs(texts, "discriminator", max_length)

    def sentence_embeddings(self, texts: Sequence[str], max_length: int | None = None) -> np.ndarray:
        """Mean of the last hidden states over each row's non-pad tokens ([CLS]/[SEP] included, as
        sentence-transformers does with the attention mask): (B, D). Not L2-normalised (all-MiniLM's
        sentence-transformers pipeline normalises after pooling)."""
        batch = self.encode(texts, max_length)
        h = self.apply_encoder(batch["input_ids"], batch["segment_ids"])
        mask = (batch["segment_ids"] > 0).astype(h.dtype)[:, :, None]
        return (h * mask).sum(1) / mask.sum(1)


def from_pretrained(path: str, **overrides: Any) -> Pretrained:
    """An atm workdir (imported or trained: its latest checkpoint) or a Hugging Face directory.

    `overrides` set EncoderConfig fields (attention_impl, dtype, ...)."""
    from atm.convert import workdir as atm_workdir
    from atm.data.vocab import load_vocabulary

    path = os.path.abspath(path)
    if os.path.isdir(os.path.join(path, "checkpoints")):
        cfg, params, head, saved = atm_workdir.load_workdir(path, **overrides)
        vocab = atm_workdir.vocabulary_path(path, saved)
        record = os.path.join(path, atm_workdir.IMPORT_RECORD)
        model_type = json.load(open(record))["model_type"] if os.path.exists(record) else None
        return Pretrained(cfg, params, load_vocabulary(vocab) if vocab else None, head, model_type)
    if os.path.exists(os.path.join(path, "config.json")):
        hf_config, state_dict = hf.read_hf_dir(path)
        cfg, params, head = hf.convert_state_dict(hf_config, state_dict, **overrides)
        try:
            tokenizer = load_vocabulary(path)
        except FileNotFoundError:
            tokenizer = None
        return Pretrained(cfg, params, tokenizer, head, hf_config["model_type"])
    raise FileNotFoundError(f"{path}: neither an atm workdir (checkpoints/) nor a Hugging Face directory (config.json)")
