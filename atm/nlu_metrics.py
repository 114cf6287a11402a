"""Task metrics for the NLU evaluations, in plain Python (+ numpy), matching the reference scripts.

* `span_f1`: slot / NER span precision, recall and F1 for BIO / IOB2 (also IOB1, IOE, IOBES) tag
  sequences, identical to `seqeval.metrics.{precision,recall,f1}_score` in their default
  (conlleval-compatible, micro-averaged) mode. Fractions in [0, 1], like seqeval.
* `intent_accuracy`, `frame_exact_match`, `semantic_error_rate` (SemER): joint intent + slot
  metrics for MASSIVE / ATIS style data. Fractions (SemER can exceed 1).
* `squad_scores` (+ `normalize_answer`, `squad_exact`, `squad_f1`): SQuAD v1.1 / v2.0 EM and F1
  following the official evaluation scripts; aggregates are in percent (0-100), like the
  official scripts' JSON output.
* `accuracy_by_group`: per-language accuracy plus the macro (and micro) average, for XNLI and
  MASSIVE tables. Fractions.

No dependency beyond numpy; the tests check `span_f1` against seqeval itself.
"""
from __future__ import annotations

import collections
import re
import string
from typing import Any, Hashable, Iterable, Mapping, Sequence

import numpy as np

Span = tuple[str, int, int]  # (type, first token, last token), inclusive as in seqeval

__all__ = [
    "get_spans", "span_f1", "intent_accuracy", "frame_exact_match", "semantic_error_rate",
    "normalize_answer", "squad_exact", "squad_f1", "squad_scores", "accuracy_by_group",
    "joint_nlu_metrics",
]


# --------------------------------------------------------------------------------------------
# Span extraction (the conlleval / seqeval default-mode chunker)
# --------------------------------------------------------------------------------------------

def _chunk_end(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """True when a chunk ended between the previous token and this one (conlleval rules)."""
    if prev_tag in ("E", "S"):
        return True
    if prev_tag in ("B", "I") and tag in ("B", "S", "O"):
        return True
    # a change of type ends whatever chunk was open (I-X after B-Y, ...)
    return prev_tag not in ("O", ".") and prev_type != type_


def _chunk_start(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """True when a chunk starts at this token (conlleval rules)."""
    if tag in ("B", "S"):
        return True
    # I-/E- after O, E- or S- opens a chunk (IOB1 style: I- without a preceding B-)
    if prev_tag in ("E", "S", "O") and tag in ("E", "I"):
        return True
    return tag not in ("O", ".") and prev_type != type_


def _split_tag(label: str) -> tuple[str, str]:
    """'B-PER' -> ('B', 'PER'); 'O' -> ('O', '_'); a bare 'B'/'I' gets the type '_' (as seqeval)."""
    label = str(label)
    if not label:
        raise ValueError("empty tag string")
    return label[0], label[1:].split("-", maxsplit=1)[-1] or "_"


def _chunks(labels: Sequence[str]) -> list[Span]:
    """Chunks of one flat label list, exactly as `seqeval.metrics.sequence_labeling.get_entities`."""
    prev_tag, prev_type, begin = "O", "", 0
    chunks = []
    for i, label in enumerate(list(labels) + ["O"]):
        tag, type_ = _split_tag(label)
        if _chunk_end(prev_tag, tag, prev_type, type_):
            chunks.append((prev_type, begin, i - 1))
        if _chunk_start(prev_tag, tag, prev_type, type_):
            begin = i
        prev_tag, prev_type = tag, type_
    return chunks


def get_spans(tags: Sequence[str]) -> list[Span]:
    """Spans `(type, start, end)` (token indices, `end` inclusive) of ONE tag sequence.

    Chunking follows conlleval / seqeval's default mode: `B-X` starts a chunk; `I-X` continues a
    chunk of type X and otherwise starts a new one (so `I-X` without `B-X`, or after `B-Y`, opens a
    chunk); `B-X B-X` are two adjacent chunks; `O` closes any chunk. E-/S- (IOBES) also work.
    """
    return _chunks([str(t) for t in tags])


def _as_tag_lists(seqs: Iterable[Sequence[str]]) -> list[list[str]]:
    out = []
    for seq in seqs:
        if isinstance(seq, str):
            raise TypeError("expected a list of tag sequences, got a list of strings; wrap it: [tags]")
        out.append([str(t) for t in seq])
    return out


def _check_tag_lengths(gold: list[list[str]], pred: list[list[str]]) -> None:
    if len(gold) != len(pred) or any(len(g) != len(p) for g, p in zip(gold, pred)):
        raise ValueError(f"gold and predicted tag sequences differ in number or length: "
                         f"{[len(g) for g in gold]} vs {[len(p) for p in pred]}")


def _safe_div(num: float, den: float) -> float:
    return num / den if den else 0.0  # seqeval's zero_division="warn" value (without the warning)


def _prf(tp: int, n_pred: int, n_gold: int) -> tuple[float, float, float]:
    precision, recall = _safe_div(tp, n_pred), _safe_div(tp, n_gold)
    denom = precision + recall
    f1 = 2 * precision * recall / denom if denom else 0.0  # same operation order as seqeval
    return precision, recall, f1


def span_f1(gold_tag_seqs: Sequence[Sequence[str]], pred_tag_seqs: Sequence[Sequence[str]]) -> dict:
    """Micro-averaged span precision / recall / F1 over a corpus of BIO (IOB2) tag sequences.

    Identical to `seqeval.metrics.precision_score / recall_score / f1_score` with their defaults
    (`mode=None`, `average="micro"`): the sequences are joined with an `O` between them, chunked
    with `get_spans`' conlleval rules, and a predicted span counts as correct only when its type,
    first and last token all equal those of a gold span. With no predicted spans precision is
    0 (likewise recall with no gold spans, and F1 when both are 0), as seqeval's default.

    Returns {"precision", "recall", "f1", "tp", "n_pred", "n_gold", "per_type"}, where
    `per_type[type] = {"precision", "recall", "f1", "support"}` (seqeval's `average=None`).
    Slot error as in the ATM paper is `1 - f1`.
    """
    gold, pred = _as_tag_lists(gold_tag_seqs), _as_tag_lists(pred_tag_seqs)
    _check_tag_lengths(gold, pred)
    # seqeval flattens with an "O" after every sentence and counts spans in flat coordinates
    gold_spans = set(_chunks([t for seq in gold for t in seq + ["O"]]))
    pred_spans = set(_chunks([t for seq in pred for t in seq + ["O"]]))
    tp_spans = gold_spans & pred_spans
    per_type = {}
    for type_ in sorted({s[0] for s in gold_spans | pred_spans}):
        n_g = sum(s[0] == type_ for s in gold_spans)
        p, r, f = _prf(sum(s[0] == type_ for s in tp_spans), sum(s[0] == type_ for s in pred_spans), n_g)
        per_type[type_] = {"precision": p, "recall": r, "f1": f, "support": n_g}
    precision, recall, f1 = _prf(len(tp_spans), len(pred_spans), len(gold_spans))
    return {"precision": precision, "recall": recall, "f1": f1, "tp": len(tp_spans),
            "n_pred": len(pred_spans), "n_gold": len(gold_spans), "per_type": per_type}


# --------------------------------------------------------------------------------------------
# Intent / frame / SemER
# --------------------------------------------------------------------------------------------

def _as_list(values: Iterable[Any]) -> list:
    return np.asarray(values).tolist() if isinstance(values, np.ndarray) else list(values)


def intent_accuracy(gold_intents: Sequence[Hashable], pred_intents: Sequence[Hashable]) -> float:
    """Fraction of utterances whose predicted intent equals the gold one (intent error = 1 - this)."""
    gold, pred = _as_list(gold_intents), _as_list(pred_intents)
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold intents but {len(pred)} predictions")
    if not gold:
        raise ValueError("intent_accuracy of an empty set")
    return sum(g == p for g, p in zip(gold, pred)) / len(gold)


def frame_exact_match(gold_intents: Sequence[Hashable], pred_intents: Sequence[Hashable],
                      gold_tag_seqs: Sequence[Sequence[str]], pred_tag_seqs: Sequence[Sequence[str]],
                      *, per_utterance: bool = False):
    """Fraction of utterances whose intent is right AND whose set of slot spans equals the gold set.

    Spans are compared as `(type, start, end)` from `get_spans`, so `I-X` vs `B-X` on the first
    token of a span makes no difference, but any missing, extra, mistyped or mis-bounded span does.
    With `per_utterance=True` returns the list of per-utterance booleans instead.
    """
    gi, pi = _as_list(gold_intents), _as_list(pred_intents)
    gold, pred = _as_tag_lists(gold_tag_seqs), _as_tag_lists(pred_tag_seqs)
    _check_tag_lengths(gold, pred)
    if not (len(gi) == len(pi) == len(gold)):
        raise ValueError(f"{len(gi)} gold intents, {len(pi)} predicted, {len(gold)} tag sequences")
    hits = [g_int == p_int and set(get_spans(g)) == set(get_spans(p))
            for g_int, p_int, g, p in zip(gi, pi, gold, pred)]
    if per_utterance:
        return hits
    if not hits:
        raise ValueError("frame_exact_match of an empty set")
    return sum(hits) / len(hits)


def _slot_keys(tags: list[str], tokens: Sequence[str] | None) -> list[tuple[str, Any]]:
    """Slots of one utterance as (type, key): key is the span, or the value text given `tokens`."""
    spans = get_spans(tags)
    if tokens is None:
        return [(t, (s, e)) for t, s, e in spans]
    return [(t, " ".join(str(w) for w in tokens[s:e + 1])) for t, s, e in spans]


def _semer_counts(gold_slots: list, pred_slots: list) -> tuple[int, int, int, int]:
    """(C, S, D, I) of one utterance: exact matches first, then per type S = min(#gold, #pred) left."""
    gold_left = collections.Counter(gold_slots)
    pred_left = collections.Counter(pred_slots)
    correct = gold_left & pred_left  # multiset: a slot matches at most once
    gold_left -= correct
    pred_left -= correct
    g_type = collections.Counter(t for t, _ in gold_left.elements())
    p_type = collections.Counter(t for t, _ in pred_left.elements())
    subs = sum(min(n, p_type[t]) for t, n in g_type.items())
    n_correct = sum(correct.values())
    return n_correct, subs, sum(g_type.values()) - subs, sum(p_type.values()) - subs


def semantic_error_rate(gold_intents: Sequence[Hashable] | None, pred_intents: Sequence[Hashable] | None,
                        gold_tag_seqs: Sequence[Sequence[str]], pred_tag_seqs: Sequence[Sequence[str]],
                        *, include_intent: bool = False,
                        tokens: Sequence[Sequence[str]] | None = None) -> dict:
    """Semantic error rate SemER = (S + D + I) / N_ref over slots, N_ref = C + S + D = # gold slots.

    Slots are the spans from `get_spans` of each utterance (`type`, span). Per utterance:
      1. C (correct): a predicted slot with the same type and the same span as a gold slot
         (one-to-one; these pairs are removed first).
      2. S (substitution): among the remaining slots, a predicted slot with the SAME TYPE as a
         remaining gold slot but a different span/value. Per type t, S_t = min(#gold_t, #pred_t)
         left after step 1 (the count does not depend on which of them are paired).
      3. D (deletion): each gold slot left unpaired: D_t = #gold_t - S_t.
      4. I (insertion): each predicted slot left unpaired: I_t = #pred_t - S_t.
    So a slot predicted on the right span with the WRONG type costs one D plus one I (there is no
    gold slot of its type to substitute), and a slot with the right type but wrong boundaries costs
    one S. Counts are summed over the corpus before dividing (a micro average).

    By default the intent is not counted (the MASSIVE / Alexa slot-level SemER; intent error is
    reported separately). With `include_intent=True` the intent is treated as one extra slot per
    utterance: N_ref gains 1 per utterance and a wrong intent is one substitution (a right one is
    one correct slot) -- the variant used when SemER is meant to summarise the whole frame.

    With `tokens` (the utterances' words, aligned with the tags) slots are compared by value,
    i.e. the span's text, instead of by position, so the same words tagged elsewhere still count
    as correct; without it (default) positions are compared.

    Returns {"semer", "S", "D", "I", "C", "n_ref"}. With N_ref = 0, SemER is 0.0 when there are no
    errors and inf otherwise.
    """
    gold, pred = _as_tag_lists(gold_tag_seqs), _as_tag_lists(pred_tag_seqs)
    _check_tag_lengths(gold, pred)
    if tokens is not None:
        tokens = [list(t) for t in tokens]
        if len(tokens) != len(gold) or any(len(w) != len(g) for w, g in zip(tokens, gold)):
            raise ValueError("tokens must align with the tag sequences")
    if include_intent:
        if gold_intents is None or pred_intents is None:
            raise ValueError("include_intent=True needs gold and predicted intents")
        gi, pi = _as_list(gold_intents), _as_list(pred_intents)
        if not (len(gi) == len(pi) == len(gold)):
            raise ValueError(f"{len(gi)} gold intents, {len(pi)} predicted, {len(gold)} tag sequences")
    c = s = d = ins = 0
    for n, (g, p) in enumerate(zip(gold, pred)):
        words = None if tokens is None else tokens[n]
        dc, ds, dd, di = _semer_counts(_slot_keys(g, words), _slot_keys(p, words))
        c, s, d, ins = c + dc, s + ds, d + dd, ins + di
        if include_intent:
            if gi[n] == pi[n]:
                c += 1
            else:
                s += 1
    n_ref = c + s + d
    errors = s + d + ins
    semer = errors / n_ref if n_ref else (0.0 if errors == 0 else float("inf"))
    return {"semer": semer, "S": s, "D": d, "I": ins, "C": c, "n_ref": n_ref}


def joint_nlu_metrics(gold_intents, pred_intents, gold_tag_seqs, pred_tag_seqs) -> dict:
    """The ATM paper's table for an intent + slot test set, all fractions."""
    slots = span_f1(gold_tag_seqs, pred_tag_seqs)
    intent_acc = intent_accuracy(gold_intents, pred_intents)
    return {
        "intent_acc": intent_acc,
        "intent_error": 1.0 - intent_acc,
        "slot_precision": slots["precision"],
        "slot_recall": slots["recall"],
        "slot_f1": slots["f1"],
        "slot_error": 1.0 - slots["f1"],
        "frame_exact_match": frame_exact_match(gold_intents, pred_intents, gold_tag_seqs, pred_tag_seqs),
        "semer": semantic_error_rate(gold_intents, pred_intents, gold_tag_seqs, pred_tag_seqs)["semer"],
        "semer_with_intent": semantic_error_rate(gold_intents, pred_intents, gold_tag_seqs, pred_tag_seqs,
                                                 include_intent=True)["semer"],
    }


# --------------------------------------------------------------------------------------------
# SQuAD v1.1 / v2.0
# --------------------------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)  # ASCII punctuation only, as the official scripts


def normalize_answer(s: str) -> str:
    """The official SQuAD normalisation: lower case, drop ASCII punctuation, drop the articles
    a/an/the (whole words), then collapse whitespace (in that order)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def squad_exact(prediction: str, gold: str) -> int:
    """1 when the normalised strings are equal, else 0 (same in v1.1 and v2.0)."""
    return int(normalize_answer(prediction) == normalize_answer(gold))


def squad_f1(prediction: str, gold: str, version: int = 2) -> float:
    """Bag-of-tokens F1 of the normalised answers.

    v2.0: when either side has no tokens (no-answer, or e.g. just "the"), F1 is 1 if both have
    none and 0 otherwise. v1.1: no such rule -- F1 is 0 whenever no token is shared.
    """
    pred_toks = normalize_answer(prediction).split()
    gold_toks = normalize_answer(gold).split()
    if version == 2 and (not pred_toks or not gold_toks):
        return float(pred_toks == gold_toks)
    num_same = sum((collections.Counter(pred_toks) & collections.Counter(gold_toks)).values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_toks)
    recall = num_same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: Sequence[str] | Mapping[Hashable, str],
                 gold_answers: Sequence[Sequence[str]] | Mapping[Hashable, Sequence[str]],
                 *, version: int = 2, na_probs: Sequence[float] | Mapping[Hashable, float] | None = None,
                 na_prob_thresh: float = 1.0) -> dict:
    """SQuAD exact match and F1, aggregated as the official evaluation scripts do (percent).

    `predictions[i]` is the predicted answer text ("" = no answer); `gold_answers[i]` the list of
    gold answer texts (both lists in the same order, or dicts keyed by question id; with dicts
    every gold id must have a prediction). Each question scores the max over its gold answers.

    version=1 (v1.1 script): golds used as given; an empty gold list scores 0.
    version=2 (v2.0 script): gold answers that normalise to "" are dropped; a question with no
    gold answer left is unanswerable and its only gold answer is "" -- so an empty prediction
    (or one that normalises to "", such as "The.") gets EM = F1 = 1 there, and any non-empty
    prediction 0; an empty prediction on an answerable question gets 0.
    Optional `na_probs` (v2 only): a question with na_prob > na_prob_thresh is treated as
    predicted no-answer (score 1 if unanswerable else 0), as the script's --na-prob-thresh.

    Returns {"exact", "f1", "total", "exact_scores", "f1_scores"} and, for version 2 when the
    subset is non-empty, "HasAns_exact", "HasAns_f1", "HasAns_total" and the "NoAns_" triple.
    """
    if version not in (1, 2):
        raise ValueError(f"version must be 1 or 2, got {version}")
    if isinstance(gold_answers, Mapping):
        keys = list(gold_answers)
        if not isinstance(predictions, Mapping):
            raise TypeError("with gold answers keyed by id, predictions must be a mapping too")
        missing = [k for k in keys if k not in predictions]
        if missing:
            raise ValueError(f"no prediction for {len(missing)} question(s), e.g. {missing[:3]}")
        golds = [list(gold_answers[k]) for k in keys]
        preds = [predictions[k] for k in keys]
        nas = None if na_probs is None else [na_probs[k] for k in keys]
    else:
        golds, preds = [list(g) for g in gold_answers], list(predictions)
        nas = None if na_probs is None else list(na_probs)
        if len(golds) != len(preds):
            raise ValueError(f"{len(golds)} gold answer lists but {len(preds)} predictions")
    if not golds:
        raise ValueError("squad_scores of an empty set")
    exact, f1, has_ans = [], [], []
    for n, (pred, answers) in enumerate(zip(preds, golds)):
        pred = "" if pred is None else str(pred)
        if version == 2:
            answers = [a for a in answers if normalize_answer(a)]
            has_ans.append(bool(answers))
            if not answers:
                answers = [""]
        em = max((squad_exact(pred, a) for a in answers), default=0)
        fs = max((squad_f1(pred, a, version) for a in answers), default=0.0)
        if version == 2 and nas is not None and nas[n] > na_prob_thresh:
            em = fs = float(not has_ans[-1])
        exact.append(float(em))
        f1.append(float(fs))
    out = {"exact": 100.0 * sum(exact) / len(exact), "f1": 100.0 * sum(f1) / len(f1), "total": len(exact),
           "exact_scores": exact, "f1_scores": f1}
    if version == 2:
        for name, want in (("HasAns", True), ("NoAns", False)):
            idx = [i for i, h in enumerate(has_ans) if h == want]
            if idx:
                out[f"{name}_exact"] = 100.0 * sum(exact[i] for i in idx) / len(idx)
                out[f"{name}_f1"] = 100.0 * sum(f1[i] for i in idx) / len(idx)
                out[f"{name}_total"] = len(idx)
    return out


# --------------------------------------------------------------------------------------------
# Accuracy per language
# --------------------------------------------------------------------------------------------

def accuracy_by_group(preds: Sequence[Hashable], golds: Sequence[Hashable], groups: Sequence[Hashable]) -> dict:
    """Accuracy per group (e.g. language) plus averages, for XNLI / MASSIVE tables.

    Returns {"per_group": {group: acc}, "counts": {group: n}, "macro": mean of the per-group
    accuracies (each language weighs the same, the usual XNLI "avg" column), "micro": accuracy
    over all examples}. Groups are listed in sorted order when sortable.
    """
    p, g, grp = _as_list(preds), _as_list(golds), _as_list(groups)
    if not (len(p) == len(g) == len(grp)):
        raise ValueError(f"{len(p)} predictions, {len(g)} golds, {len(grp)} groups")
    if not p:
        raise ValueError("accuracy_by_group of an empty set")
    hits: dict = collections.defaultdict(int)
    counts: dict = collections.defaultdict(int)
    for pi, gi, key in zip(p, g, grp):
        counts[key] += 1
        hits[key] += int(pi == gi)
    try:
        order = sorted(counts)
    except TypeError:
        order = list(counts)
    per_group = {k: hits[k] / counts[k] for k in order}
    return {"per_group": per_group, "counts": {k: counts[k] for k in order},
            "macro": sum(per_group.values()) / len(per_group), "micro": sum(hits.values()) / len(p)}
