"""From `config.data` to a vocabulary and train/eval batchers.

Sources (`config.data.source`):
  synthetic   atm's own generated assistant utterances (the embedded default)
  text_files  one example per line, comma-separated globs in `config.data.files`
  tasks       registered tasks/mixtures (`python -m atm.data list`) with rates, e.g.
              "mlm_text:0.8,tydiqa_goldp:0.1,xnli:0.1"; mixtures expand into their members'
              rates (temperature sampling, alpha in atm/data/tasks.py). `config.data.replay_tasks`
              with `replay_share` mixes stage-1 text into stage 2 (`with_replay`). The MLM text of a row is
              its text, the premise of an NLI pair, or the (deduplicated) context of a QA row.
  prepared    a corpus tokenised once by `python -m atm.data prepare` (`config.data.prepared_dir`):
              each host streams its own shards, memory bounded by a shuffle window (atm/data/prepared.py);
              rates, replay and spoken share were applied when it was prepared
`config.data.spoken_share` turns that share of the stream into ATM's spoken form.
When `config.data.vocab` is empty a SentencePiece model is trained on the training text
into the workdir.
"""
from __future__ import annotations

import filecmp
import hashlib
import os
import shutil

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from atm.data import spoken, synthetic
from atm.data.pipeline import Batcher
from atm.data.vocab import SentencePieceVocabulary, load_vocabulary, read_lines_by_language, train_sentencepiece

Texts = list[tuple[str, str]]  # (text, language)


def read_text_files(patterns: str, key: str = "config.data.files") -> Texts:
    """Lines of the files matching comma-separated globs, with their language (vocab.read_lines_by_language)."""
    return [(text, language) for language, lines in read_lines_by_language(patterns, key).items() for text in lines]


def _task_texts(name: str, root: str, skip_malformed: bool) -> tuple[Texts, int]:
    """MLM text of every row of a task's train split (its only split when it has no train split)."""
    from atm.data import tasks

    spec = tasks.get_spec(name)
    reader = spec.reader(tasks.train_split(spec), root, skip_malformed)
    texts, seen = [], set()
    for row in reader:
        if spec.kind == "pair":
            text = row["premise"]
        elif spec.kind == "qa":
            text = row["context"]
            if text in seen:  # many questions share one context
                continue
            seen.add(text)
        else:
            text = row.get("text") or " ".join(row["words"])
        if spec.spoken:
            text = spoken.spoken_form(text, spec.language)
        texts.append((text, spec.language))
    return texts, reader.num_malformed


def _leaf_rates(name: str, rate: float, root: str) -> dict[str, float]:
    from atm.data import tasks

    if name not in tasks.MIXTURES:
        tasks.get_spec(name)  # a clear error for unknown names
        return {name: rate}
    out: dict[str, float] = {}
    for member, member_rate in tasks.mixture_rates(name, root).items():
        for leaf, r in _leaf_rates(member, rate * member_rate, root).items():
            out[leaf] = out.get(leaf, 0.0) + r
    return out


def parse_task_rates(spec: str) -> dict[str, float]:
    rates = {}
    for item in [x.strip() for x in spec.split(",") if x.strip()]:
        name, _, rate = item.partition(":")
        try:
            rates[name.strip()] = float(rate) if rate else 1.0
        except ValueError:
            raise ValueError(f"config.data.tasks: bad rate in {item!r} (use name:rate, e.g. mlm_text:0.8)") from None
    if not rates:
        raise ValueError("config.data.source='tasks' needs config.data.tasks, e.g. 'massive_text' or 'a:0.7,b:0.3'")
    return rates


def with_replay(tasks: str, replay_tasks: str, replay_share: float) -> str:
    """ATM stage 2 with replay: `tasks` keep 1 − share of the rate, `replay_tasks` (stage 1's) get `share`,
    each side's own rates normalised first. Returns the combined "name:rate,..." spec."""
    if replay_share <= 0:
        return tasks
    main, replay = parse_task_rates(tasks), parse_task_rates(replay_tasks)
    combined: dict[str, float] = {}
    for rates, share in ((main, 1.0 - replay_share), (replay, replay_share)):
        total = sum(rates.values())
        for name, rate in rates.items():
            combined[name] = combined.get(name, 0.0) + share * rate / total
    return ",".join(f"{name}:{rate!r}" for name, rate in combined.items())


def mixed_task_texts(spec: str, root: str, total: int, seed: int, skip_malformed: bool) -> tuple[Texts, int]:
    """A deterministic sample of `total` rows (0: as many rows as the tasks have) at the tasks' rates.

    Each leaf task contributes ≈ rate · total rows, cycling a seeded permutation of its rows,
    so small languages are upsampled as temperature sampling asks.
    """
    leaves: dict[str, float] = {}
    for name, rate in parse_task_rates(spec).items():
        for leaf, r in _leaf_rates(name, rate, root).items():
            leaves[leaf] = leaves.get(leaf, 0.0) + r
    norm = sum(leaves.values())
    rows = {leaf: _task_texts(leaf, root, skip_malformed) for leaf in sorted(leaves)}
    total = total or sum(len(t) for t, _ in rows.values())
    names = sorted(leaves)
    exact = np.array([leaves[n] / norm * total for n in names])
    wants = np.floor(exact).astype(int)  # largest remainders get the rounding, so the sizes add up to total
    wants[np.argsort(wants - exact)[:total - wants.sum()]] += 1
    out, malformed = [], 0
    for i, (leaf, want) in enumerate(zip(names, wants)):
        texts, bad = rows[leaf]
        malformed += bad
        if not texts or not want:
            continue
        order = np.random.default_rng([seed, i]).permutation(len(texts))
        out.extend(texts[order[j % len(texts)]] for j in range(want))
    order = np.random.default_rng(seed).permutation(len(out))
    return [out[i] for i in order], malformed


def load_texts(data_config) -> tuple[Texts, int]:
    """(text, language) rows of the configured source and the number of malformed rows skipped."""
    if data_config.source == "synthetic":
        langs = tuple(x.strip() for x in data_config.languages.split(",") if x.strip())
        texts = synthetic.utterances(data_config.num_examples, seed=1234, languages=langs)
        return [(t, langs[i % len(langs)]) for i, t in enumerate(texts)], 0
    if data_config.source == "text_files":
        if not data_config.files:
            raise ValueError("config.data.source='text_files' needs config.data.files (comma-separated globs)")
        return read_text_files(data_config.files), 0
    if data_config.source == "tasks":
        from atm.data import tasks
        root = tasks.data_dir(data_config.data_dir or None)
        if not os.path.isdir(root):
            raise FileNotFoundError(f"data directory {root} does not exist (config.data.data_dir or ATM_DATA_DIR)")
        spec = with_replay(data_config.tasks, data_config.replay_tasks, data_config.replay_share)
        return mixed_task_texts(spec, root, data_config.num_examples, 1234, data_config.skip_malformed)
    if data_config.source == "prepared":
        raise ValueError("config.data.source='prepared' holds token ids, not text (use the config it was prepared from)")
    raise ValueError(f"config.data.source={data_config.source!r}: use 'synthetic', 'text_files', 'tasks' or 'prepared'")


def apply_spoken_share(texts: Texts, share: float) -> list[str]:
    """Turn a fixed, content-independent share of rows (chosen by a hash of the row index) into spoken form."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"config.data.spoken_share={share} must be within [0, 1]")
    out = []
    for i, (text, language) in enumerate(texts):
        h = int.from_bytes(hashlib.blake2b(str(i).encode(), digest_size=4).digest(), "little") / 2 ** 32
        out.append(spoken.spoken_form(text, language) if h < share else text)
    return out


def split_train_eval(texts: list[str], eval_fraction: float) -> tuple[list[str], list[str]]:
    """A fixed held-out split: every k-th row goes to eval."""
    if eval_fraction <= 0:
        return texts, texts[:0]
    every = max(2, round(1 / eval_fraction))
    return ([t for i, t in enumerate(texts) if i % every], [t for i, t in enumerate(texts) if i % every == 0])


def load_vocab(data_config, workdir: str, train_texts: list[str]):
    """The run's vocabulary. An atm SentencePiece model is kept as WORKDIR/vocab.model so a run
    directory is self-contained (fine-tuning and distillation from it find the vocabulary its
    embeddings were trained with): a copy of `config.data.vocab` when given, else one trained on
    the run's training text. A Hugging Face tokenizer (atm/data/hf_vocab.py) is used where it is."""
    if data_config.vocab:
        given = load_vocabulary(data_config.vocab)  # a bad path fails here, naming it
        if not isinstance(given, SentencePieceVocabulary):
            return given
    prefix = os.path.join(workdir, "vocab")
    if jax.process_index() == 0 and data_config.vocab:
        if not os.path.exists(prefix + ".model"):
            os.makedirs(workdir, exist_ok=True)
            shutil.copyfile(data_config.vocab, prefix + ".model")
        elif not filecmp.cmp(data_config.vocab, prefix + ".model", shallow=False):
            raise ValueError(f"config.data.vocab={data_config.vocab!r} differs from the vocabulary this run "
                             f"directory was started with ({prefix}.model); a run keeps one vocabulary")
    elif jax.process_index() == 0 and not os.path.exists(prefix + ".model"):
        train_sentencepiece(train_texts, data_config.vocab_size, prefix)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("atm:vocab")
    return SentencePieceVocabulary(prefix + ".model")


def build_prepared(config, workdir: str):
    """`build` for config.data.source='prepared': the corpus's own vocabulary (copied into the workdir),
    a `prepared.PreparedBatcher` over this process's shards, the eval split in memory."""
    import ml_collections

    from atm.data import prepared

    data = config.data
    manifest = prepared.read_manifest(data.prepared_dir)
    corpus_vocab = prepared.vocabulary_path(data.prepared_dir, manifest)
    if data.vocab and os.path.abspath(data.vocab) != os.path.abspath(corpus_vocab) and (
            not os.path.isfile(data.vocab) or prepared.file_digest(data.vocab) != manifest["vocab_sha256"]):
        raise ValueError(f"config.data.vocab={data.vocab!r} is not the vocabulary {data.prepared_dir} was prepared "
                         f"with ({corpus_vocab}); leave config.data.vocab empty to use that one")
    with_vocab = ml_collections.ConfigDict(data.to_dict())
    with_vocab.vocab = corpus_vocab
    vocab = load_vocab(with_vocab, workdir, [])
    train = prepared.PreparedBatcher(data.prepared_dir, data.seq_len, config.train.batch_size, config.seed, data.pack,
                                     vocab, data.readers, data.shuffle_window, jax.process_index(),
                                     jax.process_count(), data.whole_word_masking, data.skip_malformed)
    eval_examples, eval_skipped = prepared.read_split(data.prepared_dir, manifest, "eval", vocab.size,
                                                      data.skip_malformed)
    evaluation = None
    if eval_examples:
        starts = vocab.word_start_table() if data.whole_word_masking else None
        evaluation = Batcher(eval_examples, data.seq_len, config.train.batch_size, 0, data.pack, vocab.cls_id,
                             vocab.sep_id, vocab.pad_id, jax.process_index(), jax.process_count(),
                             word_starts=None if starts is None else [starts[e] for e in eval_examples])
    malformed = train.malformed_records + eval_skipped
    if malformed:
        print(f"WARNING: data: skipped {malformed} records of malformed shards (config.data.skip_malformed=True)",
              flush=True)
    stats = {"data_rows": manifest["splits"]["train"]["records"] + manifest["splits"]["eval"]["records"],
             "data_malformed_rows": manifest["malformed_rows_skipped"] + malformed}
    return vocab, train, evaluation, stats


def build(config, workdir: str):
    """(vocab, train Batcher, eval Batcher or None, data stats) for this process."""
    data = config.data
    if data.source == "prepared":
        return build_prepared(config, workdir)
    rows, malformed = load_texts(data)
    if malformed:
        logging.warning("data: skipped %d malformed rows (config.data.skip_malformed=True)", malformed)
        print(f"WARNING: data: skipped {malformed} malformed rows (config.data.skip_malformed=True)", flush=True)
    train_texts, eval_texts = split_train_eval(apply_spoken_share(rows, data.spoken_share), data.eval_fraction)
    vocab = load_vocab(data, workdir, train_texts)
    starts = vocab.word_start_table() if data.whole_word_masking else None

    def batcher(texts, seed):
        examples = [np.asarray(ids, np.int32) for ids in vocab.encode_batch(texts)]
        word_starts = None if starts is None else [starts[e] for e in examples]
        return Batcher(examples, data.seq_len, config.train.batch_size, seed, data.pack, vocab.cls_id,
                       vocab.sep_id, vocab.pad_id, jax.process_index(), jax.process_count(), word_starts=word_starts)

    stats = {"data_rows": len(rows), "data_malformed_rows": malformed}
    return vocab, batcher(train_texts, config.seed), (batcher(eval_texts, 0) if eval_texts else None), stats
