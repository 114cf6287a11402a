"""seqio Tasks and Mixtures over the local data sets (the only module that imports seqio/TF, lazily).

    from atm.data import tasks
    tasks.register(vocab_path="workdir/vocab.model")        # every task below, + mixtures
    ds = seqio.get_mixture_or_task("massive_en_us").get_dataset(split="validation", shuffle=False)

Files are found under the data directory: `data_dir` argument, else `$ATM_DATA_DIR`, else
`../shared/data` beside the repository root. `TASKS` is the pure-Python registry (`task_specs()`
lists it, no TF needed); `register()` turns it into seqio Tasks. Task names are lower case with
`_` (seqio forbids `-`): `massive_en_us`, `panx_de`, `xnli_sw`, `mlm_text_zh_spoken`, ...

Every example keeps its raw fields (strings) next to the features seqio declares; tokens are
the vocabulary's pieces without special tokens (the batcher adds [CLS]/[SEP]):

| kind           | declared features                                      | raw fields              |
|----------------|--------------------------------------------------------|-------------------------|
| text           | input_ids                                              | text                    |
| intent_slots   | input_ids, slot_labels, word_ids, intent               | text, words, word_tags  |
| ner            | input_ids, labels, word_ids                            | text, words, word_tags  |
| sentence       | input_ids, label                                       | text                    |
| pair           | input_ids, pair_input_ids, label                       | premise, hypothesis     |
| qa             | question_ids, context_ids, context_word_ids,           | id, question, context   |
|                | answer_start, answer_end (token positions in context) |                         |

Token labels follow `readers.align_word_labels`: the word's label on its first subword,
`IGNORE_INDEX` (-100) elsewhere; `word_ids` give each token's word. QA answers are located at
subword granularity: answer_start/answer_end are the first and last context tokens overlapping the
answer's characters (`readers.token_char_spans`; whole words where a word's pieces do not add up
to it), -1 when there is no answer.

Splits are train / validation / test as the data has them. Splits whose labels the staged files
do not carry are named `*_unlabelled` (PAN-X test) or `validation_no_answers` (TyDi QA GoldP dev,
whose XTREME files have empty answers), so nothing reports a metric on them by mistake.

Label ids: MASSIVE (jsonl and pl-PL BIO share one inventory): intents and slot types as sorted
in the complete en-US file, slot tags O, B-x, I-x; ATIS: its intent_label.txt/slot_label.txt
(JointBERT; unknown labels map to UNK); CoNLL-2003 and PAN-X: fixed BIO lists; SST-2: 0, 1;
XNLI: entailment, neutral, contradiction.

Mixtures sample their tasks with temperature rates q_k ∝ n_k^alpha over the train split sizes
(`temperature_rates`, alpha=0.3 by default; 1 = proportional, 0 = uniform), or with explicit
per-task rates (`register_mixture`). `mlm_text_spoken_written` is ATM's 70% spoken / 30%
written-form pretraining mixture.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Iterator, Mapping, Optional, Sequence

from absl import logging
import numpy as np

from atm import import_tensorflow
from atm.data import readers
from atm.data.spoken import spoken_form
from atm.data.vocab import SentencePieceVocabulary, temperature_rates


def _seqio():
    """(seqio, tensorflow), imported on first use: the registry, readers, counts and rates work
    without TF (and `python -m atm.data list` starts in a second); seqio is needed to register."""
    tf = import_tensorflow()
    import seqio
    return seqio, tf

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_ALPHA = 0.3
SPLITS = ("train", "validation", "test")
KINDS = ("text", "intent_slots", "ner", "sentence", "pair", "qa")

CONLL_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")
PANX_TAGS = CONLL_TAGS[:7]
MASSIVE_LOCALES = ("en-US", "de-DE", "sw-KE")
MLM_LANGUAGES = ("en", "de", "es", "fr", "ru", "zh", "ar", "hi", "sw")
PANX_LANGUAGES = MLM_LANGUAGES
XNLI_LANGUAGES = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh")
TYDIQA_TRAIN = ("en", "ko", "sw")
TYDIQA_DEV = ("ar", "bn", "en", "fi", "id", "ko", "ru", "sw", "te")


def data_dir(override: Optional[str] = None) -> str:
    """The data directory: `override`, else $ATM_DATA_DIR, else ../shared/data beside the repo."""
    return os.path.abspath(override or os.environ.get("ATM_DATA_DIR") or os.path.join(REPO_ROOT, "..", "shared",
                                                                                      "data"))


# ------------------------------------------------------------------------ the registry
@dataclasses.dataclass(frozen=True)
class Split:
    format: str  # a readers.READERS key
    path: str  # relative to the data directory
    options: tuple = ()  # reader keyword arguments, as (key, value) pairs


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: str
    language: str
    splits: Mapping[str, Split]
    labels: str = ""  # label inventory: "massive", "atis", "conll", "panx", "sst2", "nli" or ""
    spoken: bool = False  # text tasks: turn the text into spoken form
    description: str = ""

    def reader(self, split: str, root: Optional[str] = None, skip_malformed: bool = False) -> readers.Reader:
        if split not in self.splits:
            raise ValueError(f"task {self.name} has no split {split!r}; it has {sorted(self.splits)}")
        s = self.splits[split]
        root = data_dir(root)
        return readers.read(s.format, os.path.join(root, s.path), **dict(s.options), skip_malformed=skip_malformed,
                            config_key=f"task {self.name}, split {split} (data dir {root}: ATM_DATA_DIR)")

    def files(self, split: str, root: Optional[str] = None) -> str:
        return os.path.join(data_dir(root), self.splits[split].path)


def _massive_splits(locale: str) -> dict[str, Split]:
    path = f"massive/data/{locale}.jsonl"
    return {split: Split("massive", path, (("partition", partition),))
            for split, partition in zip(SPLITS, ("train", "dev", "test"))}


def _bio_splits(folder: str) -> dict[str, Split]:
    return {split: Split("bio", folder, (("split", name),)) for split, name in zip(SPLITS, ("train", "dev", "test"))}


def _build_specs() -> dict[str, TaskSpec]:
    specs = []
    for locale in MASSIVE_LOCALES:
        key = locale.lower().replace("-", "_")
        note = "" if locale == "en-US" else " (train: 3468 of 11514 rows staged)"
        specs.append(TaskSpec(f"massive_{key}", "intent_slots", locale, _massive_splits(locale), "massive",
                              description=f"MASSIVE 1.1 {locale} intent + slots{note}"))
        specs.append(TaskSpec(f"massive_text_{key}", "text", locale, _massive_splits(locale),
                              description=f"MASSIVE {locale} utterances (in-domain, spoken-form text)"))
    specs.append(TaskSpec("massive_pl_pl", "intent_slots", "pl-PL", _bio_splits("massive/pl-PL_bio"), "massive",
                          description="MASSIVE pl-PL in JointBERT BIO, cleaned (not the official row set)"))
    specs.append(TaskSpec("atis", "intent_slots", "en", _bio_splits("atis"), "atis",
                          description="ATIS intent + slots (Goo et al. 2018 split, BIO)"))
    for lang in XNLI_LANGUAGES:
        specs.append(TaskSpec(f"xnli_{lang}", "pair", lang, {"validation": Split("nli", f"xnli/dev-{lang}.tsv")},
                              "nli", description=f"XNLI {lang} dev (no train/test staged)"))
    specs.append(TaskSpec("sst2", "sentence", "en", {split: Split("sst2", f"sst2/{name}.tsv") for split, name in
                                                     zip(SPLITS, ("train", "dev", "test"))}, "sst2",
                          description="SST-2 (ALPS re-split: test = GLUE dev)"))
    specs.append(TaskSpec("conll2003", "ner", "en", {split: Split("conll", f"conll2003/{name}.txt") for split, name in
                                                     zip(SPLITS, ("train", "valid", "test"))}, "conll",
                          description="CoNLL-2003 English NER (research-only licence)"))
    for lang in PANX_LANGUAGES:
        specs.append(TaskSpec(f"panx_{lang}", "ner", lang, {
            "train": Split("conll", f"panx/train-{lang}.tsv"), "validation": Split("conll", f"panx/dev-{lang}.tsv"),
            "test_unlabelled": Split("conll", f"panx/test-{lang}.tsv")}, "panx",
            description=f"PAN-X (WikiANN) {lang} NER; XTREME test files carry no tags"))
    for lang in sorted(set(TYDIQA_TRAIN) | set(TYDIQA_DEV)):
        splits = {}
        if lang in TYDIQA_TRAIN:
            splits["train"] = Split("squad", f"tydiqa_goldp/tydiqa.goldp.{lang}.train.json")
        if lang in TYDIQA_DEV:
            splits["validation_no_answers"] = Split("squad", f"tydiqa_goldp/tydiqa.goldp.{lang}.dev.json")
        specs.append(TaskSpec(f"tydiqa_goldp_{lang}", "qa", lang, splits,
                              description=f"TyDi QA GoldP {lang} (SQuAD json); XTREME dev files have no answers"))
    for lang in MLM_LANGUAGES:
        split = {"train": Split("text", f"mlm_text/wikiann_sentences/{lang}.txt")}
        specs.append(TaskSpec(f"mlm_text_{lang}", "text", lang, split,
                              description=f"WikiANN sentences {lang} (unlabelled, written form)"))
        specs.append(TaskSpec(f"mlm_text_{lang}_spoken", "text", lang, split, spoken=True,
                              description=f"WikiANN sentences {lang} in spoken form"))
    return {s.name: s for s in specs}


TASKS: dict[str, TaskSpec] = _build_specs()


@dataclasses.dataclass(frozen=True)
class MixtureSpec:
    name: str
    tasks: tuple  # task (or mixture) names
    rates: Optional[Mapping[str, float]] = None  # explicit per-task rates; None: temperature sampling
    alpha: float = DEFAULT_ALPHA
    description: str = ""


MIXTURES: dict[str, MixtureSpec] = {m.name: m for m in (
    MixtureSpec("mlm_text", tuple(f"mlm_text_{x}" for x in MLM_LANGUAGES),
                description="written-form WikiANN text, 9 languages, temperature-sampled"),
    MixtureSpec("mlm_text_spoken", tuple(f"mlm_text_{x}_spoken" for x in MLM_LANGUAGES),
                description="spoken-form WikiANN text, 9 languages, temperature-sampled"),
    MixtureSpec("mlm_text_spoken_written", ("mlm_text_spoken", "mlm_text"),
                rates={"mlm_text_spoken": 0.7, "mlm_text": 0.3},
                description="ATM stage 1: 70% spoken form, 30% written form"),
    MixtureSpec("massive_text", tuple(f"massive_text_{x.lower().replace('-', '_')}" for x in MASSIVE_LOCALES),
                description="MASSIVE utterances (ATM stage 2 in-domain text), temperature-sampled"),
    MixtureSpec("massive", tuple(f"massive_{x.lower().replace('-', '_')}" for x in MASSIVE_LOCALES)
                + ("massive_pl_pl",), description="MASSIVE intent + slots, 4 locales, temperature-sampled"),
    MixtureSpec("panx", tuple(f"panx_{x}" for x in PANX_LANGUAGES), description="PAN-X NER, 9 languages"),
    MixtureSpec("tydiqa_goldp", tuple(f"tydiqa_goldp_{x}" for x in TYDIQA_TRAIN),
                description="TyDi QA GoldP train, en/ko/sw"),
    MixtureSpec("xnli", tuple(f"xnli_{x}" for x in XNLI_LANGUAGES),
                description="XNLI dev, 15 languages (its premises are stage-1 MLM text)"),
)}


def task_specs() -> list[TaskSpec]:
    return [TASKS[k] for k in sorted(TASKS)]


def get_spec(name: str) -> TaskSpec:
    if name not in TASKS:
        import difflib
        near = difflib.get_close_matches(name, list(TASKS), n=3)
        raise KeyError(f"unknown task {name!r}" + (f"; did you mean {', '.join(near)}?" if near else "")
                       + " (python -m atm.data list)")
    return TASKS[name]


# ------------------------------------------------------------------ counts and rates
@functools.lru_cache(maxsize=None)
def _count(name: str, split: str, root: str) -> int:
    return get_spec(name).reader(split, root).count()


def train_split(spec: TaskSpec) -> str:
    """The split a task trains on: "train", or its only labelled split when it has none (XNLI dev as MLM text)."""
    return "train" if "train" in spec.splits else sorted(spec.splits)[0]


def num_examples(name: str, split: str = "train", root: Optional[str] = None) -> int:
    """Rows of a task's split (or of a mixture: the sum over its tasks), cached per process.

    split="train" falls back to `train_split` for tasks without a train split."""
    if name in MIXTURES:
        return sum(num_examples(t, split, root) for t in MIXTURES[name].tasks)
    if split == "train":
        split = train_split(get_spec(name))
    return _count(name, split, data_dir(root))


def mixture_rates(name: str, root: Optional[str] = None, split: str = "train") -> dict[str, float]:
    """Normalised rates of a mixture's members: its explicit rates, else temperature rates."""
    spec = MIXTURES[name]
    if spec.rates is not None:
        total = sum(spec.rates.values())
        return {t: spec.rates[t] / total for t in spec.tasks}
    return temperature_rates({t: num_examples(t, split, root) for t in spec.tasks}, spec.alpha)


# ------------------------------------------------------------------------ raw examples
def raw_examples(name: str, split: str, root: Optional[str] = None, skip_malformed: bool = False) -> Iterator[dict]:
    """The task's examples in its kind's raw schema (strings; no vocabulary needed)."""
    spec = get_spec(name)
    reader = spec.reader(split, root, skip_malformed)
    for ex in reader:
        where = (reader.path, ex.get("line"))  # (file or BIO folder, line): named when a label is unknown
        if spec.kind == "text":
            text = ex["text"]
            yield {"text": spoken_form(text, spec.language) if spec.spoken else text}
        elif spec.kind in ("intent_slots", "ner"):
            out = {"text": ex.get("text") or " ".join(ex["words"]), "words": list(ex["words"]),
                   "word_tags": list(ex["word_tags"]) if ex["word_tags"] is not None else None, "where": where}
            if spec.kind == "intent_slots":
                out["intent"] = ex["intent"]
            yield out
        elif spec.kind == "sentence":
            yield {"text": ex["text"], "label": ex["label"], "where": where}
        elif spec.kind == "pair":
            yield {"premise": ex["premise"], "hypothesis": ex["hypothesis"], "label": ex["label"], "where": where}
        else:
            yield {"id": ex["id"], "question": ex["question"], "context": ex["context"], "answers": ex["answers"]}


# ------------------------------------------------------------------------ label inventories
def label_inventory(name: str, root: Optional[str] = None, skip_malformed: bool = False) -> dict[str, tuple[str, ...]]:
    """{"intent": ..., "slot": ...} / {"tag": ...} / {"label": ...} names in id order."""
    return _label_inventory(name, data_dir(root), skip_malformed)


@functools.lru_cache(maxsize=None)
def _label_inventory(name: str, root: str, skip_malformed: bool) -> dict[str, tuple[str, ...]]:
    spec = get_spec(name)
    if spec.labels == "massive":
        reference = readers.MassiveJsonl(os.path.join(root, "massive/data/en-US.jsonl"), skip_malformed=skip_malformed,
                                         config_key=f"task {name}: MASSIVE label inventory (ATM_DATA_DIR)")
        intents, slots = set(), set()
        for ex in reference:
            intents.add(ex["intent"])
            slots.update(s for s, _, _ in ex["slots"])
        return {"intent": tuple(sorted(intents)),
                "slot": ("O",) + tuple(f"{p}-{s}" for s in sorted(slots) for p in "BI")}
    if spec.labels == "atis":
        folder = os.path.join(root, spec.splits["train"].path)

        def lines(file):
            path = os.path.join(folder, file)
            readers.require_file(path, f"task {name}: label list")
            with open(path, encoding="utf-8") as f:
                return tuple(x.strip() for x in f if x.strip())
        return {"intent": lines("intent_label.txt"), "slot": lines("slot_label.txt")}
    if spec.labels in ("conll", "panx"):
        return {"tag": CONLL_TAGS if spec.labels == "conll" else PANX_TAGS}
    if spec.labels == "sst2":
        return {"label": ("0", "1")}
    if spec.labels == "nli":
        return {"label": readers.NLI_LABELS}
    return {}


def _lookup(table: Mapping[str, int], value: str, what: str, task: str) -> int:
    """A label's id; a label outside the inventory is an error (fine-tuning checks rows first, naming
    file and line, and maps to UNK only when config.finetune.unknown_labels asks: atm.data.labelled)."""
    if value in table:
        return table[value]
    raise ValueError(f"task {task}: {what} {value!r} is not in the label inventory ({len(table)} labels: "
                     f"{sorted(table)[:8]}...)")


# ------------------------------------------------------------------------ tokenization
def tokenize_example(name: str, raw: dict, vocab, labels: Optional[dict] = None,
                     root: Optional[str] = None) -> dict[str, Any]:
    """The declared features (lists of ints / ints) of one raw example; `labels` default to the
    task's label inventory in the data directory `root`."""
    spec = get_spec(name)
    labels = labels if labels is not None else label_inventory(name, data_dir(root))
    ids = {k: {v: i for i, v in enumerate(names)} for k, names in labels.items()}
    if spec.kind == "text":
        return {"input_ids": list(vocab.encode(raw["text"]))}
    if spec.kind in ("intent_slots", "ner"):
        table = ids["slot" if spec.kind == "intent_slots" else "tag"]
        tags = raw["word_tags"]
        word_labels = None if tags is None else [_lookup(table, t, "tag", name) for t in tags]
        aligned = readers.align_word_labels(raw["words"], word_labels, vocab)
        out = {"input_ids": aligned.token_ids, "word_ids": aligned.word_ids}
        if spec.kind == "intent_slots":
            out["slot_labels"] = aligned.labels
            out["intent"] = _lookup(ids["intent"], raw["intent"], "intent", name)
        else:
            out["labels"] = aligned.labels
        return out
    if spec.kind == "sentence":
        return {"input_ids": list(vocab.encode(raw["text"])),
                "label": -1 if raw["label"] is None else _lookup(ids["label"], raw["label"], "label", name)}
    if spec.kind == "pair":
        return {"input_ids": list(vocab.encode(raw["premise"])), "pair_input_ids": list(vocab.encode(raw["hypothesis"])),
                "label": _lookup(ids["label"], raw["label"], "label", name)}
    context = qa_context_tokens(raw, vocab)
    return {"question_ids": list(vocab.encode(raw["question"])), "context_ids": context.aligned.token_ids,
            "context_word_ids": context.aligned.word_ids, "answer_start": context.answer_start,
            "answer_end": context.answer_end}


@dataclasses.dataclass
class QAContext:
    aligned: readers.AlignedWords  # the context's subword tokens
    char_spans: list[tuple[int, int]]  # character (start, end) of each token in the context
    answer_start: int  # first and last context token of the first answer; -1 when there is none
    answer_end: int


def qa_context_tokens(raw: dict, vocab) -> QAContext:
    """Tokenize a QA example's context and locate its first answer at subword granularity."""
    context = raw["context"]
    offsets = readers.word_offsets(context)
    aligned = readers.align_word_labels([context[s:e] for s, e in offsets], None, vocab)
    spans = readers.token_char_spans(offsets, aligned, vocab)
    start = end = -1
    if raw["answers"]:
        a = raw["answers"][0]
        a_start, a_end = a["start"], a["start"] + len(a["text"])
        positions = [t for t, (s, e) in enumerate(spans) if s < a_end and a_start < e]
        if positions:
            start, end = positions[0], positions[-1]
    return QAContext(aligned, spans, start, end)


_TOKEN_FEATURES = {  # kind -> {feature: (rank, label inventory key or None for the text vocabulary)}
    "text": {"input_ids": (1, None)},
    "intent_slots": {"input_ids": (1, None), "slot_labels": (1, "slot"), "word_ids": (1, "words"),
                     "intent": (0, "intent")},
    "ner": {"input_ids": (1, None), "labels": (1, "tag"), "word_ids": (1, "words")},
    "sentence": {"input_ids": (1, None), "label": (0, "label")},
    "pair": {"input_ids": (1, None), "pair_input_ids": (1, None), "label": (0, "label")},
    "qa": {"question_ids": (1, None), "context_ids": (1, None), "context_word_ids": (1, "words"),
           "answer_start": (0, "positions"), "answer_end": (0, "positions")},
}
_RAW_FEATURES = {
    "text": {"text": 0}, "intent_slots": {"text": 0, "words": 1, "word_tags": 1, "intent_name": 0},
    "ner": {"text": 0, "words": 1, "word_tags": 1}, "sentence": {"text": 0}, "pair": {"premise": 0, "hypothesis": 0},
    "qa": {"id": 0, "question": 0, "context": 0},
}


def _raw_fields(kind: str, raw: dict) -> dict:
    out = {}
    for key in _RAW_FEATURES[kind]:
        if key == "intent_name":
            out[key] = raw["intent"]
        elif key == "word_tags":
            out[key] = raw[key] if raw[key] is not None else [""] * len(raw["words"])
        else:
            out[key] = raw[key]
    return out


@functools.lru_cache(maxsize=None)
def _reader_source_class():
    seqio, _ = _seqio()

    class ReaderSource(seqio.FunctionDataSource):
        """A FunctionDataSource whose example counts come from the Python reader, lazily."""

        def __init__(self, name: str, dataset_fn, root: str):
            super().__init__(dataset_fn, splits=tuple(get_spec(name).splits), caching_permitted=False)
            self._task_name, self._root = name, root

        def num_input_examples(self, split: str) -> Optional[int]:
            return _count(self._task_name, split, self._root)

        def get_dataset(self, split: str = "train", shuffle: bool = True, seed: Optional[int] = None,
                        shard_info=None, *, sequence_length=None, use_cached=False, num_epochs=1):
            # The examples are materialised in memory (see _columns), so the base class's warning
            # about shuffling an uncached generator does not apply; sharding is by example.
            ds = self._dataset_fn(split=split, shuffle_files=shuffle)
            return ds.shard(shard_info.num_shards, shard_info.index) if shard_info and shard_info.num_shards > 1 else ds

    return ReaderSource


@functools.lru_cache(maxsize=8)
def _load_vocab(path: str) -> SentencePieceVocabulary:
    return SentencePieceVocabulary(path)


@functools.lru_cache(maxsize=16)
def _columns(name: str, split: str, vocab_path: str, root: str) -> dict[str, list]:
    """All examples of a split, tokenized, as columns (one list per feature).

    The staged data sets are small (the largest split is about 60k rows), so a split is read
    and tokenized once per process and kept in memory: tf.data then slices tensors instead of
    pulling from a Python generator (many concurrent `from_generator` sources deadlock on a
    2-core machine when a Mixture interleaves them)."""
    spec = get_spec(name)
    labels = label_inventory(name, root) if spec.labels else {}
    vocab = _load_vocab(vocab_path)
    keys = list(_TOKEN_FEATURES[spec.kind]) + list(_RAW_FEATURES[spec.kind])
    columns: dict[str, list] = {k: [] for k in keys}
    for raw in raw_examples(name, split, root):
        row = {**tokenize_example(name, raw, vocab, labels), **_raw_fields(spec.kind, raw)}
        for k in keys:
            columns[k].append(row[k])
    if not columns[keys[0]]:
        raise ValueError(f"task {name}, split {split}: no examples in {spec.files(split, root)}")
    return columns


def _tensor(values: list, rank: int, dtype) -> Any:
    _, tf = _seqio()
    if rank == 0:
        return tf.constant(values, dtype)
    lengths = np.array([len(v) for v in values], np.int64)
    flat = [x for v in values for x in v]
    flat = np.array(flat, np.int32) if dtype == tf.int32 else np.array(flat, object)
    return tf.RaggedTensor.from_row_lengths(tf.constant(flat, dtype, shape=[len(flat)]), lengths)


def _dataset(name: str, split: str, vocab_path: str, root: str):
    _, tf = _seqio()
    kind = get_spec(name).kind
    columns = _columns(name, split, vocab_path, root)
    tensors = {k: _tensor(columns[k], rank, tf.int32) for k, (rank, _) in _TOKEN_FEATURES[kind].items()}
    tensors.update({k: _tensor(columns[k], rank, tf.string) for k, rank in _RAW_FEATURES[kind].items()})
    return tf.data.Dataset.from_tensor_slices(tensors)


def _make_task(name: str, vocab_path: str, root: str):
    seqio, tf = _seqio()
    spec = get_spec(name)
    labels = label_inventory(name, root) if spec.labels else {}

    def dataset_fn(split, shuffle_files, seed=None):
        del shuffle_files, seed  # one file per split; the Task shuffles examples
        return _dataset(name, split.decode() if isinstance(split, bytes) else split, vocab_path, root)

    text_vocab = seqio.SentencePieceVocabulary(vocab_path)
    features = {}
    for key, (rank, inventory) in _TOKEN_FEATURES[spec.kind].items():
        if inventory is None:
            vocabulary = text_vocab
        else:
            vocabulary = seqio.PassThroughVocabulary(size=len(labels.get(inventory, ())) or 1)
        features[key] = seqio.Feature(vocabulary=vocabulary, add_eos=False, dtype=tf.int32, rank=rank)
    return seqio.Task(name, source=_reader_source_class()(name, dataset_fn, root), output_features=features)


# ------------------------------------------------------------------------ registration
def _replace(registry, name: str):
    registry.remove(name)  # a no-op when absent


def register_mixture(name: str, tasks: Sequence[str], rates: Optional[Mapping[str, float]] = None,
                     alpha: float = DEFAULT_ALPHA, root: Optional[str] = None):
    """A seqio Mixture of registered tasks/mixtures with explicit `rates` or temperature rates.

    Temperature rates q_k ∝ n_k^alpha use the train-split sizes (counted lazily, when seqio first
    asks for a rate)."""
    tasks = tuple(tasks)
    seqio, _ = _seqio()
    if rates is not None and set(rates) != set(tasks):
        raise ValueError(f"mixture {name}: rates {sorted(rates)} do not name exactly its tasks {sorted(tasks)}")
    MIXTURES[name] = MixtureSpec(name, tasks, dict(rates) if rates is not None else None, alpha)
    root = data_dir(root)

    def rate(task_name):
        return lambda _task: mixture_rates(name, root)[task_name]

    if rates is not None:  # numbers: seqio needs them for sub-mixtures
        members = [(t, float(rates[t])) for t in tasks]
    elif any(t in MIXTURES for t in tasks):  # sub-mixtures need numbers now
        members = list(mixture_rates(name, root).items())
    else:  # tasks only: counted when seqio first asks for a rate
        members = [(t, rate(t)) for t in tasks]
    _replace(seqio.MixtureRegistry, name)
    return seqio.MixtureRegistry.add(name, members)


def register(vocab_path: str, data_dir_override: Optional[str] = None, tasks: Optional[Sequence[str]] = None,
             mixtures: bool = True) -> list[str]:
    """Register (or re-register) the seqio Tasks (all, or `tasks`) and, when `mixtures`, the
    Mixtures whose members are all registered; returns the names. Files are only read when a
    dataset, a count or a label inventory is first asked for."""
    if not os.path.isfile(vocab_path):
        raise FileNotFoundError(f"{vocab_path}: no such SentencePiece model (config.data.vocab); "
                                "train one with python -m atm.data.vocab")
    seqio, _ = _seqio()
    root = data_dir(data_dir_override)
    names = sorted(tasks) if tasks is not None else sorted(TASKS)
    for name in names:
        get_spec(name)
        _replace(seqio.TaskRegistry, name)
        seqio.TaskRegistry.add_provider(name, _make_task(name, vocab_path, root))
    registered = list(names)
    if mixtures:
        done = set(names)
        for spec in list(MIXTURES.values()):  # in definition order: sub-mixtures come first
            if all(t in done for t in spec.tasks):
                register_mixture(spec.name, spec.tasks, spec.rates, spec.alpha, root)
                done.add(spec.name)
                registered.append(spec.name)
    logging.info("registered %d seqio tasks and mixtures over %s", len(registered), root)
    return registered
