"""Inspect the data tasks.

    python -m atm.data list [--data_dir=DIR]
        the registered tasks (kind, language, splits and whether their files exist) and the
        mixtures with their sampling rates
    python -m atm.data show TASK [--split=train] [--n=3] [--vocab=PATH.model]
        the first n examples, raw and tokenized, with the labels aligned to the subwords (a word's
        label on its first subword, "·" on the others); without --vocab a throwaway 1000-piece
        SentencePiece model is trained on the split's text
    python -m atm.data show TASK --split=S --count
        the number of rows (and of malformed rows skipped with --skip_malformed)
    python -m atm.data export --config=configs/X.py --out=FILE
        the config's training text (task rates and spoken share applied), LANG<TAB>text a line,
        for `python -m atm.data.vocab`
    python -m atm.data bench TASK [--config=configs/tiny_mlm.py]
        the input pipeline's rows/s against the rows/s the tiny model's training step consumes
    python -m atm.data prepare --config=configs/X.py --out=DIR [--num_shards=16] [--workers=N] [--config.a.b=v]
        tokenise the config's training text once (rates, replay, spoken share applied) into shards of
        token ids + an index (atm/data/prepared.py), in parallel, with a progress bar; a rerun skips
        finished shards. Train from it with --config.data.source=prepared --config.data.prepared_dir=DIR
    python -m atm.data verify DIR
        re-hash every shard of a prepared corpus against its manifest
    python -m atm.data bench prepared [--sizes_gb=0.25,2] [--out=DIR]
        a generated corpus of token ids at each size: tokens/s read, packed and delivered per host,
        peak RSS, and the prepare throughput on configs/tiny_mlm.py's text

The data directory is --data_dir, else $ATM_DATA_DIR, else ../shared/data beside the repository.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
from typing import Sequence

from atm.data import readers, tasks


def _list(root: str) -> int:
    print(f"data directory: {root}")
    print(f"{'task':<26} {'kind':<13} {'language':<9} splits")
    for spec in tasks.task_specs():
        splits = " ".join(s + ("" if os.path.exists(spec.files(s, root)) else "(missing)") for s in spec.splits)
        print(f"{spec.name:<26} {spec.kind:<13} {spec.language:<9} {splits}")
    print()
    print(f"{'mixture':<26} rates (train split; temperature alpha unless given)")
    for mixture in tasks.MIXTURES.values():
        try:
            rates = tasks.mixture_rates(mixture.name, root)
            how = "explicit" if mixture.rates is not None else f"alpha={mixture.alpha}"
            shown = ", ".join(f"{t}={r:.3f}" for t, r in rates.items())
        except (FileNotFoundError, ValueError) as e:
            how, shown = "unavailable", str(e)
        print(f"{mixture.name:<26} [{how}] {shown}")
    return 0


def _training_text(raw: dict) -> list[str]:
    keys = ("text", "premise", "hypothesis", "question", "context")
    return [raw[k] for k in keys if isinstance(raw.get(k), str)]


def _throwaway_vocab(name: str, split: str, root: str, directory: str):
    from atm.data.vocab import train_sentencepiece
    lines = [t for raw in itertools.islice(tasks.raw_examples(name, split, root, skip_malformed=True), 20000)
             for t in _training_text(raw)]
    return train_sentencepiece(lines, 1000, os.path.join(directory, "show"))


def _aligned(pieces: Sequence[str], labels: Sequence[int], names: Sequence[str]) -> str:
    return " ".join(f"{p}:{names[l] if l != readers.IGNORE_INDEX else '·'}" for p, l in zip(pieces, labels))


def _show_example(name: str, i: int, raw: dict, vocab, labels: dict):
    spec = tasks.get_spec(name)
    features = tasks.tokenize_example(name, raw, vocab, labels)
    shown = {k: v for k, v in raw.items() if k != "words"}
    print(f"#{i} raw: {json.dumps(shown, ensure_ascii=False)}")
    piece = vocab.id_to_piece
    if spec.kind in ("intent_slots", "ner"):
        key = "slot_labels" if spec.kind == "intent_slots" else "labels"
        names = labels["slot" if spec.kind == "intent_slots" else "tag"]
        print(f"   tokens ({len(features['input_ids'])}): "
              + _aligned([piece(t) for t in features["input_ids"]], features[key], names))
        if spec.kind == "intent_slots":
            print(f"   intent: {features['intent']} ({labels['intent'][features['intent']]})")
    elif spec.kind == "qa":
        print(f"   question tokens: {' '.join(piece(t) for t in features['question_ids'])}")
        s, e = features["answer_start"], features["answer_end"]
        answer = vocab.decode(features["context_ids"][s:e + 1]) if s >= 0 else "(no answer)"
        print(f"   context: {len(features['context_ids'])} tokens; answer tokens [{s}, {e}]: {answer}")
    else:
        print(f"   tokens ({len(features['input_ids'])}): {' '.join(piece(t) for t in features['input_ids'])}")
        if "pair_input_ids" in features:
            print(f"   pair tokens: {' '.join(piece(t) for t in features['pair_input_ids'])}")
        if "label" in features:
            print(f"   label: {features['label']} ({raw.get('label')})")


def _show(args) -> int:
    spec = tasks.get_spec(args.task)
    split = args.split or next(iter(spec.splits))
    if args.count:
        reader = spec.reader(split, args.data_dir, skip_malformed=args.skip_malformed)
        n = reader.count()
        print(f"{spec.name} {split}: {n} rows" + (f" ({reader.num_malformed} malformed rows skipped)"
                                                  if args.skip_malformed else ""))
        return 0
    labels = tasks.label_inventory(spec.name, args.data_dir) if spec.labels else {}
    with tempfile.TemporaryDirectory() as directory:
        if args.vocab:
            from atm.data.vocab import load_vocabulary
            vocab = load_vocabulary(args.vocab)  # an atm .model or a Hugging Face tokenizer directory
        else:
            vocab = _throwaway_vocab(spec.name, "train" if "train" in spec.splits else split, args.data_dir, directory)
            print(f"(tokenized with a throwaway {vocab.size}-piece vocabulary trained on this task's text; "
                  "pass --vocab=PATH.model for a real one)")
        examples = tasks.raw_examples(spec.name, split, args.data_dir, skip_malformed=args.skip_malformed)
        for i, raw in enumerate(itertools.islice(examples, args.n)):
            _show_example(spec.name, i, raw, vocab, labels)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m atm.data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=None, help="default: $ATM_DATA_DIR or ../shared/data")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="registered tasks and mixtures")
    show = commands.add_parser("show", help="examples of one task")
    show.add_argument("task")
    show.add_argument("--split", default=None, help="default: the task's first split")
    show.add_argument("--n", type=int, default=3)
    show.add_argument("--vocab", default=None, help="SentencePiece model; default: a throwaway one")
    show.add_argument("--count", action="store_true", help="print the number of rows instead")
    show.add_argument("--skip_malformed", action="store_true", help="skip (and count) malformed rows")
    show.add_argument("--data_dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    bench = commands.add_parser("bench", help="pipeline rows/s against the tiny model's training step")
    bench.add_argument("task", help='a task or mixture, or "synthetic"')
    bench.add_argument("--config", default="configs/tiny_mlm.py")
    bench.add_argument("--batches", type=int, default=50)
    bench.add_argument("--data_dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    export = commands.add_parser("export", help="a config's training text, LANG<TAB>text per line")
    export.add_argument("--config", required=True)
    export.add_argument("--out", required=True)
    export.add_argument("--data_dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    prepare = commands.add_parser("prepare", help="tokenise a config's text into shards of token ids")
    prepare.add_argument("--config", required=True, help="configs/X.py[:arg]; --config.a.b=v overrides follow")
    prepare.add_argument("--out", required=True)
    prepare.add_argument("--num_shards", type=int, default=16)
    prepare.add_argument("--workers", type=int, default=0, help="processes; default: min(CPUs, shards)")
    prepare.add_argument("--max_eval_rows", type=int, default=10000)
    prepare.add_argument("--data_dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    verify = commands.add_parser("verify", help="re-hash a prepared corpus against its manifest")
    verify.add_argument("directory")
    bench.add_argument("--sizes_gb", default="0.25,2", help="bench prepared: corpus sizes in GB of token ids")
    bench.add_argument("--out", default="", help="bench prepared: where to generate (deleted after)")
    bench.add_argument("--steps", type=int, default=200, help="bench prepared: batches timed per size")
    args, rest = parser.parse_known_args(argv)
    overrides = [a for a in rest if a.startswith("--config.")]
    if len(overrides) != len(rest) or (overrides and args.command != "prepare"):
        parser.error(f"unrecognized arguments: {' '.join(a for a in rest if a not in overrides or args.command != 'prepare')}")
    root = tasks.data_dir(args.data_dir)
    args.data_dir = root
    try:
        if args.command == "list":
            return _list(root)
        if args.command == "export":
            from atm.data import export
            return export.main(args)
        if args.command == "bench":
            from atm.data import bench
            return bench.main(args)
        if args.command == "prepare":
            from atm.data import prepared
            from atm.data.export import load_config
            config = load_config(args.config, overrides)
            manifest = prepared.prepare(config, args.out, args.num_shards, args.workers, args.max_eval_rows)
            train = manifest["splits"]["train"]
            print(json.dumps({"out": args.out, "records": train["records"], "tokens": train["tokens"],
                              "shards": len(train["shards"]), **manifest["stats"]}))
            return 0
        if args.command == "verify":
            from atm.data import prepared
            problems = prepared.verify(args.directory)
            for problem in problems:
                print(problem, file=sys.stderr)
            print(f"{args.directory}: " + (f"{len(problems)} problem(s)" if problems else "intact"))
            return 1 if problems else 0
        return _show(args)
    except (FileNotFoundError, KeyError, ValueError) as e:
        print(f"error: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
