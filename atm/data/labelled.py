"""Labelled examples for fine-tuning, and their batches.

A task is a registered one (`python -m atm.data list`) or, for intent + slots, any folder in the
ATIS/SNIPS BIO layout (`config.finetune.bio_folder`). Rows become `[CLS] tokens [SEP]` with word
labels on each word's first subword (IGNORE_INDEX elsewhere), as `atm.data.tasks.tokenize_example`
aligns them. QA questions become one or more overlapping windows (`atm.data.qa`), each a row.

`LabelledBatcher` is, like the MLM batcher, a pure function of (seed, step) for training; for
evaluation it walks the split in order and pads the last batch with rows of `example_weight` 0.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Sequence

import numpy as np

from atm.data import qa, readers, tasks
from atm.data.pipeline import StreamPosition, stream_fingerprint

IGNORE = readers.IGNORE_INDEX
TOKEN_LABEL_KEYS = ("slot_labels", "labels")  # intent_slots, ner


@dataclasses.dataclass
class LabelledSplit:
    examples: list[dict]  # tasks.tokenize_example output
    label_names: dict[str, tuple[str, ...]]
    kind: str
    questions: list[qa.Question] | None = None  # QA: examples are windows of these questions


def _bio_folder_labels(folder: str) -> dict[str, tuple[str, ...]]:
    """Label names of a BIO folder: its intent_label.txt/slot_label.txt when present, else every
    intent and tag that occurs in its splits (so an eval-only tag is a known, never-predicted class)."""
    lists = [os.path.join(folder, n) for n in ("intent_label.txt", "slot_label.txt")]
    if all(os.path.exists(p) for p in lists):
        names = [tuple(x.strip() for x in open(p, encoding="utf-8") if x.strip()) for p in lists]
        return {"intent": names[0], "slot": names[1]}
    intents, tags = set(), {"O"}
    for split in ("train", "dev", "test"):
        if not os.path.isdir(os.path.join(folder, split)):
            continue
        for row in readers.BioFolder(folder, split, skip_malformed=True, config_key="config.finetune.bio_folder"):
            intents.add(row["intent"])
            tags.update(row["word_tags"])
    return {"intent": tuple(sorted(intents)), "slot": ("O",) + tuple(sorted(tags - {"O"}))}


def _raw_rows(finetune_config, split: str, data_dir: str | None, skip_malformed: bool):
    """(raw rows, label names, kind, task name for tokenize_example) of one split, cut to
    config.finetune.label_subset."""
    raws, names, kind, task = _all_raw_rows(finetune_config, split, data_dir, skip_malformed)
    where = finetune_config.bio_folder or f"task {finetune_config.task}"
    raws, names = apply_label_subset(finetune_config, raws, names, kind, where)
    return raws, names, kind, task


def raw_rows(finetune_config, split: str, data_dir: str | None, skip_malformed: bool, label_subset: bool = True):
    """(raw rows, label names, kind) of one split; `label_subset=False` ignores config.finetune.label_subset
    (every row of the data set: the text an amalgamated student trains on)."""
    read = _raw_rows if label_subset else _all_raw_rows
    raws, names, kind, _ = read(finetune_config, split, data_dir, skip_malformed)
    return raws, names, kind


def _all_raw_rows(finetune_config, split: str, data_dir: str | None, skip_malformed: bool):
    folder = finetune_config.bio_folder
    if folder:
        split_name = {"train": "train", "validation": "dev", "test": "test"}[split]
        rows = readers.BioFolder(folder, split_name, skip_malformed=skip_malformed,
                                 config_key="config.finetune.bio_folder")
        raws = ({"text": " ".join(r["words"]), "words": r["words"], "word_tags": r["word_tags"],
                 "intent": r["intent"], "where": (rows.path, r["line"])} for r in rows)
        # tokenize_example only needs an intent_slots task name; the labels are passed explicitly
        return raws, _bio_folder_labels(folder), "intent_slots", "atis"
    task = finetune_config.task
    spec = tasks.get_spec(task)
    if spec.kind not in ("intent_slots", "ner", "sentence", "pair", "qa"):
        raise ValueError(f"config.finetune.task={task!r} is a {spec.kind!r} task; fine-tuning supports "
                         "intent_slots, ner, sentence, pair and qa tasks")
    labelled_splits = [name for name in spec.splits if not name.endswith(("_unlabelled", "_no_answers"))]
    if len(labelled_splits) == 1:  # XNLI: only dev is labelled here; TyDi QA GoldP: only train
        raws = holdout_part(tasks.raw_examples(task, labelled_splits[0], data_dir, skip_malformed),
                            split == "train", finetune_config.holdout_fraction, finetune_config.holdout_seed)
    elif split in spec.splits:
        raws = tasks.raw_examples(task, split, data_dir, skip_malformed)
    else:
        raise ValueError(f"config.finetune: task {task} has no split {split!r} (it has {sorted(spec.splits)})")
    return raws, tasks.label_inventory(task, data_dir, skip_malformed), spec.kind, task


def label_names(finetune_config, data_dir: str | None, skip_malformed: bool = False) -> dict[str, tuple[str, ...]]:
    """The label inventory of `finetune_config`'s task or BIO folder, without tokenizing any row."""
    if finetune_config.get("bio_folder"):
        return _bio_folder_labels(finetune_config.bio_folder)
    return tasks.label_inventory(finetune_config.task, data_dir, skip_malformed)


def task_description(finetune_config) -> str:
    """'task sst2' or 'BIO folder /x/y': what a fine-tuning config trains on, for errors."""
    folder = finetune_config.get("bio_folder")
    return f"BIO folder {folder}" if folder else f"task {finetune_config.get('task')}"


# The sequence label of each kind (raw field, label inventory): what config.finetune.label_subset selects on.
SEQUENCE_LABEL = {"intent_slots": ("intent", "intent"), "sentence": ("label", "label"), "pair": ("label", "label")}
LABEL_SUBSET_KEY = "config.finetune.label_subset"


def select_labels(subset: str, names: tuple[str, ...], key: str = LABEL_SUBSET_KEY) -> tuple[str, ...]:
    """The labels of `names` (in their order) that `subset` keeps:

        "scenario:alarm,calendar"  labels whose scenario (the part before the first "_": MASSIVE's
                                   alarm_set → alarm) is listed
        "part:k/n"                 the k-th (1-based) of n contiguous, near-equal parts of the sorted labels
        "a,b,c"                    exactly these labels
    A scenario or label that is not known, or a subset that keeps nothing, is an error naming `key`."""
    subset = subset.strip()
    if subset.startswith("scenario:"):
        wanted = [s.strip() for s in subset[len("scenario:"):].split(",") if s.strip()]
        scenarios = sorted({n.split("_")[0] for n in names})
        unknown = [s for s in wanted if s not in scenarios]
        if unknown or not wanted:
            raise ValueError(f"{key}={subset!r}: unknown scenario(s) {unknown or '(none given)'}; the scenarios "
                             f"are {scenarios}")
        return tuple(n for n in names if n.split("_")[0] in wanted)
    if subset.startswith("part:"):
        k_n = subset[len("part:"):]
        try:
            k, n = (int(x) for x in k_n.split("/"))
        except ValueError:
            raise ValueError(f"{key}={subset!r}: write part:k/n with integers, e.g. part:2/4") from None
        if not 1 <= k <= n <= len(names):
            raise ValueError(f"{key}={subset!r}: need 1 <= k <= n <= {len(names)} (the number of labels)")
        ordered = sorted(names)
        bounds = [round(i * len(ordered) / n) for i in range(n + 1)]
        keep = set(ordered[bounds[k - 1]:bounds[k]])
        return tuple(x for x in names if x in keep)
    wanted = [s.strip() for s in subset.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in names]
    if unknown or not wanted:
        raise ValueError(f"{key}={subset!r}: unknown label(s) {unknown or '(none given)'} ({len(names)} labels, "
                         f"e.g. {list(names[:6])}; or use scenario:... / part:k/n)")
    return tuple(n for n in names if n in wanted)


def apply_label_subset(finetune_config, raws, names: dict, kind: str, where: str):
    """(rows whose sequence label is in config.finetune.label_subset, label names with that inventory cut
    to the subset); unchanged when the subset is empty. The head of such a run covers the subset only."""
    subset = finetune_config.get("label_subset", "")
    if not subset:
        return raws, names
    if kind not in SEQUENCE_LABEL:
        raise ValueError(f"{LABEL_SUBSET_KEY}={subset!r}: {where} is a {kind!r} task without a sequence label; "
                         f"label subsets apply to {sorted(SEQUENCE_LABEL)} tasks")
    field, inventory = SEQUENCE_LABEL[kind]
    kept = select_labels(subset, names[inventory])
    keep = set(kept)
    return (r for r in raws if r[field] in keep), {**names, inventory: kept}


def label_names_and_kind(finetune_config, data_dir: str | None, skip_malformed: bool = False) -> tuple[dict, str]:
    """(label names after config.finetune.label_subset, kind) of a fine-tuning config, reading no row
    of a registered task (a BIO folder without label lists is scanned)."""
    _, names, kind, _ = _raw_rows(finetune_config, "train", data_dir, skip_malformed)
    return names, kind


def in_holdout(index: int, fraction: float, seed: int) -> bool:
    """The documented, seeded rule for tasks with one labelled split (XNLI dev, TyDi QA GoldP train):
    "train" is the rest of that split, any other split the held-out part. Row `index` is held out
    for evaluation when blake2b("seed:index") read as a fraction of 2^32 is below `fraction`."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") / 2 ** 32 < fraction


def holdout_part(rows, train: bool, fraction: float, seed: int):
    """The training part (train=True) or the held-out evaluation part of a single split."""
    return (row for i, row in enumerate(rows) if in_holdout(i, fraction, seed) != train)


def training_texts(finetune_config, data_dir: str | None, skip_malformed: bool) -> list[str]:
    """The train split's text, for training a vocabulary before anything is tokenized."""
    raws, _, _, _ = _raw_rows(finetune_config, "train", data_dir, skip_malformed)
    fields = ("text", "premise", "hypothesis", "question", "context")
    return [" ".join(filter(None, (r.get(f) for f in fields))) for r in raws]


UNKNOWN_LABEL_POLICIES = ("error", "unk")
# Each kind's label fields: raw field → (its label inventory, the BIO file it comes from).
LABEL_FIELDS = {"intent_slots": {"intent": ("intent", "label"), "word_tags": ("slot", "seq.out")},
                "ner": {"word_tags": ("tag", None)}, "sentence": {"label": ("label", None)},
                "pair": {"label": ("label", None)}}


def unknown_labels(raw: dict, names: dict[str, tuple[str, ...]], kind: str) -> list[tuple[str, str]]:
    """(field, label) of every label of `raw` outside the inventory `names`."""
    found = []
    for field, (inventory, _) in LABEL_FIELDS.get(kind, {}).items():
        values = raw.get(field)
        found += [(field, v) for v in ([values] if isinstance(values, str) else values or ())
                  if v not in names[inventory]]
    return found


def check_labels(raws, names: dict, kind: str, policy: str, skip_malformed: bool, counts: dict):
    """Rows with a label outside the inventory: an error naming file:line and the label; skipped
    and counted with skip_malformed; mapped to the inventory's UNK, counted, only when the policy
    is "unk" (JointBERT's ATIS protocol: test labels unseen in train become UNK)."""
    fields = LABEL_FIELDS.get(kind, {})
    for raw in raws:
        unknown = unknown_labels(raw, names, kind)
        if not unknown:
            yield raw
            continue
        path, line = raw.get("where", ("?", None))
        if policy == "unk":
            raw = dict(raw)
            for field in {f for f, _ in unknown}:
                known = names[fields[field][0]]
                if "UNK" not in known:
                    raise ValueError(f"config.finetune.unknown_labels='unk': the {fields[field][0]} labels of {path} "
                                     f"have no UNK")
                value = raw[field]
                raw[field] = "UNK" if isinstance(value, str) else [v if v in known else "UNK" for v in value]
            counts["mapped_to_unk"] = counts.get("mapped_to_unk", 0) + len(unknown)
            yield raw
            continue
        field, value = unknown[0]
        inventory, bio_file = fields[field]
        error = readers.DataFormatError(
            os.path.join(path, bio_file) if bio_file else path, line, field,
            f"label {value!r} is not among the {len(names[inventory])} {inventory} labels; skip such rows with "
            f"config.data.skip_malformed=True or map them to UNK with config.finetune.unknown_labels='unk'")
        if not skip_malformed:
            raise error
        counts["unknown_label_rows_skipped"] = counts.get("unknown_label_rows_skipped", 0) + 1
        counts.setdefault("first", str(error))


def load_split(finetune_config, split: str, vocab, data_dir: str | None, skip_malformed: bool,
               seq_len: int = 0) -> LabelledSplit:
    """Tokenized, label-aligned examples of one split of `config.finetune.task` (or its BIO folder);
    QA questions become windows of `seq_len` tokens."""
    raws, names, kind, task = _raw_rows(finetune_config, split, data_dir, skip_malformed)
    counts: dict = {}
    raws = check_labels(raws, names, kind, finetune_config.unknown_labels, skip_malformed, counts)
    questions = None
    if kind == "qa":
        questions, examples = [], []
        for raw in raws:
            question, windows = qa.question_windows(raw, len(questions), vocab, seq_len,
                                                    finetune_config.doc_stride, finetune_config.max_query_tokens)
            questions.append(question)
            examples.extend(windows)
    else:
        examples = [tasks.tokenize_example(task, raw, vocab, labels=names, root=data_dir) for raw in raws]
    where = finetune_config.bio_folder or finetune_config.task
    if counts.get("mapped_to_unk"):
        print(f"{where} {split}: mapped {counts['mapped_to_unk']} labels outside the label inventory to UNK "
              f"(config.finetune.unknown_labels='unk')", flush=True)
    if counts.get("unknown_label_rows_skipped"):
        print(f"WARNING: {where} {split}: skipped {counts['unknown_label_rows_skipped']} rows with a label outside "
              f"the inventory (config.data.skip_malformed=True); the first: {counts['first']}", flush=True)
    if not examples:
        raise ValueError(f"config.finetune: split {split!r} of {where} has no rows")
    return LabelledSplit(examples, names, kind, questions)


@dataclasses.dataclass
class LabelledBatcher(StreamPosition):
    split: LabelledSplit
    seq_len: int
    batch_size: int  # global
    seed: int
    cls_id: int
    sep_id: int
    pad_id: int
    shuffle: bool = True  # False: walk the split in order (evaluation)
    process_index: int = 0
    process_count: int = 1

    def __post_init__(self):
        if self.batch_size % self.process_count:
            raise ValueError(f"batch size {self.batch_size} is not divisible by the {self.process_count} processes")
        self._permutation = (-1, None)  # (epoch, order) of the last epoch used

    @property
    def local_batch_size(self) -> int:
        return self.batch_size // self.process_count

    @property
    def num_batches(self) -> int:
        """Batches in one ordered pass over the split (evaluation)."""
        return -(-len(self.split.examples) // self.batch_size)

    def _index(self, global_row: int) -> int | None:
        n = len(self.split.examples)
        if not self.shuffle:
            return global_row if global_row < n else None
        epoch, offset = divmod(global_row, n)
        if self._permutation[0] != epoch:
            self._permutation = (epoch, np.random.default_rng([self.seed, epoch]).permutation(n))
        return int(self._permutation[1][offset])

    def _row(self, index: int | None) -> dict[str, np.ndarray]:
        L = self.seq_len
        row = {"input_ids": np.full(L, self.pad_id, np.int32), "segment_ids": np.zeros(L, np.int32),
               "positions": np.arange(L, dtype=np.int32), "token_types": np.zeros(L, np.int32),
               "token_labels": np.full(L, IGNORE, np.int32), "word_ids": np.full(L, -1, np.int32),
               "label": np.zeros((), np.int32), "start_position": np.zeros((), np.int32),
               "end_position": np.zeros((), np.int32), "example_index": np.full((), -1, np.int32),
               "example_weight": np.zeros((), np.float32)}
        if index is None:
            return row
        ex = self.split.examples[index]
        row["example_index"] = np.int32(index)
        row["example_weight"] = np.float32(1.0)
        if "question_index" in ex:  # a QA window, laid out already (atm.data.qa)
            n = len(ex["input_ids"])
            row["input_ids"][:n] = ex["input_ids"]
            row["segment_ids"][:n] = 1
            row["token_types"][ex["first_context_type"]:n] = 1
            row["start_position"] = np.int32(ex["start_position"])
            row["end_position"] = np.int32(ex["end_position"])
            return row
        first = [self.cls_id] + list(ex["input_ids"]) + [self.sep_id]
        second = list(ex.get("pair_input_ids", []))
        second = second + [self.sep_id] if second else []
        if len(first) + len(second) > L:  # truncate the longer part first, keep the [SEP]s
            keep_second = min(len(second), max(L // 2, L - len(first)))
            second = second[:keep_second - 1] + [self.sep_id] if second else []
            first = first[:L - len(second) - 1] + [self.sep_id]
        ids = first + second
        row["input_ids"][:len(ids)] = ids
        row["segment_ids"][:len(ids)] = 1
        row["token_types"][len(first):len(ids)] = 1
        for key in TOKEN_LABEL_KEYS:
            if key in ex and ex[key] is not None:
                labels = np.asarray(ex[key], np.int32)[:len(first) - 2]
                row["token_labels"][1:1 + len(labels)] = labels
        if "word_ids" in ex:
            word_ids = np.asarray(ex["word_ids"], np.int32)[:len(first) - 2]
            row["word_ids"][1:1 + len(word_ids)] = word_ids
        row["label"] = np.int32(ex.get("intent", ex.get("label", 0)))
        return row

    def words_per_row(self) -> list[int]:
        """Words (labelled tokens) of each row within seq_len, in split order."""
        return [len(set(self._row(i)["word_ids"].tolist()) - {-1}) for i in range(len(self.split.examples))]

    def check_token_query_slots(self, slots: int, where: str):
        """Every row's [CLS] + word-first tokens fit in `slots` query positions (heads.token_query_positions)."""
        if slots < 2:
            raise ValueError(f"config.finetune.token_query_slots={slots}: need [CLS] and at least one word (>= 2)")
        words = self.words_per_row()
        if words and max(words) + 1 > slots:
            row = int(np.argmax(words))
            raise ValueError(f"config.finetune.token_query_slots={slots}: {where}, row {row} has {words[row]} words "
                             f"within data.seq_len={self.seq_len}; set it to at least {max(words) + 1}")

    def batch(self, step: int) -> dict[str, np.ndarray]:
        first = step * self.batch_size + self.process_index * self.local_batch_size
        rows = [self._row(self._index(r)) for r in range(first, first + self.local_batch_size)]
        return {k: np.stack([r[k] for r in rows]) for k in rows[0]}

    def fingerprint(self) -> str:
        return stream_fingerprint([self.seq_len, self.batch_size, self.seed, len(self.split.examples)],
                                  [ex["input_ids"] for ex in self.split.examples[:500]])


def word_tags_from_tokens(token_preds: Sequence[int], word_ids: Sequence[int], num_words: int,
                          names: Sequence[str]) -> list[str]:
    """Each word's predicted tag: the prediction on its first subword."""
    tags = ["O"] * num_words
    seen = set()
    for pred, w in zip(token_preds, word_ids):
        if 0 <= w < num_words and w not in seen:
            seen.add(w)
            tags[w] = names[int(pred)]
    return tags
