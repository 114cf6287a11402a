"""seqio tasks and mixtures over local files, temperature rates, and `python -m atm.data`.

The embedded tests write a miniature data directory (MASSIVE jsonl, a BIO folder, ATIS with
its label lists, a text file) into tmp_path; the real-data tests use the `data_dir` fixture."""
import json
import os
import re

import pytest

from atm.data import labelled
from atm.data import __main__ as cli
from atm.data import synthetic, tasks
from atm.data.readers import IGNORE_INDEX
from atm.data.vocab import SentencePieceVocabulary, train_sentencepiece

MASSIVE_ROWS = [  # (partition, intent, annot_utt)
    ("train", "alarm_set", "wake me at [time : five am] [date : tomorrow]"),
    ("train", "weather_query", "what's the weather in [place_name : berlin]"),
    ("train", "play_music", "play [music_genre : jazz] in the kitchen"),
    ("dev", "alarm_set", "set an alarm for [time : half past six]"),
    ("dev", "weather_query", "will it rain [date : today] in [place_name : paris]"),
    ("test", "play_music", "play some music"),
]
PL_BIO = {  # split -> (seq.in, seq.out, label) lines; slot names from the MASSIVE inventory above
    "train": [("obudź mnie o piątej rano", "O O O B-time I-time", "alarm_set"),
              ("pogoda w berlinie", "O O B-place_name", "weather_query"),
              ("zagraj jazz", "O B-music_genre", "play_music"),
              ("jaka pogoda jutro", "O O B-date", "weather_query")],
    "dev": [("zagraj muzykę", "O O", "play_music")],
    "test": [("pogoda dzisiaj", "O B-date", "weather_query")],
}
ATIS = {
    "train": [("show flights from boston to denver", "O O O B-fromloc.city_name O B-toloc.city_name", "atis_flight"),
              ("fares to dallas", "O O B-toloc.city_name", "atis_airfare")],
    "dev": [("flights to boston", "O O B-toloc.city_name", "atis_flight")],
    "test": [("fares and flights to denver", "O O O O B-toloc.city_name", "atis_airfare#atis_flight")],
}


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _utt(annot):
    return re.sub(r"\[[^\]]+? : ([^\]]*)\]", r"\1", annot)


def make_data_dir(root):
    lines = [json.dumps({"id": str(i), "locale": "en-US", "partition": p, "scenario": intent.split("_")[0],
                         "intent": intent, "utt": _utt(annot), "annot_utt": annot, "worker_id": "0"})
             for i, (p, intent, annot) in enumerate(MASSIVE_ROWS)]
    _write(os.path.join(root, "massive", "data", "en-US.jsonl"), "\n".join(lines) + "\n")
    for folder, data in (("massive/pl-PL_bio", PL_BIO), ("atis", ATIS)):
        for split, rows in data.items():
            for i, name in enumerate(("seq.in", "seq.out", "label")):
                _write(os.path.join(root, folder, split, name), "".join(r[i] + "\n" for r in rows))
    _write(os.path.join(root, "atis", "intent_label.txt"), "UNK\natis_airfare\natis_flight\n")
    _write(os.path.join(root, "atis", "slot_label.txt"),
           "PAD\nUNK\nO\nB-fromloc.city_name\nB-toloc.city_name\n")
    _write(os.path.join(root, "mlm_text", "wikiann_sentences", "en.txt"), "Born in 1990 , he moved to Paris .\n\nHi!\n")
    return str(root)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(data dir, vocab path) of the embedded miniature data set."""
    root = make_data_dir(tmp_path_factory.mktemp("data"))
    texts = synthetic.utterances(1500, seed=0, languages=("en",)) + [_utt(a) for _, _, a in MASSIVE_ROWS]
    texts += [r[0] for rows in list(PL_BIO.values()) + list(ATIS.values()) for r in rows] * 5
    vocab = train_sentencepiece(texts, 300, str(tmp_path_factory.mktemp("vocab") / "sp"))
    return root, vocab.path


# ------------------------------------------------------------------------- no TF needed
def test_data_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("ATM_DATA_DIR", raising=False)
    assert tasks.data_dir() == os.path.abspath(os.path.join(tasks.REPO_ROOT, "..", "shared", "data"))
    monkeypatch.setenv("ATM_DATA_DIR", str(tmp_path))
    assert tasks.data_dir() == str(tmp_path) and tasks.data_dir("/x") == "/x"


def test_registry_names_are_valid_and_splits_known():
    # 3 MASSIVE locales x (labelled, text) + pl-PL + ATIS + 15 XNLI + SST-2 + CoNLL + 9 PAN-X + 9 TyDi + 9 x 2 mlm_text
    assert len(tasks.TASKS) == 61 and len(tasks.MIXTURES) >= 7
    for spec in tasks.task_specs():
        assert re.fullmatch(r"[a-z0-9_]+", spec.name) and spec.kind in tasks.KINDS
        assert set(spec.splits) <= {"train", "validation", "test", "test_unlabelled", "validation_no_answers"}
    for mixture in tasks.MIXTURES.values():
        assert all(t in tasks.TASKS or t in tasks.MIXTURES for t in mixture.tasks)
    with pytest.raises(KeyError, match="did you mean massive_en_us"):
        tasks.get_spec("massive_en_uss")


def test_raw_examples_labels_and_tokenization(tiny):
    root, vocab_path = tiny
    vocab = SentencePieceVocabulary(vocab_path)
    labels = tasks.label_inventory("massive_en_us", root)
    assert labels["intent"] == ("alarm_set", "play_music", "weather_query")
    assert labels["slot"] == ("O", "B-date", "I-date", "B-music_genre", "I-music_genre", "B-place_name",
                              "I-place_name", "B-time", "I-time")
    assert tasks.label_inventory("massive_pl_pl", root) == labels  # one inventory for the MASSIVE family
    [raw, _] = list(tasks.raw_examples("massive_en_us", "validation", root))
    assert raw["text"] == "set an alarm for half past six" and raw["word_tags"][-3:] == ["B-time", "I-time", "I-time"]
    features = tasks.tokenize_example("massive_en_us", raw, vocab, labels)
    assert features["input_ids"] == vocab.encode(raw["text"]) and features["intent"] == 0
    first = [t for t in range(len(features["word_ids"])) if t == 0 or features["word_ids"][t] != features["word_ids"][t - 1]]
    assert [features["slot_labels"][t] for t in first] == [labels["slot"].index(x) for x in raw["word_tags"]]
    assert all(features["slot_labels"][t] == IGNORE_INDEX for t in range(len(features["word_ids"])) if t not in first)
    # ATIS: the label lists come from its files; an unseen label is an error unless mapped to UNK on request
    # (the JointBERT convention, config.finetune.unknown_labels="unk"), counted
    [atis] = list(tasks.raw_examples("atis", "test", root))
    with pytest.raises(ValueError, match="'atis_airfare#atis_flight' is not in the label inventory"):
        tasks.tokenize_example("atis", atis, vocab, root=root)
    counts = {}
    [mapped] = labelled.check_labels([atis], tasks.label_inventory("atis", root), "intent_slots", "unk", False, counts)
    assert tasks.tokenize_example("atis", mapped, vocab, root=root)["intent"] == 0 and counts["mapped_to_unk"] == 1
    # spoken-form text tasks
    assert [r["text"] for r in tasks.raw_examples("mlm_text_en_spoken", "train", root)] == [
        "born in nineteen ninety he moved to paris", "hi"]
    assert [r["text"] for r in tasks.raw_examples("mlm_text_en", "train", root)][1] == "Hi!"


def test_counts_and_mixture_rates(tiny):
    root, _ = tiny
    assert [tasks.num_examples("massive_en_us", s, root) for s in ("train", "validation", "test")] == [3, 2, 1]
    assert tasks.num_examples("massive_pl_pl", "train", root) == 4
    with pytest.raises(FileNotFoundError, match=r"task massive_de_de, split train .*ATM_DATA_DIR.*de-DE.jsonl"):
        tasks.num_examples("massive_de_de", "train", root)


def test_mixture_rates_on_real_data(data_dir):
    rates = tasks.mixture_rates("mlm_text", data_dir)
    sizes = {f"mlm_text_{x}": n for x, n in zip(tasks.MLM_LANGUAGES, (20000,) * 7 + (5000, 1000))}
    expected = {k: n ** 0.3 / sum(m ** 0.3 for m in sizes.values()) for k, n in sizes.items()}
    assert rates == pytest.approx(expected)
    assert rates["mlm_text_sw"] == pytest.approx(0.05046, abs=1e-5)  # proportional: 1000 / 146000 = 0.0068
    massive = tasks.mixture_rates("massive", data_dir)
    assert massive["massive_en_us"] / massive["massive_de_de"] == pytest.approx((11514 / 3468) ** 0.3)
    assert tasks.mixture_rates("mlm_text_spoken_written", data_dir) == {"mlm_text_spoken": 0.7, "mlm_text": 0.3}


def test_every_registered_file_exists_in_the_real_data(data_dir):
    missing = [(spec.name, s, spec.files(s, data_dir)) for spec in tasks.task_specs() for s in spec.splits
               if not os.path.exists(spec.files(s, data_dir))]
    assert missing == []


# ----------------------------------------------------------------------------- seqio
@pytest.fixture(scope="module")
def seqio_tiny(tiny):
    import seqio
    root, vocab_path = tiny
    names = tasks.register(vocab_path, root, tasks=["massive_en_us", "massive_pl_pl", "massive_text_en_us", "atis"])
    assert names == ["atis", "massive_en_us", "massive_pl_pl", "massive_text_en_us"]  # no predefined mixture complete
    return seqio, root, vocab_path


def test_seqio_task_examples_match_the_python_path(seqio_tiny):
    seqio, root, vocab_path = seqio_tiny
    vocab = SentencePieceVocabulary(vocab_path)
    task = seqio.get_mixture_or_task("massive_en_us")
    assert task.num_input_examples("train") == 3
    examples = list(task.get_dataset(split="validation", shuffle=False, sequence_length=None).as_numpy_iterator())
    raws = list(tasks.raw_examples("massive_en_us", "validation", root))
    assert len(examples) == 2
    for ex, raw in zip(examples, raws):
        expected = tasks.tokenize_example("massive_en_us", raw, vocab, root=root)
        assert {k: ex[k].tolist() for k in expected} == expected
        assert ex["text"].decode() == raw["text"] and ex["intent_name"].decode() == raw["intent"]
    ex = next(seqio.get_mixture_or_task("massive_pl_pl").get_dataset(split="train", shuffle=False).as_numpy_iterator())
    assert [w.decode() for w in ex["words"]] == "obudź mnie o piątej rano".split()
    assert ex["intent"] == 0 and ex["slot_labels"][ex["slot_labels"] != IGNORE_INDEX].tolist() == [0, 0, 0, 7, 8]


def test_seqio_mixtures_temperature_and_explicit_rates(seqio_tiny):
    seqio, root, _ = seqio_tiny
    mixture = tasks.register_mixture("tiny_massive", ["massive_en_us", "massive_pl_pl"], alpha=0.3, root=root)
    q_en = 3 ** 0.3 / (3 ** 0.3 + 4 ** 0.3)
    rates = {t.name: mixture.get_rate(t) / mixture.total_rate for t in mixture.tasks}
    assert rates == pytest.approx({"massive_en_us": q_en, "massive_pl_pl": 1 - q_en})
    explicit = tasks.register_mixture("tiny_explicit", ["massive_en_us", "massive_pl_pl"],
                                      rates={"massive_en_us": 3, "massive_pl_pl": 1}, root=root)
    assert {t.name: explicit.get_rate(t) / explicit.total_rate for t in explicit.tasks} == {
        "massive_en_us": 0.75, "massive_pl_pl": 0.25}
    lengths = {"input_ids": 16, "slot_labels": 16, "word_ids": 16}
    ds = mixture.get_dataset(lengths, split="train", shuffle=True, seed=0, num_epochs=None)
    drawn = [tuple(x["input_ids"].tolist()) for x in ds.take(40).as_numpy_iterator()]
    en_ids = {tuple(x["input_ids"].tolist()) for x in seqio.get_mixture_or_task("massive_en_us").get_dataset(
        lengths, split="train", shuffle=False).as_numpy_iterator()}
    n_en = sum(x in en_ids for x in drawn)
    assert 0 < n_en < 40  # both tasks are sampled
    again = [tuple(x["input_ids"].tolist()) for x in mixture.get_dataset(
        lengths, split="train", shuffle=True, seed=0, num_epochs=None).take(40).as_numpy_iterator()]
    assert again == drawn  # deterministic for a seed
    with pytest.raises(ValueError, match="do not name exactly its tasks"):
        tasks.register_mixture("bad", ["massive_en_us"], rates={"atis": 1.0})


def test_register_needs_an_existing_vocab(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.data.vocab"):
        tasks.register(str(tmp_path / "missing.model"))


# ------------------------------------------------------------------------------- CLI
def test_cli_list_show_count(tiny, capsys):
    root, vocab_path = tiny
    assert cli.main(["--data_dir", root, "list"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"massive_en_us\s+intent_slots\s+en-US\s+train validation test\n", out)
    assert re.search(r"massive_de_de\s+intent_slots\s+de-DE\s+train\(missing\)", out)
    assert re.search(r"mlm_text\s+\[unavailable\]", out)  # only en.txt exists here
    assert cli.main(["--data_dir", root, "show", "massive_en_us", "--split=validation", "--n=1",
                     f"--vocab={vocab_path}"]) == 0
    out = capsys.readouterr().out
    assert '"text": "set an alarm for half past six"' in out and "intent: 0 (alarm_set)" in out
    pieces = re.search(r"tokens \(\d+\): (.*)", out).group(1).split()
    assert [p.rsplit(":", 1)[1] for p in pieces if p.rsplit(":", 1)[1] != "·"] == ["O"] * 4 + ["B-time", "I-time", "I-time"]
    assert cli.main(["--data_dir", root, "show", "atis", "--split=train", "--count"]) == 0
    assert capsys.readouterr().out.strip() == "atis train: 2 rows"
    assert cli.main(["--data_dir", root, "show", "massive_de_de"]) == 1
    assert "de-DE.jsonl does not exist" in capsys.readouterr().err


def test_cli_show_trains_a_throwaway_vocab(tiny, capsys):
    root, _ = tiny
    assert cli.main(["--data_dir", root, "show", "atis", "--split=validation", "--n=1"]) == 0
    out = capsys.readouterr().out
    assert "throwaway" in out and "B-toloc.city_name" in out and "intent: 2 (atis_flight)" in out
