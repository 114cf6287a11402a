"""atm.nlu_metrics: span F1 against seqeval itself; SQuAD, SemER, frame EM, accuracy by hand."""
import random
import warnings

import numpy as np
import pytest

from atm import nlu_metrics as M

seqeval_metrics = pytest.importorskip("seqeval.metrics")
from seqeval.metrics.sequence_labeling import get_entities, precision_recall_fscore_support  # noqa: E402

TAGS = ["O", "B-A", "I-A", "B-B", "I-B", "B-C", "I-C"]


def _seqeval(gold, pred):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seqeval's UndefinedMetricWarning on zero division
        return {
            "precision": seqeval_metrics.precision_score(gold, pred),
            "recall": seqeval_metrics.recall_score(gold, pred),
            "f1": seqeval_metrics.f1_score(gold, pred),
        }


def _assert_same_as_seqeval(gold, pred):
    ours = M.span_f1(gold, pred)
    ref = _seqeval(gold, pred)
    for key in ("precision", "recall", "f1"):
        assert ours[key] == ref[key], (key, ours[key], ref[key], gold, pred)
    return ours


def _random_seq(rng, n):
    kind = rng.random()
    if kind < 0.1:
        return ["O"] * n  # all O
    if kind < 0.2:  # IOB2-valid sequence with adjacent spans of the same type
        out, i = [], 0
        while i < n:
            if rng.random() < 0.5:
                out.append("O")
                i += 1
            else:
                t = rng.choice("ABC")
                span = [f"B-{t}"] + [f"I-{t}"] * rng.randint(0, 2)
                out.extend(span[: n - i])
                i += len(span)
        return out
    return [rng.choice(TAGS) for _ in range(n)]  # anything: I- without B-, type changes, ...


def _perturb(rng, gold):
    kind = rng.random()
    if kind < 0.1:
        return ["O"] * len(gold)  # empty prediction
    if kind < 0.2:
        return list(gold)  # perfect
    if kind < 0.3:
        return [rng.choice(TAGS) for _ in gold]  # unrelated
    out = list(gold)
    for i in range(len(out)):
        if rng.random() < 0.25:
            out[i] = rng.choice(TAGS)
    return out


def _random_corpus(seed, n_seqs=500):
    rng = random.Random(seed)
    gold = [_random_seq(rng, rng.randint(0, 12)) for _ in range(n_seqs)]
    pred = [_perturb(rng, g) for g in gold]
    return gold, pred


def test_span_f1_matches_seqeval_random():
    gold, pred = _random_corpus(0)
    whole = _assert_same_as_seqeval(gold, pred)
    assert 0.2 < whole["f1"] < 0.9  # a non-trivial corpus
    # 50 small corpora give a spread of scores, including 0 and 1
    f1s = set()
    for i in range(0, len(gold), 10):
        f1s.add(_assert_same_as_seqeval(gold[i:i + 10], pred[i:i + 10])["f1"])
    assert len(f1s) > 10
    # every single sentence chunks as seqeval's get_entities
    for seq in gold + pred:
        assert M.get_spans(seq) == get_entities(seq), seq


def test_span_f1_per_type_matches_seqeval():
    gold, pred = _random_corpus(1, n_seqs=200)
    ours = M.span_f1(gold, pred)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p, r, f, support = precision_recall_fscore_support(gold, pred, average=None)
    assert list(ours["per_type"]) == ["A", "B", "C"]
    for i, t in enumerate(["A", "B", "C"]):
        row = ours["per_type"][t]
        assert (row["precision"], row["recall"], row["f1"], row["support"]) == (p[i], r[i], f[i], support[i])
    assert ours["n_gold"] == sum(support)


@pytest.mark.parametrize("gold,pred", [
    ([["B-A", "I-A", "O"]], [["B-A", "I-A", "O"]]),                    # perfect
    ([["I-A", "I-A", "O"]], [["B-A", "I-A", "O"]]),                    # I- without B- starts a chunk
    ([["B-A", "I-B", "O"]], [["B-A", "B-B", "O"]]),                    # type change ends a chunk
    ([["B-A", "B-A", "I-A"]], [["B-A", "I-A", "I-A"]]),                # adjacent spans vs one long span
    ([["O", "O"]], [["O", "O"]]),                                      # nothing at all
    ([["O", "O"]], [["B-A", "O"]]),                                    # no gold spans
    ([["B-A", "O"]], [["O", "O"]]),                                    # empty prediction
    ([["B-A"], ["I-A"]], [["B-A"], ["B-A"]]),                          # spans never cross sentences
    ([["B-A", "I-A"], []], [["B-A", "O"], []]),                        # empty sentence
    ([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "B-ORG"]]),
    ([["B-A-x", "I-A-x", "B", "I"]], [["B-A-x", "I-A-y", "B", "B"]]),  # hyphenated and bare tags
    ([["S-A", "B-B", "E-B", "I-C"]], [["S-A", "B-B", "I-B", "E-C"]]),  # IOBES is handled too
    ([["O", "I", "O", "E"], ["I", "O"]], [["B", "I", "O", "S"], ["O", "I"]]),  # bare I-/E- after O
])
def test_span_f1_hand_cases(gold, pred):
    _assert_same_as_seqeval(gold, pred)
    for seq in gold + pred:
        assert M.get_spans(seq) == get_entities(seq), seq


def test_span_f1_hand_values():
    out = M.span_f1([["B-A", "I-A", "O", "B-B"], ["I-C", "O"]], [["B-A", "I-A", "O", "O"], ["B-C", "B-C"]])
    # gold: A(0,1) B(3,3) C(0,0); pred: A(0,1) C(0,0) C(1,1) -> tp 2
    assert (out["tp"], out["n_pred"], out["n_gold"]) == (2, 3, 3)
    assert out["precision"] == out["recall"] == out["f1"] == pytest.approx(2 / 3)
    assert M.get_spans(["I-A", "I-A", "I-B", "O", "B-A", "B-A"]) == [("A", 0, 1), ("B", 2, 2), ("A", 4, 4), ("A", 5, 5)]
    empty = M.span_f1([["O"]], [["O"]])
    assert (empty["precision"], empty["recall"], empty["f1"]) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        M.span_f1([["O", "O"]], [["O"]])
    with pytest.raises(TypeError):
        M.span_f1(["B-A", "O"], ["B-A", "O"])  # a flat list, not a list of sequences


# ---------------------------------------------------------------------------------------------
# intent / frame / SemER

def test_intent_accuracy():
    assert M.intent_accuracy(["a", "b", "c", "d"], ["a", "x", "c", "y"]) == 0.5
    assert M.intent_accuracy(np.array([1, 2, 3]), np.array([1, 2, 0])) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        M.intent_accuracy(["a"], ["a", "b"])


def test_frame_exact_match():
    gold_int = ["alarm", "alarm", "play", "play"]
    pred_int = ["alarm", "alarm", "play", "weather"]
    gold = [["O", "B-time", "I-time"], ["O", "B-time", "I-time"], ["B-song", "O"], ["O", "O"]]
    pred = [["O", "I-time", "I-time"],   # same span (I- opens it): a hit
            ["O", "B-time", "O"],        # wrong boundary: miss
            ["B-song", "O"],             # hit
            ["O", "O"]]                  # slots right (none) but intent wrong: miss
    assert M.frame_exact_match(gold_int, pred_int, gold, pred, per_utterance=True) == [True, False, True, False]
    assert M.frame_exact_match(gold_int, pred_int, gold, pred) == 0.5


SEMER_GOLD = [
    ["O", "O", "O", "O", "B-time", "I-time"],  # wake me up at five am
    ["B-date", "O", "B-place"],
    ["O", "O"],
    ["B-song", "I-song"],
    ["B-a", "O", "B-a", "O", "O"],
]
SEMER_PRED = [
    ["O", "O", "O", "O", "B-time", "O"],       # right type, wrong span: S
    ["B-date", "O", "O"],                      # C + D
    ["B-x", "O"],                              # I
    ["B-artist", "I-artist"],                  # right span, wrong type: D + I
    ["B-a", "O", "O", "B-a", "B-a"],           # C, then a(2) vs a(3), a(4): S + I
]


def test_semer_hand_counts():
    out = M.semantic_error_rate(None, None, SEMER_GOLD, SEMER_PRED)
    assert (out["C"], out["S"], out["D"], out["I"], out["n_ref"]) == (2, 2, 2, 3, 6)
    assert out["semer"] == pytest.approx(7 / 6)  # can exceed 1 through insertions
    # per utterance
    expect = [(0, 1, 0, 0), (1, 0, 1, 0), (0, 0, 0, 1), (0, 0, 1, 1), (1, 1, 0, 1)]
    for g, p, (c, s, d, i) in zip(SEMER_GOLD, SEMER_PRED, expect):
        one = M.semantic_error_rate(None, None, [g], [p])
        assert (one["C"], one["S"], one["D"], one["I"]) == (c, s, d, i), (g, p)


def test_semer_with_intent_and_values():
    gold_int, pred_int = ["a", "b", "c", "d", "e"], ["a", "x", "c", "d", "y"]
    out = M.semantic_error_rate(gold_int, pred_int, SEMER_GOLD, SEMER_PRED, include_intent=True)
    assert (out["C"], out["S"], out["D"], out["I"], out["n_ref"]) == (5, 4, 2, 3, 11)
    assert out["semer"] == pytest.approx(9 / 11)
    # default ignores the intent even when given
    assert M.semantic_error_rate(gold_int, pred_int, SEMER_GOLD, SEMER_PRED)["semer"] == pytest.approx(7 / 6)
    # by position "two" (0) vs "two" (2) is a substitution; by value it is correct
    tokens = [["two", "and", "two"]]
    g, p = [["B-n", "O", "O"]], [["O", "O", "B-n"]]
    assert M.semantic_error_rate(None, None, g, p)["S"] == 1
    by_value = M.semantic_error_rate(None, None, g, p, tokens=tokens)
    assert (by_value["C"], by_value["semer"]) == (1, 0.0)
    # nothing to find: 0 when nothing predicted, inf otherwise
    assert M.semantic_error_rate(None, None, [["O"]], [["O"]])["semer"] == 0.0
    assert M.semantic_error_rate(None, None, [["O"]], [["B-a"]])["semer"] == float("inf")
    with pytest.raises(ValueError):
        M.semantic_error_rate(None, None, [["O"]], [["O"]], include_intent=True)


def test_joint_nlu_metrics():
    gold_int, pred_int = ["a", "b", "c", "d", "e"], ["a", "x", "c", "d", "y"]
    out = M.joint_nlu_metrics(gold_int, pred_int, SEMER_GOLD, SEMER_PRED)
    assert out["intent_acc"] == pytest.approx(0.6) and out["intent_error"] == pytest.approx(0.4)
    assert out["slot_f1"] == pytest.approx(_seqeval(SEMER_GOLD, SEMER_PRED)["f1"])
    assert out["slot_error"] == pytest.approx(1 - out["slot_f1"])
    assert out["frame_exact_match"] == 0.0
    assert out["semer"] == pytest.approx(7 / 6) and out["semer_with_intent"] == pytest.approx(9 / 11)


# ---------------------------------------------------------------------------------------------
# SQuAD

def test_normalize_answer():
    assert M.normalize_answer("The  Quick, brown-fox!") == "quick brownfox"  # punctuation glues words
    assert M.normalize_answer("An apple a day") == "apple day"
    assert M.normalize_answer("theater Anatomy") == "theater anatomy"  # articles only as whole words
    assert M.normalize_answer("  New\tYork\n") == "new york"
    assert M.normalize_answer("A") == "" and M.normalize_answer("the.") == ""
    assert M.normalize_answer("«Café»") == "«café»"  # only ASCII punctuation is removed


def test_squad_pairwise():
    assert M.squad_exact("the Denver Broncos!", "denver broncos") == 1
    assert M.squad_f1("the Denver Broncos team", "Denver Broncos") == pytest.approx(0.8)
    assert M.squad_f1("x x y", "x y y") == pytest.approx(2 / 3)  # token multisets
    assert M.squad_f1("Paris", "«Paris»") == 0.0
    # no-answer rule differs between the scripts
    assert M.squad_f1("", "", version=2) == 1.0 and M.squad_f1("", "", version=1) == 0.0
    assert M.squad_f1("the", "", version=2) == 1.0
    assert M.squad_f1("", "Paris", version=2) == 0.0 and M.squad_f1("Paris", "", version=2) == 0.0


def test_squad_v2_scores():
    preds = ["Denver Broncos", "the Denver Broncos team", "", "Paris", "", "The.", "London"]
    golds = [
        ["Broncos", "Denver Broncos", "The Denver Broncos"],  # EM 1, F1 1 via the max
        ["Denver Broncos", "Broncos"],                        # EM 0, F1 max(0.8, 0.5)
        [],                                                   # no answer, predicted none: 1, 1
        [],                                                   # no answer, predicted one: 0, 0
        ["Paris"],                                            # answer, predicted none: 0, 0
        ["the", "a"],                                         # golds normalise to "": no answer; "The." is "": 1, 1
        ["London, UK", "london"],                             # EM 1 via the second
    ]
    out = M.squad_scores(preds, golds)
    assert out["exact_scores"] == [1, 0, 1, 0, 0, 1, 1]
    assert out["f1_scores"] == pytest.approx([1, 0.8, 1, 0, 0, 1, 1])
    assert out["exact"] == pytest.approx(100 * 4 / 7) and out["f1"] == pytest.approx(100 * 4.8 / 7)
    assert out["total"] == 7
    assert out["HasAns_total"] == 4 and out["NoAns_total"] == 3
    assert out["HasAns_exact"] == pytest.approx(50.0) and out["HasAns_f1"] == pytest.approx(100 * 2.8 / 4)
    assert out["NoAns_exact"] == pytest.approx(100 * 2 / 3) and out["NoAns_f1"] == pytest.approx(100 * 2 / 3)
    # keyed by id, and the no-answer threshold: q4 predicted no-answer -> now right
    ids = [f"q{i}" for i in range(7)]
    na = {k: 0.0 for k in ids} | {"q3": 0.9, "q0": 0.9}
    keyed = M.squad_scores(dict(zip(ids, preds)), dict(zip(ids, golds)), na_probs=na, na_prob_thresh=0.5)
    assert keyed["exact_scores"] == [0, 0, 1, 1, 0, 1, 1]
    with pytest.raises(ValueError):
        M.squad_scores({"q0": "x"}, {"q0": ["x"], "q1": ["y"]})


def test_squad_v1_scores():
    preds = ["Denver Broncos", "the Denver Broncos team", "", "anything"]
    golds = [["Broncos", "Denver Broncos"], ["Denver Broncos"], [""], ["the"]]
    out = M.squad_scores(preds, golds, version=1)
    # v1.1: "" vs "" is an exact match but F1 0 (no shared token); "anything" vs "the" -> 0
    assert out["exact_scores"] == [1, 0, 1, 0]
    assert out["f1_scores"] == pytest.approx([1, 0.8, 0, 0])
    assert out["exact"] == pytest.approx(50.0) and out["f1"] == pytest.approx(45.0)
    assert "HasAns_exact" not in out


# ---------------------------------------------------------------------------------------------
# accuracy by language

def test_accuracy_by_group():
    out = M.accuracy_by_group([1, 0, 1, 1, 2], [1, 1, 1, 1, 2], ["en", "en", "de", "sw", "sw"])
    assert out["per_group"] == {"de": 1.0, "en": 0.5, "sw": 1.0}
    assert list(out["per_group"]) == ["de", "en", "sw"]
    assert out["counts"] == {"de": 1, "en": 2, "sw": 2}
    assert out["macro"] == pytest.approx(2.5 / 3) and out["micro"] == pytest.approx(4 / 5)
    arr = M.accuracy_by_group(np.array(["e", "n"]), np.array(["e", "c"]), np.array(["fr", "fr"]))
    assert arr["per_group"] == {"fr": 0.5} and arr["macro"] == 0.5
    with pytest.raises(ValueError):
        M.accuracy_by_group([1], [1, 2], ["en"])
