"""Extractive QA: long contexts as overlapping windows, and answers read back from span logits.

A question becomes one or more windows `[CLS] question [SEP] context[a:b] [SEP]`, the windows
starting `doc_stride` context tokens apart, as in BERT's run_squad and Hugging Face's run_qa.
A window's labels are the answer's first and last token positions when the whole answer lies
inside it, else position 0 ([CLS]: "no answer here"), so no-answer questions (SQuAD 2.0) and
windows that miss the answer train the same way.

Reading answers back (`best_answer`): over all windows of a question, the highest
start + end logit of a span inside the context, end >= start, at most `max_answer_tokens`
long; the text is the context's characters from the start token's first to the end token's
last. With `allow_no_answer` (SQuAD 2.0) the answer is "" when the best [CLS] score
(start[0] + end[0]) beats the best span's.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from atm.data import tasks


@dataclasses.dataclass
class Question:
    id: str
    context: str
    answers: list[str]  # gold texts ([] = unanswerable)
    char_spans: list[tuple[int, int]]  # of each context token


def question_windows(raw: dict, question_index: int, vocab, seq_len: int, doc_stride: int,
                     max_query_tokens: int) -> tuple[Question, list[dict]]:
    """The question's record for scoring and its windows (each a dict the batcher lays out)."""
    context = tasks.qa_context_tokens(raw, vocab)
    question_ids = list(vocab.encode(raw["question"]))[:max_query_tokens]
    offset = len(question_ids) + 2  # [CLS] question [SEP]
    room = seq_len - offset - 1
    if room < 1:
        raise ValueError(f"config.data.seq_len={seq_len} leaves no room for context after a "
                         f"{len(question_ids)}-token question (lower config.finetune.max_query_tokens)")
    context_ids = context.aligned.token_ids
    windows, start = [], 0
    while True:
        piece = context_ids[start:start + room]
        inside = start <= context.answer_start and context.answer_end < start + len(piece)
        windows.append({
            "input_ids": [vocab.cls_id] + question_ids + [vocab.sep_id] + piece + [vocab.sep_id],
            "first_context_type": offset,  # token types: 0 up to here, 1 from here on
            "start_position": context.answer_start - start + offset if inside else 0,
            "end_position": context.answer_end - start + offset if inside else 0,
            "question_index": question_index, "context_start": start, "context_offset": offset,
            "context_length": len(piece)})
        if start + room >= len(context_ids):
            break
        start += min(doc_stride, room)
    question = Question(raw["id"], raw["context"], [a["text"] for a in raw["answers"]], context.char_spans)
    return question, windows


def best_answer(question: Question, windows: Sequence[dict], start_logits: Sequence[np.ndarray],
                end_logits: Sequence[np.ndarray], max_answer_tokens: int = 30, allow_no_answer: bool = False,
                top_k: int = 20) -> str:
    """The answer text predicted from each window's start/end logits over its positions."""
    best_score, best_span = -np.inf, None
    null_score = np.inf
    for window, starts, ends in zip(windows, start_logits, end_logits):
        null_score = min(null_score, float(starts[0] + ends[0]))
        lo = window["context_offset"]
        hi = lo + window["context_length"]  # context positions are [lo, hi)
        top_starts = lo + np.argsort(starts[lo:hi])[::-1][:top_k]
        top_ends = lo + np.argsort(ends[lo:hi])[::-1][:top_k]
        for s in top_starts:
            for e in top_ends:
                if e < s or e - s + 1 > max_answer_tokens:
                    continue
                score = float(starts[s] + ends[e])
                if score > best_score:
                    first = window["context_start"] + s - lo
                    best_score, best_span = score, (first, first + e - s)
    if best_span is None or (allow_no_answer and null_score > best_score):
        return ""
    return question.context[question.char_spans[best_span[0]][0]:question.char_spans[best_span[1]][1]]
