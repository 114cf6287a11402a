"""Extractive QA: windows over long contexts map answers exactly, answers are read back across
windows (and "no answer" under SQuAD 2.0 rules), and a tiny model learns a synthetic SQuAD set."""
import json
import random

import jax
import ml_collections
import numpy as np
import pytest

from atm import train
from atm.data import labelled, qa, vocab as vocab_lib
from helpers import apply_overrides

RELATIONS = {"capital": ["paris", "lima", "oslo", "quito", "rome", "cairo"],
             "river": ["nile", "rhine", "volga", "amazon", "danube", "niger"],
             "king": ["arthur", "harald", "louis", "olaf", "edward", "henry"]}
FILLER = ["the weather was mild that year", "many people came to the market", "a long road led to the hills",
          "nobody remembered the old song", "the harbour was busy every morning"]


def synthetic_squad(n_questions: int, seed: int, unanswerable_share: float = 0.0) -> dict:
    """SQuAD-format data: a context of filler sentences with one fact ("the river is nile") at a
    random place; the question asks for the fact's relation ("what is the river ?"). Unanswerable
    ones ask for another relation (an empty answers list, as SQuAD 2.0)."""
    rng = random.Random(seed)
    paragraphs = []
    for q in range(n_questions):
        relation = rng.choice(list(RELATIONS))
        sentences = [rng.choice(FILLER) for _ in range(rng.randint(3, 8))]
        sentences.insert(rng.randint(0, len(sentences)), f"the {relation} is {rng.choice(RELATIONS[relation])}")
        context = " . ".join(sentences) + " ."
        asked, answers = relation, []
        if rng.random() < unanswerable_share:
            asked = rng.choice([r for r in RELATIONS if r != relation])
        else:
            start = context.index(f"the {relation} is ") + len(f"the {relation} is ")
            answers = [{"text": context[start:].split(" ")[0], "answer_start": start}]
        paragraphs.append({"context": context, "qas": [{"id": str(q), "question": f"what is the {asked} ?",
                                                         "answers": answers}]})
    return {"version": "synthetic", "data": [{"title": "synthetic", "paragraphs": paragraphs}]}


def write_data_dir(root, n_questions=300, unanswerable_share=0.0):
    """A data directory holding the one file the tydiqa_goldp_en task reads (train; held out 20%)."""
    folder = root / "tydiqa_goldp"
    folder.mkdir(parents=True)
    (folder / "tydiqa.goldp.en.train.json").write_text(json.dumps(synthetic_squad(n_questions, 0, unanswerable_share)))
    return root


def qa_finetune_config(data_dir, **overrides):
    from atm.config import default_config
    c = default_config("finetune")
    c.model.update(num_layers=2, hidden_size=64, num_heads=4, ffn_size=128, vocab_size=160, max_positions=64,
                   hidden_dropout=0.0)
    c.data.update(data_dir=str(data_dir), vocab_size=160, seq_len=40)
    c.finetune.update(task="tydiqa_goldp_en", doc_stride=12, max_query_tokens=12)
    c.train.update(steps=400, batch_size=16, log_every=100, eval_every=400, eval_batches=-1)
    c.optimizer.update(learning_rate=3e-3, warmup_steps=20)
    c.checkpoint.every = 400
    return apply_overrides(c, overrides)


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    texts = []
    for paragraph in synthetic_squad(200, 1)["data"][0]["paragraphs"]:
        texts += [paragraph["context"], paragraph["qas"][0]["question"]]
    prefix = tmp_path_factory.mktemp("vocab") / "qa"
    return vocab_lib.train_sentencepiece(texts, 160, str(prefix))


def test_windows_overlap_and_map_answers_back_exactly(vocab):
    seq_len, stride = 24, 5
    multi_window = 0
    for paragraph in synthetic_squad(60, 2)["data"][0]["paragraphs"]:
        qa_row = paragraph["qas"][0]
        raw = {"id": qa_row["id"], "question": qa_row["question"], "context": paragraph["context"],
               "answers": [{"text": a["text"], "start": a["answer_start"]} for a in qa_row["answers"]]}
        question, windows = qa.question_windows(raw, 0, vocab, seq_len, stride, max_query_tokens=10)
        multi_window += len(windows) > 1
        covered = set()
        for i, w in enumerate(windows):
            assert len(w["input_ids"]) <= seq_len
            assert w["input_ids"][0] == vocab.cls_id and w["input_ids"][-1] == vocab.sep_id
            covered.update(range(w["context_start"], w["context_start"] + w["context_length"]))
            if i:  # windows start `stride` context tokens apart
                assert w["context_start"] - windows[i - 1]["context_start"] == stride
            if w["start_position"]:  # the labels point at the answer's tokens
                first = w["context_start"] + w["start_position"] - w["context_offset"]
                last = w["context_start"] + w["end_position"] - w["context_offset"]
                text = question.context[question.char_spans[first][0]:question.char_spans[last][1]]
                assert text == question.answers[0]
        assert covered == set(range(len(question.char_spans)))  # every context token is in a window
        assert any(w["start_position"] for w in windows)  # the answer lies whole in some window
    assert multi_window > 30


def test_best_answer_reads_across_windows_and_no_answer():
    context = "alpha beta gamma delta"
    question = qa.Question("q", context, ["gamma delta"], [(0, 5), (6, 10), (11, 16), (17, 22)])
    # Two windows of 3 positions: [CLS] + two context tokens each, starting at tokens 0 and 2.
    windows = [{"context_start": 0, "context_offset": 1, "context_length": 2},
               {"context_start": 2, "context_offset": 1, "context_length": 2}]
    starts = [np.array([0.0, 1.0, 0.5]), np.array([0.0, 3.0, 0.0])]
    ends = [np.array([0.0, 0.2, 1.0]), np.array([0.0, 0.0, 2.0])]
    assert qa.best_answer(question, windows, starts, ends) == "gamma delta"  # window 2: 3 + 2
    assert qa.best_answer(question, windows, starts, ends, max_answer_tokens=1) == "gamma"  # 3 + 0
    # [CLS] scores 6 in both windows: only SQuAD 2.0 rules may answer "nothing".
    cls_high = [np.array([3.0, 1.0, 0.5]), np.array([3.0, 3.0, 0.0])]
    ends_high = [np.array([3.0, 0.2, 1.0]), np.array([3.0, 0.0, 2.0])]
    assert qa.best_answer(question, windows, cls_high, ends_high, allow_no_answer=True) == ""
    assert qa.best_answer(question, windows, cls_high, ends_high) == "gamma delta"


def test_seq_len_too_short_for_the_question_is_a_clear_error(vocab):
    raw = {"id": "0", "question": "what is the river ?", "context": "the river is nile .", "answers": []}
    with pytest.raises(ValueError, match="config.data.seq_len=4"):
        qa.question_windows(raw, 0, vocab, 4, 2, max_query_tokens=10)


def test_holdout_split_of_a_train_only_qa_task(tmp_path, vocab):
    data_dir = write_data_dir(tmp_path, n_questions=200)
    ft = ml_collections.ConfigDict({"task": "tydiqa_goldp_en", "bio_folder": "", "holdout_fraction": 0.2,
                                    "holdout_seed": 0, "doc_stride": 12, "max_query_tokens": 12,
                                    "unknown_labels": "error"})
    parts = {s: labelled.load_split(ft, s, vocab, str(data_dir), False, 40) for s in ("train", "validation")}
    ids = {s: {q.id for q in p.questions} for s, p in parts.items()}
    assert not ids["train"] & ids["validation"] and len(ids["train"]) + len(ids["validation"]) == 200
    expected = {str(i) for i in range(200) if labelled.in_holdout(i, 0.2, 0)}
    assert ids["validation"] == expected


# Floors: well above chance (v2: answering "" everywhere scores F1 = the unanswerable share, 0.3).
@pytest.mark.parametrize("squad_version,unanswerable,f1_floor", [(1, 0.0, 0.6), (2, 0.3, 0.4)])
def test_tiny_model_learns_synthetic_squad(tmp_path, squad_version, unanswerable, f1_floor):
    data_dir = write_data_dir(tmp_path / "data", unanswerable_share=unanswerable)
    config = qa_finetune_config(data_dir, **{"finetune.squad_version": squad_version})
    built = train.build(config, str(tmp_path), devices=jax.devices()[:1])
    trainer, train_data, eval_data = built.trainer, built.train_data, built.eval_data
    assert len(train_data.split.examples) > len(train_data.split.questions)  # long contexts: several windows
    state = trainer.init_state()
    before = train.evaluate(trainer, state.params, eval_data, -1)
    for step in range(config.train.steps):
        state, _ = trainer.train_step(state, trainer.global_batch(train_data.batch(step)))
    after = train.evaluate(trainer, state.params, eval_data, -1)
    assert after["eval_loss"] < 0.3 * before["eval_loss"]
    assert before["eval_f1"] < 0.2 and after["eval_f1"] > f1_floor
