"""Readers of the local data formats, subword label alignment, and the spoken form.

Row counts on the real data come from each folder's SOURCE.md; the malformed-input and
alignment tests write their own small files and need no data."""
import collections
import json
import logging
import os
import re

import num2words
import pytest

from atm.data import readers
from atm.data.readers import IGNORE_INDEX, DataFormatError
from atm.data import spoken, tasks
from atm.data.spoken import number_to_words, spoken_form


# ------------------------------------------------------------------ real data: row counts
@pytest.mark.parametrize("locale,train", [("en-US", 11514), ("de-DE", 3468), ("sw-KE", 3468)])
def test_massive_row_counts(data_dir, locale, train):
    path = os.path.join(data_dir, "massive", "data", f"{locale}.jsonl")
    counts = {p: readers.MassiveJsonl(path, partition=p).count() for p in ("train", "dev", "test")}
    assert counts == {"train": train, "dev": 2033, "test": 2974}


def test_every_massive_en_us_row_reproduces_utt_and_its_slots(data_dir):
    path = os.path.join(data_dir, "massive", "data", "en-US.jsonl")
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    examples = list(readers.MassiveJsonl(path))
    assert len(examples) == len(rows) == 16521
    num_slots = 0
    for row, ex in zip(rows, examples):
        assert ex["text"] == row["utt"] and ex["intent"] == row["intent"]
        # rebuilding annot_utt from utt and the character spans gives back the file's annot_utt
        rebuilt, last = [], 0
        for slot, start, end in ex["slots"]:
            rebuilt += [ex["text"][last:start], f"[{slot} : {ex['text'][start:end]}]"]
            last = end
        assert "".join(rebuilt) + ex["text"][last:] == row["annot_utt"]
        # the BIO tags cover exactly the words of the spans
        assert ex["words"] == row["utt"].split()
        spans = readers.bio_spans(ex["word_tags"])
        offsets = readers.word_offsets(ex["text"])
        assert [(s, offsets[a][0], offsets[b - 1][1]) for s, a, b in spans] == ex["slots"]
        num_slots += len(ex["slots"])
    assert num_slots > 10000
    assert len({ex["intent"] for ex in examples}) == 60


@pytest.mark.parametrize("folder,counts", [("atis", (4478, 500, 893)), ("massive/pl-PL_bio", (10641, 1945, 2916))])
def test_bio_folder_row_counts(data_dir, folder, counts):
    got = tuple(readers.BioFolder(os.path.join(data_dir, folder), split).count() for split in ("train", "dev", "test"))
    assert got == counts


def test_atis_examples(data_dir):
    train = list(readers.BioFolder(os.path.join(data_dir, "atis"), "train"))
    assert train[0]["words"][:5] == ["i", "want", "to", "fly", "from"]
    assert train[0]["word_tags"][5] == "B-fromloc.city_name" and train[0]["intent"] == "atis_flight"
    assert sum("#" in ex["intent"] for ex in train) == 23  # multi-intent rows, kept as one label
    assert all(len(ex["words"]) == len(ex["word_tags"]) for ex in train)


def test_xnli_sst2_counts(data_dir):
    for lang in ("en", "de", "sw", "zh"):
        rows = list(readers.NliTsv(os.path.join(data_dir, "xnli", f"dev-{lang}.tsv")))
        assert len(rows) == 2490
        assert collections.Counter(r["label"] for r in rows) == {"entailment": 830, "neutral": 830, "contradiction": 830}
    expected = {"train": (60614, 26786), "dev": (6735, 2994), "test": (872, 428)}
    for split, (n, negative) in expected.items():
        rows = list(readers.SentenceTsv(os.path.join(data_dir, "sst2", f"{split}.tsv")))
        assert (len(rows), sum(r["label"] == "0" for r in rows)) == (n, negative)


def test_conll2003_counts(data_dir):
    expected = {"train": (14041, 946, 203621), "valid": (3250, 216, 51362), "test": (3453, 231, 46435)}
    for split, (sentences, documents, tokens) in expected.items():
        rows = list(readers.ConllNer(os.path.join(data_dir, "conll2003", f"{split}.txt")))
        assert (len(rows), rows[-1]["doc"], sum(len(r["words"]) for r in rows)) == (sentences, documents, tokens)
    first = rows[0]
    assert len(first["words"]) == len(first["word_tags"])


@pytest.mark.parametrize("lang,sizes", [("en", (20000, 10000, 10000)), ("hi", (5000, 1000, 1000)),
                                        ("sw", (1000, 1000, 1000))])
def test_panx_counts_and_unlabelled_test(data_dir, lang, sizes):
    splits = [list(readers.ConllNer(os.path.join(data_dir, "panx", f"{s}-{lang}.tsv"))) for s in ("train", "dev", "test")]
    assert tuple(map(len, splits)) == sizes
    assert all(r["word_tags"] is not None and len(r["word_tags"]) == len(r["words"]) for r in splits[0])
    assert all(r["word_tags"] is None for r in splits[2])  # the XTREME test files carry no tags


def test_tydiqa_counts_and_dev_without_answers(data_dir):
    for lang, n in {"en": 3696, "ko": 1625, "sw": 2755}.items():
        reader = readers.SquadJson(os.path.join(data_dir, "tydiqa_goldp", f"tydiqa.goldp.{lang}.train.json"))
        rows = list(reader)
        assert (len(rows), reader.num_unanswered) == (n, 0)
        assert all(r["context"][a["start"]:a["start"] + len(a["text"])] == a["text"] for r in rows for a in r["answers"])
    for lang, n in {"ar": 921, "bn": 113, "en": 440, "fi": 782, "id": 565, "ko": 276, "ru": 812, "sw": 499,
                    "te": 669}.items():
        reader = readers.SquadJson(os.path.join(data_dir, "tydiqa_goldp", f"tydiqa.goldp.{lang}.dev.json"))
        assert reader.count() == n and reader.num_unanswered == n


# ------------------------------------------------------------------- malformed input
def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return str(path)


def _massive_row(utt, annot, **extra):
    row = {"id": "1", "locale": "en-US", "partition": "train", "scenario": "alarm", "intent": "alarm_set",
           "utt": utt, "annot_utt": annot}
    row.update(extra)
    return json.dumps(row)


def test_massive_malformed_rows_name_file_line_field(tmp_path, caplog):
    good = _massive_row("wake me at five am", "wake me at [time : five am]")
    lines = [good,
             '{"utt": "broken json",',  # line 2
             _massive_row("wake me at six am", "wake me at [time : seven am]"),  # 3: does not reproduce utt
             _massive_row("wake me at six", "wake me at [time : six"),  # 4: unclosed bracket
             json.dumps({"utt": "x", "annot_utt": "x", "locale": "en-US", "partition": "train"}),  # 5: no intent
             good]
    path = _write(tmp_path / "en-US.jsonl", "\n".join(lines) + "\n")
    with pytest.raises(DataFormatError) as e:
        list(readers.MassiveJsonl(path))
    assert (e.value.path, e.value.line, e.value.field) == (path, 2, "json")
    assert f"{path}:2" in str(e.value)
    # each kind of error names its line and field
    for line, field, words in ((3, "annot_utt", "utt is 'wake me at six am'"), (4, "annot_utt", "never closed"),
                               (5, "intent", "missing")):
        only = _write(tmp_path / f"only{line}.jsonl", lines[line - 1] + "\n")
        with pytest.raises(DataFormatError, match=re.escape(words)) as e:
            list(readers.MassiveJsonl(only))
        assert (e.value.line, e.value.field) == (1, field)
    reader = readers.MassiveJsonl(path, skip_malformed=True)
    with caplog.at_level(logging.WARNING):
        rows = list(reader)
    assert (len(rows), reader.num_malformed) == (2, 4)
    assert "skipped 4 malformed rows" in caplog.text


def test_bio_folder_mismatch_and_missing_file(tmp_path):
    folder = tmp_path / "snips"
    _write(folder / "train" / "seq.in", "play some jazz \nbook a table for two\nhi\n")
    _write(folder / "train" / "seq.out", "O O B-genre\nO O O O B-party_size\nO\n")  # trailing space in seq.in is fine
    _write(folder / "train" / "label", "PlayMusic\nBookRestaurant\nGreet\n")
    assert [r["words"] for r in readers.BioFolder(str(folder), "train")][0] == ["play", "some", "jazz"]
    _write(folder / "train" / "seq.out", "O O B-genre\nO O O B-party_size\nO\n")  # now 4 tags for 5 words
    with pytest.raises(DataFormatError) as e:
        list(readers.BioFolder(str(folder), "train"))
    assert (e.value.path, e.value.line, e.value.field) == (str(folder / "train" / "seq.out"), 2, "seq.out")
    assert "4 tags for the 5 words" in str(e.value)
    reader = readers.BioFolder(str(folder), "train", skip_malformed=True)
    assert (reader.count(), reader.num_malformed) == (2, 1)
    with pytest.raises(FileNotFoundError, match=re.escape(f"config.data.task_dir: {folder / 'dev' / 'seq.in'}")):
        readers.BioFolder(str(folder), "dev", config_key="config.data.task_dir")


def test_tsv_and_conll_malformed(tmp_path):
    nli = _write(tmp_path / "dev-xx.tsv", "a\tb\tentailment\nonly two\tcolumns\nc\td\tmaybe\ne\tf\tneutral\n")
    with pytest.raises(DataFormatError, match=r"dev-xx.tsv:2: field 'columns': expected 3"):
        list(readers.NliTsv(nli))
    reader = readers.NliTsv(nli, skip_malformed=True)
    assert [r["label"] for r in reader] == ["entailment", "neutral"] and reader.num_malformed == 2
    mnli = _write(tmp_path / "mnli.tsv", "index\tgenre\tsentence1\tsentence2\tgold_label\n0\tfic\tP\tH\tcontradiction\n")
    assert list(readers.NliTsv(mnli))[0]["premise"] == "P"
    sst = _write(tmp_path / "sst.tsv", "sentence\tlabel\ngood film \t1\nbad\t0\textra\nmeh\t2\n")
    reader = readers.SentenceTsv(sst, skip_malformed=True)
    assert [r["text"] for r in reader] == ["good film"] and reader.num_malformed == 2
    with pytest.raises(DataFormatError, match=r"sst4.tsv:4: field 'label'"):
        list(readers.SentenceTsv(_write(tmp_path / "sst4.tsv", "sentence\tlabel\na\t1\nb\t0\nc\t2\n")))
    conll = _write(tmp_path / "ner.txt", "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n"
                                         "Peter NNP B-NP\nBlackburn NNP I-NP I-PER\n\nX NNP I-NP Q-PER\n")
    with pytest.raises(DataFormatError, match=r"ner.txt:6: field 'columns': 3 columns"):
        list(readers.ConllNer(conll))
    reader = readers.ConllNer(conll, skip_malformed=True)
    assert [r["words"] for r in reader] == [["EU", "rejects"]] and reader.num_malformed == 2
    tags = _write(tmp_path / "tags.txt", "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nX NNP I-NP Q-PER\n")
    with pytest.raises(DataFormatError, match=r"tags.txt:4: field 'tag': 'Q-PER' is not a BIO tag"):
        list(readers.ConllNer(tags))


def test_squad_malformed(tmp_path):
    doc = {"data": [{"title": "t", "paragraphs": [{"context": "Paris is in France.", "qas": [
        {"id": "q1", "question": "Where?", "answers": [{"text": "France", "answer_start": 12}]},
        {"id": "q2", "question": "What?", "answers": [{"text": "Paris", "answer_start": 3}]},
        {"id": "q3", "question": "Who?", "answers": [{"text": "", "answer_start": 0}]}]}]}]}
    path = _write(tmp_path / "qa.json", json.dumps(doc))
    with pytest.raises(DataFormatError, match=re.escape("field 'data[0].paragraphs[0].qas[1].answers[0].answer_start'")):
        list(readers.SquadJson(path))
    reader = readers.SquadJson(path, skip_malformed=True)
    rows = list(reader)
    assert [r["id"] for r in rows] == ["q1", "q3"] and reader.num_malformed == 1 and reader.num_unanswered == 1
    broken = _write(tmp_path / "broken.json", '{"data": [\n  {"paragraphs": ]}')
    with pytest.raises(DataFormatError, match=r"broken.json:2: field 'json'"):
        list(readers.SquadJson(broken))


def test_missing_file_names_path_and_key(tmp_path):
    missing = str(tmp_path / "nope.jsonl")
    with pytest.raises(FileNotFoundError, match=re.escape(f"config.data.train_file: {missing} does not exist")):
        readers.read("massive", missing, config_key="config.data.train_file")
    with pytest.raises(ValueError, match="unknown data format"):
        readers.read("csv", missing)


def test_invalid_utf8_names_the_line(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(b"fine\n\xff\xfe bad\nalso fine\n")
    with pytest.raises(DataFormatError, match=r"t.txt:2: field 'utf-8'"):
        list(readers.TextLines(str(path)))
    reader = readers.TextLines(str(path), skip_malformed=True)
    assert [r["text"] for r in reader] == ["fine", "also fine"] and reader.num_malformed == 1


# ------------------------------------------------------------------------ alignment
class ChunkVocab:
    """Splits each word into 3-character chunks; ids are stable per chunk; '' encodes to nothing."""
    unk_id = 1

    def __init__(self):
        self.ids = {}

    def encode(self, text):
        return [self.ids.setdefault(text[i:i + 3], 10 + len(self.ids)) for i in range(0, len(text), 3)]

    def id_to_piece(self, i):
        return {v: k for k, v in self.ids.items()}[i]


def test_align_word_labels_first_subword():
    vocab = ChunkVocab()
    words = ["wake", "me", "at", "seventeen", "thirty"]
    aligned = readers.align_word_labels(words, [0, 0, 0, 3, 4], vocab)
    # wake -> wak|e, me, at, seventeen -> sev|ent|een, thirty -> thi|rty
    assert aligned.word_ids == [0, 0, 1, 2, 3, 3, 3, 4, 4]
    assert aligned.labels == [0, IGNORE_INDEX, 0, 0, 3, IGNORE_INDEX, IGNORE_INDEX, 4, IGNORE_INDEX]
    assert aligned.token_ids == [x for w in words for x in vocab.encode(w)]
    assert aligned.num_words_kept == 5
    truncated = readers.align_word_labels(words, [0, 0, 0, 3, 4], vocab, max_tokens=5)  # whole words only
    assert truncated.word_ids == [0, 0, 1, 2] and truncated.num_words_kept == 3
    unlabelled = readers.align_word_labels(["a", ""], None, vocab)  # '' -> [UNK], so every word has a token
    assert unlabelled.token_ids[-1] == vocab.unk_id and unlabelled.labels == [IGNORE_INDEX] * 2
    with pytest.raises(ValueError, match="2 labels for 3 words"):
        readers.align_word_labels(["a", "b", "c"], [0, 0], vocab)


def test_predictions_back_to_words_and_char_spans():
    vocab = ChunkVocab()
    names = ["O", "B-time", "I-time", "B-date", "I-date"]
    text = "wake me at  seventeen thirty tomorrow"  # two spaces: spans index the original text
    words = text.split()
    aligned = readers.align_word_labels(words, [0, 0, 0, 1, 2, 3], vocab)
    # a model that is right on first subwords and says nonsense elsewhere
    predictions = [label if label != IGNORE_INDEX else 4 for label in aligned.labels]
    assert readers.word_predictions(predictions, aligned.word_ids, len(words)) == [0, 0, 0, 1, 2, 3]
    spans = readers.predictions_to_spans(predictions, aligned.word_ids, words, names, text=text)
    assert [(s["label"], s["start"], s["end"], s["text"]) for s in spans] == [
        ("time", 12, 28, "seventeen thirty"), ("date", 29, 37, "tomorrow")]
    # special tokens / padding carry word id -1; truncated words fall back to the default
    assert readers.word_predictions([9, 1, 2, 9], [-1, 0, 1, -1], 3, default=0) == [1, 2, 0]
    assert readers.bio_spans(["I-x", "I-x", "O", "B-y", "I-z"]) == [("x", 0, 2), ("y", 3, 4), ("z", 4, 5)]


def test_token_char_spans():
    vocab = ChunkVocab()
    text = "abcdefg hi"
    offsets = readers.word_offsets(text)
    aligned = readers.align_word_labels([text[s:e] for s, e in offsets], None, vocab)
    assert readers.token_char_spans(offsets, aligned, vocab) == [(0, 3), (3, 6), (6, 7), (8, 10)]


def test_massive_gold_labels_round_trip_through_sentencepiece(tmp_path):
    """Gold word tags -> subword labels -> predictions -> character spans == the annotated slots."""
    from atm.data import synthetic
    from atm.data.vocab import train_sentencepiece
    vocab = train_sentencepiece(synthetic.utterances(2000, seed=0, languages=("en",)), 300, str(tmp_path / "sp"))
    lines = [_massive_row("wake me at five am tomorrow", "wake me at [time : five am] [date : tomorrow]"),
             _massive_row("set an alarm for half past six", "set an alarm for [time : half past six]"),
             _massive_row("what's the weather in berlin", "what's the weather in [place_name : berlin]")]
    examples = list(readers.MassiveJsonl(_write(tmp_path / "m.jsonl", "\n".join(lines))))
    names = ["O"] + [f"{p}-{s}" for s in ("date", "place_name", "time") for p in "BI"]
    for ex in examples:
        aligned = readers.align_word_labels(ex["words"], [names.index(t) for t in ex["word_tags"]], vocab)
        assert aligned.token_ids == vocab.encode(ex["text"])  # per-word encoding = sentence encoding
        assert any(label == IGNORE_INDEX for label in aligned.labels)  # some words have several pieces
        predictions = [label if label != IGNORE_INDEX else 0 for label in aligned.labels]
        spans = readers.predictions_to_spans(predictions, aligned.word_ids, ex["words"], names, text=ex["text"])
        assert [(s["label"], s["start"], s["end"]) for s in spans] == ex["slots"]


# ------------------------------------------------------------------------ spoken form
@pytest.mark.parametrize("text,lang,spoken", [
    ("Wake me up at 9:30!", "en", "wake me up at nine thirty"),
    ("7", "en", "seven"),
    ("21", "en", "twenty one"),
    ("Set an alarm for 7am, please.", "en-US", "set an alarm for seven am please"),
    ("9:05 p.m.", "en", "nine oh five pm"),
    ("Meet at 9:00.", "en", "meet at nine o'clock"),
    ("What's the weather on the 21st?", "en", "what's the weather on the twenty first"),
    ("Born in 1990, she loves the 1980s.", "en", "born in nineteen ninety she loves the nineteen eighties"),
    ("It costs $5.50 (or 1,000 yen).", "en", "it costs five dollars and fifty cents or one thousand yen"),
    ("3.5% at -5°C", "en", "three point five percent at minus five degrees c"),
    ("Call 007 re: R&B take-out", "en", "call zero zero seven re r and b take out"),
    ("“Hello,” she said — ‘OK’.", "en", "hello she said ok"),
    ("Weck mich um 21:30 Uhr.", "de", "weck mich um einundzwanzig uhr dreißig"),
    ("Es ist 1 Uhr, 3,5 Grad.", "de-DE", "es ist ein uhr drei komma fünf grad"),
    ("Réveille-moi à 21h30.", "fr", "réveille moi à vingt et une heures trente"),
    ("71 et 80", "fr", "soixante et onze et quatre vingts"),
    ("A las 21:30, 500 personas.", "es", "a las veintiuno y treinta quinientos personas"),
    ("Привет, МИР 5!", "ru", "привет мир пять"),  # num2words' Russian
    ("Mam 21 lat, 3,5 kota.", "pl", "mam dwadzieścia jeden lat trzy przecinek pięć kota"),
    ("3612 et 80", "fr", "trois mille six cent douze et quatre vingts"),
    ("21000 y 1000000", "es", "veintiún mil y un millón"),
    ("你好 5", "zh", "你好 5"),  # no number words for zh: digits stay
    ("Saa 5 asubuhi", "sw", "saa 5 asubuhi"),
    ("नमस्ते, दुनिया।", "hi", "नमस्ते दुनिया"),  # combining vowel signs survive
])
def test_spoken_form(text, lang, spoken):
    assert spoken_form(text, lang) == spoken


def _num2words_spoken(n, lang):
    """num2words' own words as the spoken form writes them: lower case, hyphens and commas as spaces."""
    words = " ".join(num2words.num2words(n, lang=lang).lower().replace("-", " ").replace(",", " ").split())
    if lang == "en":
        words = " ".join(w for w in words.split() if w != "and")
    if lang == "es":
        words = re.sub(r"\b(veinti)?uno (?=(mil|millones)\b)", lambda m: "veintiún " if m.group(1) else "un ", words)
    return words


def test_spoken_numbers_are_num2words_own_in_every_language_it_covers():
    import random
    rng = random.Random(0)
    sample = [0, 1, 7, 10, 11, 21, 99, 100, 101, 999] + [rng.randrange(10 ** rng.randint(3, 9)) for _ in range(30)]
    covered = sorted(lang for lang in num2words.CONVERTER_CLASSES if "_" not in lang and lang != "am")  # am hangs
    assert spoken.NUMBER_WORD_LANGUAGES == tuple(covered) and len(covered) >= 40
    assert {"en", "de", "fr", "es", "ru", "ar", "pl", "ja", "tr", "vi"} <= set(covered)
    for lang in covered:
        for n in sample:
            if str(n).startswith("0") and n:
                continue
            try:
                expected = _num2words_spoken(n, lang)
            except (OverflowError, NotImplementedError):
                continue
            assert spoken_form(str(n), lang) == spoken_form(expected, lang), (lang, n)
    for lang in spoken.DIGIT_LANGUAGES:  # atm's corpus languages num2words does not cover keep digits
        assert lang not in covered and spoken_form("5 12", lang) == "5 12"
    corpus = set(tasks.MLM_LANGUAGES) | set(tasks.XNLI_LANGUAGES) | set(tasks.TYDIQA_DEV) | {"sw"}
    assert sorted(corpus - set(covered)) == sorted(spoken.DIGIT_LANGUAGES)


def test_number_words():
    assert [number_to_words(n) for n in (0, 13, 40, 101, 1234, 1_000_000)] == [
        "zero", "thirteen", "forty", "one hundred one", "one thousand two hundred thirty four", "one million"]
    assert number_to_words(97, "fr") == "quatre vingt dix sept" and number_to_words(21, "de") == "einundzwanzig"
    assert number_to_words(21000, "es") == "veintiún mil"
    assert number_to_words(3612, "fr") == "trois mille six cent douze"  # atm's own French wrote "troi mille"
    assert number_to_words(21, "ru") == "двадцать один" and number_to_words(1990, "pl") == "tysiąc dziewięćset dziewięćdziesiąt"
    with pytest.raises(ValueError, match="no number words"):
        number_to_words(5, "zh")


# ------------------------------------------------------------------------ faults the readers must not hide
def _bio(folder, split, words, tags, intents):
    _write(folder / split / "seq.in", "".join(w + "\n" for w in words))
    _write(folder / split / "seq.out", "".join(t + "\n" for t in tags))
    _write(folder / split / "label", "".join(i + "\n" for i in intents))
    return str(folder)


def test_bio_split_with_a_missing_line_is_an_error_whatever_skip_malformed_says(tmp_path):
    words = ["play jazz", "book a table", "hi there", "wake me up"]
    tags = ["O B-genre", "O O O", "O O", "O O O"]
    folder = _bio(tmp_path / "bio", "train", words, tags, ["Play", "Book", "Greet", "Alarm"])
    _write(tmp_path / "bio" / "train" / "label", "Play\nGreet\nAlarm\n")  # line 2 deleted: every later intent shifts
    for skip in (False, True):
        with pytest.raises(DataFormatError) as e:
            readers.BioFolder(folder, "train", skip_malformed=skip)
        message = str(e.value)
        assert "seq.in" in message and "label" in message and "4 lines" in message and "has 3" in message


def test_unknown_labels_error_skip_or_unk_only_when_asked(tmp_path):
    from atm.data import labelled

    folder = tmp_path / "bio"
    _bio(folder, "train", ["play jazz", "hi"], ["O B-genre", "O"], ["Play", "Greet"])
    _bio(folder, "dev", ["play rock", "hi", "book it"], ["O B-genre", "O", "O B-thing"], ["Play", "Grete", "Book"])
    _write(folder / "intent_label.txt", "UNK\nPlay\nGreet\nBook\n")
    _write(folder / "slot_label.txt", "PAD\nUNK\nO\nB-genre\n")
    names = {"intent": ("UNK", "Play", "Greet", "Book"), "slot": ("PAD", "UNK", "O", "B-genre")}

    def rows(policy, skip, counts):
        raws = ({**r, "where": (str(folder / "dev"), r["line"])} for r in readers.BioFolder(str(folder), "dev"))
        return list(labelled.check_labels(raws, names, "intent_slots", policy, skip, counts))

    with pytest.raises(DataFormatError) as e:
        rows("error", False, {})
    assert (e.value.path, e.value.line, e.value.field) == (str(folder / "dev" / "label"), 2, "intent")
    assert "'Grete' is not among the 4 intent labels" in str(e.value)
    counts = {}
    assert [r["intent"] for r in rows("error", True, counts)] == ["Play"]
    assert counts["unknown_label_rows_skipped"] == 2 and "dev/label:2" in counts["first"]
    counts = {}
    mapped = rows("unk", False, counts)
    assert [r["intent"] for r in mapped] == ["Play", "UNK", "Book"] and mapped[2]["word_tags"] == ["O", "UNK"]
    assert counts["mapped_to_unk"] == 2


def test_massive_label_inventory_honours_skip_malformed(tmp_path):
    from atm.data import tasks

    good = _massive_row("wake me at five am", "wake me at [time : five am]")
    _write(tmp_path / "massive" / "data" / "en-US.jsonl", good + '\n{"utt": "broken json",\n')
    with pytest.raises(DataFormatError, match="en-US.jsonl:2"):
        tasks.label_inventory("massive_en_us", str(tmp_path))
    labels = tasks.label_inventory("massive_en_us", str(tmp_path), skip_malformed=True)
    assert labels["slot"] == ("O", "B-time", "I-time")


def test_skip_warning_is_logged_once_per_file(tmp_path, caplog):
    path = _write(tmp_path / "once.jsonl", _massive_row("hi", "hi") + '\n{"utt": "broken json",\n')
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            list(readers.MassiveJsonl(path, skip_malformed=True))
    assert caplog.text.count("skipped 1 malformed rows") == 1
