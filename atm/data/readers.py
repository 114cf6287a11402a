"""Plain-Python readers for the local data formats atm trains and evaluates on.

Each reader is an iterable of dict examples; it needs no TensorFlow, so it works
in a notebook, a test or a seqio source alike (see `atm.data.tasks`).

| reader          | format                                                             |
|-----------------|--------------------------------------------------------------------|
| `TextLines`     | plain text, one example per line (blank lines skipped)             |
| `MassiveJsonl`  | MASSIVE 1.1 jsonl: `utt`, `annot_utt` "[slot : value]", `intent` ... |
| `BioFolder`     | ATIS/SNIPS JointBERT layout: SPLIT/{seq.in, seq.out, label}         |
| `NliTsv`        | XNLI (XTREME: premise, hypothesis, label; no header) or MNLI/XNLI  |
|                 | with a header naming sentence1/sentence2/gold_label                |
| `SentenceTsv`   | SST-2 (GLUE): header `sentence<TAB>label` (label optional)         |
| `ConllNer`      | CoNLL-2003 (`tok POS chunk NER`, spaces) and PAN-X (`tok<TAB>tag`);|
|                 | blank line between sentences; a 1-column file is unlabelled        |
| `SquadJson`     | SQuAD-1.1 json (TyDi QA GoldP)                                     |

Bad input. A malformed row raises `DataFormatError` naming the file, the line
(1-based; a JSON path for SQuAD json) and the field. With `skip_malformed=True`
such rows are skipped instead; `reader.num_malformed` counts them (reset on each
pass) and a warning with the count is logged at the end of the pass. A missing
file raises `FileNotFoundError` naming the path and, when the caller passed one,
the config key that led to it.

Word-level labels meet subword tokens in `align_word_labels` (first-subword
labelling; the other subwords get `IGNORE_INDEX`), and token-level predictions
go back to words and character spans with `word_predictions` and
`predictions_to_spans`.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
from typing import Any, Iterator, Optional, Sequence

from absl import logging

IGNORE_INDEX = -100  # label of positions that carry no loss: non-first subwords, specials, padding
NLI_LABELS = ("entailment", "neutral", "contradiction")
_TAG = re.compile(r"^(O|[BI]-\S+)$")


class DataFormatError(ValueError):
    """A malformed row: `path`, `line` (1-based; None for a JSON path), `field`."""

    def __init__(self, path: str, line: Optional[int], field: str, message: str):
        self.path, self.line, self.field = path, line, field
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: field {field!r}: {message}")


@dataclasses.dataclass
class _Bad:
    path: str
    line: Optional[int]
    field: str
    message: str


def require_file(path: str, config_key: Optional[str]) -> str:
    if not os.path.isfile(path):
        what = "directory, not a file" if os.path.isdir(path) else "does not exist"
        prefix = f"{config_key}: " if config_key else ""
        raise FileNotFoundError(f"{prefix}{path} {what}")
    return path


def _row_lines(path: str) -> int:
    """Lines of a file, not counting trailing blank lines."""
    last_nonblank = 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if raw.strip():
                last_nonblank = number
    return last_nonblank


def _lines(path: str) -> Iterator[tuple[int, Any]]:
    """(1-based line number, text without the newline, or a _Bad for invalid UTF-8)."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                yield number, raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                yield number, _Bad(path, number, "utf-8", f"not valid UTF-8 ({e.reason} at byte {e.start})")


_WARNED: set[tuple[str, int]] = set()


class Reader:
    """Base: iterate to get examples; `num_rows` and `num_malformed` describe the last pass."""
    format = "?"

    def __init__(self, path: str, *, skip_malformed: bool = False, config_key: Optional[str] = None):
        self.path = path
        self.skip_malformed = skip_malformed
        self.config_key = config_key
        self.num_rows = 0
        self.num_malformed = 0
        self.first_malformed: Optional[DataFormatError] = None
        self._check_files()

    def _check_files(self):
        require_file(self.path, self.config_key)

    def _parse(self) -> Iterator[Any]:  # yields dicts and _Bad
        raise NotImplementedError

    def __iter__(self) -> Iterator[dict]:
        self.num_rows, self.num_malformed, self.first_malformed = 0, 0, None
        for item in self._parse():
            if isinstance(item, _Bad):
                error = DataFormatError(item.path, item.line, item.field, item.message)
                if not self.skip_malformed:
                    raise error
                self.num_malformed += 1
                self.first_malformed = self.first_malformed or error
                continue
            self.num_rows += 1
            yield item
        if self.num_malformed and (self.path, self.num_malformed) not in _WARNED:  # once per file, not per pass
            _WARNED.add((self.path, self.num_malformed))
            logging.warning("%s: skipped %d malformed rows (skip_malformed=True); the first: %s",
                            self.path, self.num_malformed, self.first_malformed)

    def count(self) -> int:
        """Number of (well-formed) examples; also sets `num_malformed`."""
        return sum(1 for _ in self)

    def __repr__(self):
        return f"{type(self).__name__}({self.path!r})"


# ----------------------------------------------------------------------------- text
class TextLines(Reader):
    """One example per line: {"text", "line"}; surrounding whitespace stripped, blank lines skipped."""
    format = "text"

    def _parse(self):
        for number, text in _lines(self.path):
            if isinstance(text, _Bad):
                yield text
            elif text.strip():
                yield {"text": text.strip(), "line": number}


# -------------------------------------------------------------------- word helpers
def word_offsets(text: str) -> list[tuple[int, int]]:
    """Character (start, end) of each whitespace-separated word of `text`."""
    return [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]


def find_word_offsets(text: str, words: Sequence[str]) -> list[tuple[int, int]]:
    """Character spans of `words` found in order in `text` (e.g. PAN-X zh, whose words are characters)."""
    spans, position = [], 0
    for i, word in enumerate(words):
        start = text.find(word, position)
        if start < 0:
            raise ValueError(f"word {i} {word!r} not found in {text!r} after character {position}")
        spans.append((start, start + len(word)))
        position = start + len(word)
    return spans


def spans_to_bio(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[str, int, int]]) -> list[str]:
    """Word-level BIO tags from character spans (label, start, end): a word overlapping a span is
    tagged with it, B- on the first such word, I- after; a zero-width span tags nothing."""
    tags = ["O"] * len(offsets)
    for label, start, end in spans:
        first = True
        for w, (ws, we) in enumerate(offsets):
            if ws < end and start < we and tags[w] == "O":
                tags[w] = ("B-" if first else "I-") + label
                first = False
    return tags


def bio_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(label, first word, end word exclusive) of each entity in BIO tags; an I- tag that does not
    continue an entity of its label starts one (the conlleval convention)."""
    spans, current = [], None
    for i, tag in enumerate(list(tags) + ["O"]):
        tag = tag or "O"
        kind, label = (tag[0], tag[2:]) if tag != "O" else ("O", "")
        if current is not None and (kind != "I" or label != current[0]):
            spans.append((current[0], current[1], i))
            current = None
        if kind in ("B", "I") and current is None:
            current = (label, i)
    return spans


# -------------------------------------------------------------------------- MASSIVE
def parse_annot_utt(annot_utt: str) -> tuple[str, list[tuple[str, int, int]]]:
    """`"wake me at [time : five am]"` -> ("wake me at five am", [("time", 11, 18)]).

    Raises ValueError (with the character position) on brackets that do not pair up or a
    slot that is not `[name : value]`."""
    text, spans, i = [], [], 0
    length = 0
    while i < len(annot_utt):
        c = annot_utt[i]
        if c == "[":
            close = annot_utt.find("]", i)
            inner = annot_utt[i + 1:close] if close >= 0 else ""
            if close < 0:
                raise ValueError(f"'[' at character {i} is never closed")
            if "[" in inner:
                raise ValueError(f"'[' at character {i} is nested in another slot")
            sep = inner.find(" : ")
            name = inner[:sep].strip() if sep >= 0 else ""
            if sep < 0 or not name or " " in name:
                raise ValueError(f"slot at character {i} is not '[name : value]': {annot_utt[i:close + 1]!r}")
            value = inner[sep + 3:]
            spans.append((name, length, length + len(value)))
            text.append(value)
            length += len(value)
            i = close + 1
        elif c == "]":
            raise ValueError(f"']' at character {i} has no '['")
        else:
            text.append(c)
            length += 1
            i += 1
    return "".join(text), spans


class MassiveJsonl(Reader):
    """MASSIVE 1.1 jsonl. Each example: id, locale, partition, scenario, intent, text (= utt),
    words, word_tags (BIO), slots [(slot, char start, char end)] in text, line.

    `partition` ("train", "dev", "test") keeps only that partition's rows. The text with the
    brackets of annot_utt removed must reproduce utt exactly, else the row is malformed."""
    format = "massive"
    REQUIRED = ("utt", "annot_utt", "intent", "locale", "partition")

    def __init__(self, path: str, partition: Optional[str] = None, **kwargs):
        super().__init__(path, **kwargs)
        self.partition = partition

    def _parse(self):
        for number, line in _lines(self.path):
            if isinstance(line, _Bad):
                yield line
                continue
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                yield _Bad(self.path, number, "json", f"invalid JSON: {e.msg} at column {e.colno}")
                continue
            if not isinstance(row, dict):
                yield _Bad(self.path, number, "json", f"expected an object, got {type(row).__name__}")
                continue
            missing = [k for k in self.REQUIRED if not isinstance(row.get(k), str)]
            if missing:
                yield _Bad(self.path, number, missing[0], "missing or not a string")
                continue
            if self.partition is not None and row["partition"] != self.partition:
                continue
            try:
                text, slots = parse_annot_utt(row["annot_utt"])
            except ValueError as e:
                yield _Bad(self.path, number, "annot_utt", str(e))
                continue
            if text != row["utt"]:
                yield _Bad(self.path, number, "annot_utt",
                           f"without brackets it reads {text!r}, but utt is {row['utt']!r}")
                continue
            offsets = word_offsets(text)
            yield {"id": str(row.get("id", number)), "locale": row["locale"], "partition": row["partition"],
                   "scenario": row.get("scenario", ""), "intent": row["intent"], "text": text,
                   "words": [text[s:e] for s, e in offsets], "word_tags": spans_to_bio(offsets, slots),
                   "slots": slots, "line": number}


# ----------------------------------------------------------------- ATIS/SNIPS BIO
class BioFolder(Reader):
    """JointBERT layout: FOLDER/SPLIT/{seq.in, seq.out, label}, line i of each file = example i.

    seq.in: whitespace-separated words; seq.out: one BIO tag per word; label: the intent
    (ATIS joins multiple intents with '#'; kept as one string). Each example: text (the words
    joined by one space), words, word_tags, intent, line."""
    format = "bio"
    FILES = ("seq.in", "seq.out", "label")

    def __init__(self, folder: str, split: str, **kwargs):
        self.folder, self.split = folder, split
        super().__init__(os.path.join(folder, split), **kwargs)

    def _check_files(self):
        counts = {}
        for name in self.FILES:
            counts[name] = _row_lines(require_file(os.path.join(self.path, name), self.config_key))
        if len(set(counts.values())) > 1:  # line i of every file is row i: a missing line shifts every row after it
            short, long = min(counts, key=counts.get), max(counts, key=counts.get)
            raise DataFormatError(os.path.join(self.path, long), None, long,
                                  f"{counts[long]} lines but {os.path.join(self.path, short)} has {counts[short]}: "
                                  f"the files of a BIO split must be line-aligned (never skipped, whatever "
                                  f"skip_malformed says)")

    def _parse(self):
        paths = [os.path.join(self.path, name) for name in self.FILES]
        streams = [_lines(p) for p in paths]
        while True:
            items = [next(s, None) for s in streams]
            if all(item is None for item in items):
                return
            if any(item is None for item in items):
                continue  # trailing blank lines of one file: _check_files found equal row counts
            number = items[0][0]
            texts = [t for _, t in items]
            bad = next((t for t in texts if isinstance(t, _Bad)), None)
            if bad is not None:
                yield bad
                continue
            words, tags, intent = texts[0].split(), texts[1].split(), texts[2].strip()
            if not words and not tags and not intent:
                continue  # blank line in all three files (e.g. at the end)
            if not words:
                yield _Bad(paths[0], number, "seq.in", "empty utterance")
            elif len(words) != len(tags):
                yield _Bad(paths[1], number, "seq.out",
                           f"{len(tags)} tags for the {len(words)} words of seq.in")
            elif not intent or len(texts[2].split()) != 1:
                yield _Bad(paths[2], number, "label", f"expected one intent, got {texts[2]!r}")
            elif (bad_tag := next((t for t in tags if not _TAG.match(t)), None)) is not None:
                yield _Bad(paths[1], number, "seq.out", f"{bad_tag!r} is not a BIO tag (O, B-x, I-x)")
            else:
                yield {"text": " ".join(words), "words": words, "word_tags": tags, "intent": intent,
                       "line": number}


# ---------------------------------------------------------------------------- tsv
def _tsv_rows(path: str):
    for number, line in _lines(path):
        if isinstance(line, _Bad):
            yield number, line
        elif line.strip():
            yield number, line.split("\t")


class NliTsv(Reader):
    """Sentence-pair classification tsv: {"premise", "hypothesis", "label", "line"}.

    Without a header (XTREME XNLI): exactly 3 columns premise, hypothesis, label. With a header
    (GLUE MNLI, official XNLI): the columns named sentence1/premise, sentence2/hypothesis and
    gold_label/label. Labels must be one of `labels` (entailment, neutral, contradiction)."""
    format = "nli"

    def __init__(self, path: str, labels: Sequence[str] = NLI_LABELS, **kwargs):
        super().__init__(path, **kwargs)
        self.labels = tuple(labels)

    def _parse(self):
        columns, width = (0, 1, 2), 3
        for number, fields in _tsv_rows(self.path):
            if isinstance(fields, _Bad):
                yield fields
                continue
            if number == 1 and {"sentence1", "premise"} & {f.strip().lower() for f in fields}:
                names = [f.strip().lower() for f in fields]

                def find(*candidates):
                    hit = next((names.index(c) for c in candidates if c in names), None)
                    if hit is None:
                        raise DataFormatError(self.path, 1, "header", f"no column named {' or '.join(candidates)} "
                                              f"in {names}")
                    return hit
                columns = (find("sentence1", "premise"), find("sentence2", "hypothesis"), find("gold_label", "label"))
                width = len(names)
                continue
            if len(fields) != width:
                yield _Bad(self.path, number, "columns", f"expected {width} tab-separated columns, got {len(fields)}")
                continue
            premise, hypothesis, label = (fields[c].strip() for c in columns)
            if label not in self.labels:
                yield _Bad(self.path, number, "label", f"{label!r} is not one of {list(self.labels)}")
            elif not premise or not hypothesis:
                yield _Bad(self.path, number, "premise" if not premise else "hypothesis", "empty")
            else:
                yield {"premise": premise, "hypothesis": hypothesis, "label": label, "line": number}


class SentenceTsv(Reader):
    """Single-sentence classification tsv (GLUE SST-2): {"text", "label" (str, or None), "line"}.

    A header naming a `sentence` column is used when present (GLUE test files have
    `index<TAB>sentence` and no label); otherwise 2 columns sentence, label."""
    format = "sst2"

    def __init__(self, path: str, labels: Optional[Sequence[str]] = ("0", "1"), **kwargs):
        super().__init__(path, **kwargs)
        self.labels = tuple(labels) if labels is not None else None

    def _parse(self):
        text_col, label_col, width = 0, 1, 2
        for number, fields in _tsv_rows(self.path):
            if isinstance(fields, _Bad):
                yield fields
                continue
            if number == 1 and "sentence" in [f.strip().lower() for f in fields]:
                names = [f.strip().lower() for f in fields]
                text_col, width = names.index("sentence"), len(names)
                label_col = names.index("label") if "label" in names else None
                continue
            if len(fields) != width:
                yield _Bad(self.path, number, "columns", f"expected {width} tab-separated columns, got {len(fields)}")
                continue
            text = fields[text_col].strip()
            label = fields[label_col].strip() if label_col is not None else None
            if not text:
                yield _Bad(self.path, number, "sentence", "empty")
            elif label is not None and self.labels is not None and label not in self.labels:
                yield _Bad(self.path, number, "label", f"{label!r} is not one of {list(self.labels)}")
            else:
                yield {"text": text, "label": label, "line": number}


# ---------------------------------------------------------------------------- NER
class ConllNer(Reader):
    """CoNLL-style token-per-line NER: {"words", "word_tags" (None when unlabelled), "line", "doc"}.

    Columns are tab-separated when the line has a tab (PAN-X) and space-separated otherwise
    (CoNLL-2003: `token POS chunk NER`); the token is column `token_column`, the tag column
    `tag_column` (default: the last). Sentences are separated by blank lines; `-DOCSTART-` lines
    separate documents and are not examples. Every line of a file must have the column count of
    its first line; a file with one column is unlabelled (the XTREME PAN-X test files), and its
    examples have word_tags None. A sentence with a malformed line is one malformed row."""
    format = "conll"

    def __init__(self, path: str, token_column: int = 0, tag_column: int = -1, **kwargs):
        super().__init__(path, **kwargs)
        self.token_column, self.tag_column = token_column, tag_column

    def _parse(self):
        width, words, tags, first_line, bad, doc = None, [], [], None, None, 0
        for number, line in itertools.chain(_lines(self.path), [(None, "")]):
            if isinstance(line, _Bad):
                bad = bad or line
                continue
            if not line.strip():
                if bad is not None:
                    yield bad
                elif words:
                    yield {"words": words, "word_tags": tags if width > 1 else None, "line": first_line, "doc": doc}
                words, tags, first_line, bad = [], [], None, None
                continue
            fields = line.split("\t") if "\t" in line else line.split()
            if fields[0] == "-DOCSTART-":
                doc += 1
                continue
            width = width or len(fields)
            first_line = first_line or number
            if bad is not None:
                continue
            if len(fields) != width:
                bad = _Bad(self.path, number, "columns", f"{len(fields)} columns, but the file's first line has {width}")
                continue
            word = fields[self.token_column].strip()
            if not word:
                bad = _Bad(self.path, number, "token", "empty token")
                continue
            words.append(word)
            if width > 1:
                tag = fields[self.tag_column].strip()
                if not _TAG.match(tag):
                    bad = _Bad(self.path, number, "tag", f"{tag!r} is not a BIO tag (O, B-x, I-x)")
                tags.append(tag)


# ---------------------------------------------------------------------------- QA
class SquadJson(Reader):
    """SQuAD-1.1 json: one example per question: {"id", "title", "question", "context",
    "answers": [{"text", "start"}], "path"} where `path` is the JSON path of the question.

    An answer whose text is not found at `answer_start` in the context is malformed (the field
    is its JSON path). Answers with empty text are dropped: the XTREME TyDi QA GoldP dev files
    carry none (every answer is {"text": "", "answer_start": 0}); `num_unanswered` counts
    questions left without an answer and a warning says so."""
    format = "squad"

    def __iter__(self):
        self.num_unanswered = 0
        yield from super().__iter__()
        if self.num_unanswered:
            logging.warning("%s: %d of %d questions have no answer text (the XTREME TyDi QA GoldP dev "
                            "files ship without answers)", self.path, self.num_unanswered, self.num_rows)

    def _parse(self):
        with open(self.path, "rb") as f:
            raw = f.read()
        try:
            document = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise DataFormatError(self.path, raw[:e.start].count(b"\n") + 1, "utf-8", f"not valid UTF-8: {e.reason}")
        except json.JSONDecodeError as e:
            raise DataFormatError(self.path, e.lineno, "json", f"invalid JSON: {e.msg} at column {e.colno}")
        if not isinstance(document, dict) or not isinstance(document.get("data"), list):
            raise DataFormatError(self.path, None, "data", "expected a SQuAD object with a 'data' list")
        for i, article in enumerate(document["data"]):
            paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
            if not isinstance(paragraphs, list):
                yield _Bad(self.path, None, f"data[{i}].paragraphs", "missing or not a list")
                continue
            for j, paragraph in enumerate(paragraphs):
                where = f"data[{i}].paragraphs[{j}]"
                context = paragraph.get("context") if isinstance(paragraph, dict) else None
                qas = paragraph.get("qas") if isinstance(paragraph, dict) else None
                if not isinstance(context, str) or not isinstance(qas, list):
                    yield _Bad(self.path, None, f"{where}.{'context' if not isinstance(context, str) else 'qas'}",
                               "missing or of the wrong type")
                    continue
                for k, qa in enumerate(qas):
                    yield self._question(qa, context, f"{where}.qas[{k}]", article.get("title", ""))

    def _question(self, qa, context: str, where: str, title: str):
        if not isinstance(qa, dict):
            return _Bad(self.path, None, where, "not an object")
        for key, kind in (("id", str), ("question", str), ("answers", list)):
            if not isinstance(qa.get(key), kind):
                return _Bad(self.path, None, f"{where}.{key}", f"missing or not a {kind.__name__}")
        answers = []
        for a, answer in enumerate(qa["answers"]):
            text, start = (answer.get("text"), answer.get("answer_start")) if isinstance(answer, dict) else (None, None)
            if not isinstance(text, str) or not isinstance(start, int):
                return _Bad(self.path, None, f"{where}.answers[{a}]", "needs a string 'text' and an int 'answer_start'")
            if not text:
                continue
            if context[start:start + len(text)] != text:
                return _Bad(self.path, None, f"{where}.answers[{a}].answer_start",
                            f"context[{start}:{start + len(text)}] is {context[start:start + len(text)]!r}, "
                            f"not the answer {text!r}")
            answers.append({"text": text, "start": start})
        if not answers:
            self.num_unanswered += 1
        return {"id": qa["id"], "title": title, "question": qa["question"], "context": context,
                "answers": answers, "path": where}


# ------------------------------------------------------------- subword alignment
@dataclasses.dataclass
class AlignedWords:
    """Subword tokens of a word sequence (no special tokens).

    token_ids[t]; labels[t]: the word's label on its first subword, IGNORE_INDEX on the others;
    word_ids[t]: the index of the word token t belongs to. Words cut off by `max_tokens` have
    no tokens (`num_words_kept` < len(words))."""
    token_ids: list[int]
    labels: list[int]
    word_ids: list[int]
    num_words_kept: int


def align_word_labels(words: Sequence[str], labels: Optional[Sequence[int]], vocab,
                      max_tokens: Optional[int] = None) -> AlignedWords:
    """Tokenize `words` one by one and label each word's first subword (the BERT NER recipe).

    `labels` are ints (one per word) or None (all tokens get IGNORE_INDEX). A word the vocabulary
    encodes to nothing gets [UNK], so every kept word has at least one token. With `max_tokens`
    only whole words that fit are kept."""
    if labels is not None and len(labels) != len(words):
        raise ValueError(f"{len(labels)} labels for {len(words)} words")
    token_ids, token_labels, word_ids, kept = [], [], [], 0
    for w, word in enumerate(words):
        pieces = list(vocab.encode(word)) or [vocab.unk_id]
        if max_tokens is not None and len(token_ids) + len(pieces) > max_tokens:
            break
        token_ids.extend(int(p) for p in pieces)
        first = IGNORE_INDEX if labels is None else int(labels[w])
        token_labels.extend([first] + [IGNORE_INDEX] * (len(pieces) - 1))
        word_ids.extend([w] * len(pieces))
        kept += 1
    return AlignedWords(token_ids, token_labels, word_ids, kept)


def token_char_spans(offsets: Sequence[tuple[int, int]], aligned: AlignedWords, vocab) -> list[tuple[int, int]]:
    """Character (start, end) of each token of `aligned`, whose words sit at `offsets` in a text.

    A word's pieces split it by their lengths (SentencePiece's "▁" counts for nothing) when the
    lengths add up to the word's (no normalisation changed it); otherwise each of its tokens gets
    the whole word's span."""
    spans: list[tuple[int, int]] = []
    t = 0
    while t < len(aligned.word_ids):
        w = aligned.word_ids[t]
        end_t = t
        while end_t < len(aligned.word_ids) and aligned.word_ids[end_t] == w:
            end_t += 1
        start, end = offsets[w]
        ids = aligned.token_ids[t:end_t]
        lengths = [len(vocab.id_to_piece(i).replace("\u2581", "")) if hasattr(vocab, "id_to_piece")
                   and i != vocab.unk_id else -1 for i in ids]
        if -1 not in lengths and sum(lengths) == end - start:
            position = start
            for n in lengths:
                spans.append((position, position + n))
                position += n
        else:
            spans.extend([(start, end)] * (end_t - t))
        t = end_t
    return spans


def word_predictions(token_predictions: Sequence, word_ids: Sequence[int], num_words: int, default=None) -> list:
    """Per-word prediction: that of the word's first subword (matching first-subword labelling).

    `word_ids` may hold negative values for special tokens and padding; words without any token
    (truncated) get `default`."""
    out = [default] * num_words
    seen = [False] * num_words
    for prediction, w in zip(token_predictions, word_ids):
        w = int(w)
        if 0 <= w < num_words and not seen[w]:
            out[w], seen[w] = prediction, True
    return out


def predictions_to_spans(token_predictions: Sequence[int], word_ids: Sequence[int], words: Sequence[str],
                         label_names: Sequence[str], text: Optional[str] = None) -> list[dict]:
    """Token-level BIO predictions (label ids) -> entities with character spans in `text`.

    `text` defaults to the words joined by single spaces; otherwise the words must occur in it in
    order. Returns [{"label", "start", "end", "text", "words": (first, end)}]."""
    tag_ids = word_predictions(token_predictions, word_ids, len(words), default=None)
    tags = [label_names[i] if i is not None else "O" for i in tag_ids]
    text = " ".join(words) if text is None else text
    offsets = find_word_offsets(text, words)
    out = []
    for label, first, end in bio_spans(tags):
        start, stop = offsets[first][0], offsets[end - 1][1]
        out.append({"label": label, "start": start, "end": stop, "text": text[start:stop], "words": (first, end)})
    return out


# ---------------------------------------------------------------------- registry
READERS = {cls.format: cls for cls in (TextLines, MassiveJsonl, BioFolder, NliTsv, SentenceTsv, ConllNer, SquadJson)}


def read(format: str, path: str, **kwargs) -> Reader:
    """`read("massive", path, partition="train")` etc.; see READERS for the formats."""
    if format not in READERS:
        raise ValueError(f"unknown data format {format!r}; known: {sorted(READERS)}")
    return READERS[format](path, **kwargs)
