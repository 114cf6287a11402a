"""Issue 14: which levers take `configs/atm_stage1_public.py:mini` off the frequent-piece plateau.

    taskset -c 1 nice -n 19 python -m reproduce.pretraining_sweep [--only=a,b] [--steps=N] [--workdir=workdirs/sweep]

Each variant is the `:mini` preset (4×128 encoder, stage-1 public corpus, 70% spoken form) with a few
config values changed, trained for the same number of steps. A variant whose workdir already holds its
final step is not retrained (the script resumes a half-finished one from its checkpoint).

The held-out figure is measured here, not taken from the run's own `eval_accuracy`: the corpus cycles
small languages' rows to reach their sampling rates (sw 7×, hi, ko, XNLI premises and TyDi QA contexts
repeat too), so about a third of the rows the loop holds out (every 50th) also occur among its training
rows. `heldout()` scores every saved checkpoint on the held-out rows whose source text never occurs
among the training rows (fixed masks, about one pass). Both figures go into the table.

Writes results/pretraining/sweep.md (and sweep.json): variant, steps, wall minutes, steps/s, final and
best held-out masked-token accuracy, held-out MLM loss, the loop's own (contaminated) eval accuracy.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import time

from reproduce import common

REPO = common.REPO

# name -> (description, {dotted config key: value}); every variant is `:mini` plus these.
# `vocab` names a vocabulary from VOCABS (trained once on its corpus, reused by every run that names it).
FAST = {"optimizer.learning_rate": 3e-3, "optimizer.warmup_steps": 100}
LANGS9 = ("ar", "de", "en", "es", "fr", "hi", "ru", "sw", "zh")  # mlm_text's languages
# The stage-1 mix restricted to mlm_text's 9 languages: XNLI without its 6 others, TyDi QA without Korean.
MIX9 = ",".join(["mlm_text:0.8", "tydiqa_goldp_en:0.05", "tydiqa_goldp_sw:0.05"] +
                [f"xnli_{lang}:{0.1 / 9!r}" for lang in LANGS9])
# The 5 Latin-script languages (en, de, fr, es, sw: MASSIVE's en-US/de-DE/sw-KE among them): WikiANN, TyDi QA en/sw
# contexts and XNLI premises; Swahili WikiANN has 1000 rows, so its rate stays low (≈ 5 passes).
MIX5 = ("mlm_text_en:0.2,mlm_text_de:0.2,mlm_text_fr:0.17,mlm_text_es:0.17,mlm_text_sw:0.06,"
        "tydiqa_goldp_en:0.05,tydiqa_goldp_sw:0.05,xnli_en:0.02,xnli_de:0.02,xnli_fr:0.02,xnli_es:0.02,xnli_sw:0.02")
M40 = {"model.pre_layer_norm": False, "mlm.mask_rate": 0.4}  # the first sweep's best: post-LN, 40% masked
M50_SINPOS = {**FAST, **M40, "mlm.mask_rate": 0.5, "model.position_init": "sinusoidal"}  # now `:mini`
VARIANTS: dict[str, tuple[str, dict]] = {
    "base": ("the first `:mini`: lr 1e-3, warmup 250, pre-LN, 8k pieces, 32×128, WWM", {}),
    "lr3e-3": ("lr 3e-3, warmup 100", dict(FAST)),
    "lr3e-3_postln": ("lr 3e-3, warmup 100, post-LN", {**FAST, "model.pre_layer_norm": False}),
    "lr3e-3_nodrop": ("lr 3e-3, warmup 100, dropout 0", {**FAST, "model.hidden_dropout": 0.0}),
    "lr3e-3_nowwm": ("lr 3e-3, warmup 100, no whole-word masking", {**FAST, "data.whole_word_masking": False}),
    "lr3e-3_v4k": ("lr 3e-3, warmup 100, 4k pieces (char coverage 0.995)", {**FAST, "vocab": "v4k"}),
    "lr3e-3_b16": ("lr 3e-3, warmup 100, 16×128 tokens (twice the steps)", {**FAST, "train.batch_size": 16}),
    "lr6e-3": ("lr 6e-3, warmup 100", {"optimizer.learning_rate": 6e-3, "optimizer.warmup_steps": 100}),
    "lr3e-3_seq64": ("lr 3e-3, warmup 100, 64×64 tokens", {**FAST, "data.seq_len": 64, "train.batch_size": 64}),
    "lr3e-3_prose": ("lr 3e-3, warmup 100, mix 0.5 WikiANN / 0.25 TyDi QA / 0.25 XNLI",
                     {**FAST, "data.tasks": "mlm_text:0.5,tydiqa_goldp:0.25,xnli:0.25"}),
    "lr3e-3_written": ("lr 3e-3, warmup 100, no spoken form", {**FAST, "data.spoken_share": 0.0}),
    "lr3e-3_lang9": ("lr 3e-3, warmup 100, XNLI/TyDi QA cut to mlm_text's 9 languages, own 8k vocab",
                     {**FAST, "data.tasks": MIX9, "vocab": "v8k_lang9"}),
    "postln_nowwm_nodrop": ("post-LN, lr 3e-3, warmup 100, no whole-word masking, dropout 0",
                            {**FAST, "model.pre_layer_norm": False, "data.whole_word_masking": False,
                             "model.hidden_dropout": 0.0}),
    "postln_nowwm_nodrop_b8": ("post-LN, lr 3e-3, warmup 100, no WWM, dropout 0, 8×128 tokens (4× the steps)",
                               {**FAST, "model.pre_layer_norm": False, "data.whole_word_masking": False,
                                "model.hidden_dropout": 0.0, "train.batch_size": 8}),
    "postln_mask40": ("post-LN, lr 3e-3, warmup 100, mask rate 0.4 (scored at 0.15)",
                      {**FAST, **M40}),
    "postln_mask40_long": ("post-LN, lr 3e-3, warmup 100, mask rate 0.4 (scored at 0.15), the long run",
                           {**FAST, **M40}),
    "postln_lr6e-3": ("post-LN, lr 6e-3, warmup 100",
                      {"optimizer.learning_rate": 6e-3, "optimizer.warmup_steps": 100, "model.pre_layer_norm": False}),
    "m40_nowwm_nodrop": ("post-LN, lr 3e-3, warmup 100, mask rate 0.4, no whole-word masking, dropout 0",
                         {**FAST, **M40, "data.whole_word_masking": False, "model.hidden_dropout": 0.0}),
    "m40_v4k": ("post-LN, lr 3e-3, warmup 100, mask rate 0.4, 4k pieces", {**FAST, **M40, "vocab": "v4k"}),
    "m40_lr6e-3": ("post-LN, lr 6e-3, warmup 100, mask rate 0.4",
                   {**M40, "optimizer.learning_rate": 6e-3, "optimizer.warmup_steps": 100}),
    "m50": ("post-LN, lr 3e-3, warmup 100, mask rate 0.5", {**FAST, **M40, "mlm.mask_rate": 0.5}),
    "m40_nodrop": ("post-LN, lr 3e-3, warmup 100, mask rate 0.4, dropout 0",
                   {**FAST, **M40, "model.hidden_dropout": 0.0}),
    "m40_b64": ("post-LN, lr 3e-3, warmup 100, mask rate 0.4, 64×128 tokens (half the steps)",
                {**FAST, **M40, "train.batch_size": 64}),
    "m40_sinpos": ("post-LN, lr 3e-3, warmup 100, mask rate 0.4, sinusoidal start of the position embeddings",
                   {**FAST, **M40, "model.position_init": "sinusoidal"}),
    "m60": ("post-LN, lr 3e-3, warmup 100, mask rate 0.6", {**FAST, **M40, "mlm.mask_rate": 0.6}),
    "m50_sinpos": ("post-LN, lr 3e-3, warmup 100, mask rate 0.5, sinusoidal start of the position embeddings",
                   dict(M50_SINPOS)),
    "m50_sinpos_long": ("post-LN, lr 3e-3, warmup 100, mask rate 0.5, sinusoidal positions, the long run",
                        dict(M50_SINPOS)),
    "m50_sinpos_unspaced": ("post-LN, lr 3e-3, warmup 100, mask rate 0.5, sinusoidal positions, 2000 steps; whole "
                            "words split unspaced scripts per character (atm.data.vocab.starts_word)",
                            {**M50_SINPOS, "score_all_maskings": True}),
    "m50_sinpos_tokens": ("post-LN, lr 3e-3, warmup 100, mask rate 0.5, sinusoidal positions, 2000 steps, "
                          "single tokens masked (no whole-word masking)",
                          {**M50_SINPOS, "data.whole_word_masking": False, "score_all_maskings": True}),
    "lr3e-3_lang5": ("lr 3e-3, warmup 100, Latin-script mix: en/de/fr/es/sw only, own 8k vocab",
                     {**FAST, "data.tasks": MIX5, "vocab": "v8k_lang5"}),
    # The two levers §0c left: fewer character-level scripts, and a wider encoder for fewer steps (both on
    # m50_sinpos_tokens, the best run so far).
    "m50_tokens_lang5": ("post-LN, lr 3e-3, warmup 100, mask rate 0.5, sinusoidal positions, single tokens; "
                         "Latin-script mix: en/de/fr/es/sw only, own 8k vocab",
                         {**M50_SINPOS, "data.whole_word_masking": False, "data.tasks": MIX5, "vocab": "v8k_lang5"}),
    "m50_tokens_h256": ("post-LN, lr 3e-3, warmup 100, mask rate 0.5, sinusoidal positions, single tokens; "
                        "4×256 encoder (FFN 1024), 3.8× the non-embedding parameters",
                        {**M50_SINPOS, "data.whole_word_masking": False, "model.hidden_size": 256,
                         "model.ffn_size": 1024}),
}
# name -> (pieces, character coverage, corpus: data overrides of `:mini` whose export trains it)
VOCABS = {"v8k": (8000, 0.9995, {}), "v4k": (4000, 0.995, {}),
          "v8k_lang9": (8000, 0.9995, {"tasks": MIX9}), "v8k_lang5": (8000, 0.9995, {"tasks": MIX5})}


# The `:mini` settings the sweep started from (before its recipe became `:mini`); every variant is these plus its own.
FIRST_MINI = {"model.pre_layer_norm": True, "model.position_init": "normal", "mlm.mask_rate": 0.15,
              "optimizer.learning_rate": 1e-3, "optimizer.warmup_steps": 250}


def build_vocab(name: str, work: str) -> str:
    """SentencePiece model `name` of VOCABS, trained once on its corpus under `work`/vocab."""
    size, coverage, corpus_data = VOCABS[name]
    return common.stage1_vocab(os.path.join(work, "vocab"), name, size, coverage, corpus_data)


def variant_config(name: str, steps: int, work: str):
    _, overrides = VARIANTS[name]
    c = common.stage1_mini_config()
    overrides = dict(overrides)
    vocab_name = overrides.pop("vocab", "v8k")
    overrides.pop("score_all_maskings", None)
    c.data.vocab = build_vocab(vocab_name, work)
    c.data.vocab_size = c.model.vocab_size = VOCABS[vocab_name][0]
    for key, value in {**FIRST_MINI, **overrides}.items():
        section, field = key.split(".")
        c[section][field] = value
    scale = 32 * 128 / (c.train.batch_size * c.data.seq_len)  # same tokens per run whatever the batch shape
    c.train.steps = int(round(steps * scale))
    c.optimizer.warmup_steps = int(round(c.optimizer.warmup_steps * scale))
    every = max(1, c.train.steps // 4)
    c.train.update(eval_every=every, eval_batches=8, log_every=max(1, every // 5))
    c.checkpoint.update(every=every, keep=10)
    return c


def heldout_rows(config) -> list[str]:
    """The loop's held-out rows (every k-th) minus those whose source text also occurs among its training rows."""
    from atm.data import sources
    rows, _ = sources.load_texts(config.data)
    texts = sources.apply_spoken_share(rows, config.data.spoken_share)
    every = max(2, round(1 / config.data.eval_fraction))
    seen = {text for i, (text, _) in enumerate(rows) if i % every}
    return [texts[i] for i in range(0, len(rows), every) if rows[i][0] not in seen]


# How held-out rows can be masked for scoring (always at 15%), besides as the run was trained: whole words by
# atm.data.vocab.starts_word; whole words by the rule before 2026-12-07, where only "▁" starts a word (an
# unspaced Chinese or Thai sentence is one word), which the rows measured before then used; single tokens.
HELDOUT_MASKING = {"words": "heldout_words.json", "spaced_words": "heldout_spaced_words.json",
                   "tokens": "heldout_tokens.json"}


def heldout(workdir: str, config, name: str = "heldout.json", masking: str = "") -> dict:
    """{step: {accuracy, loss, rows}} of every checkpoint in `workdir` on the clean held-out rows."""
    path = os.path.join(workdir, name)
    if os.path.exists(path):
        with open(path) as f:
            return {int(k): v for k, v in json.load(f).items()}
    config = config.copy_and_resolve_references()
    config.mlm.update(mask_rate=0.15, max_predictions=-1)  # every variant is scored at BERT's 15%
    import numpy as np

    from atm import objectives, sharding, train
    from atm.checkpoint import Checkpointer
    from atm.data.pipeline import Batcher
    from atm.data.vocab import SentencePieceVocabulary

    vocab = SentencePieceVocabulary(os.path.join(workdir, "vocab.model"))
    texts = heldout_rows(config)
    examples = [np.asarray(ids, np.int32) for ids in vocab.encode_batch(texts)]
    if masking:
        config.data.whole_word_masking = masking != "tokens"
    starts = vocab.word_start_table() if config.data.whole_word_masking else None
    if masking == "spaced_words":
        starts = np.array([vocab.id_to_piece(i).startswith("\u2581") for i in range(vocab.size)])
    data = Batcher(examples, config.data.seq_len, config.train.batch_size, 0, config.data.pack, vocab.cls_id,
                   vocab.sep_id, vocab.pad_id, word_starts=None if starts is None else [starts[e] for e in examples])
    objective = objectives.get(config.objective)(config, vocab, None)
    trainer = train.Trainer(config, objective, sharding.make_mesh(config.mesh))
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), 100, False)
    tokens = sum(min(len(e) + 2, config.data.seq_len) for e in examples)
    batches = math.ceil(1.1 * tokens / (config.data.seq_len * config.train.batch_size))  # ≈ one pass (packing)
    out = {}
    for step in ckpt.steps():
        state, _ = ckpt.restore(step, trainer.abstract_state())
        figures = train.evaluate(trainer, state.params, data, batches)
        out[step] = {"accuracy": figures["eval_accuracy"], "loss": figures["eval_loss"], "rows": len(texts)}
    ckpt.close()
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    return out


def read_metrics(workdir: str) -> list[dict]:
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def train_minutes(records: list[dict], tokens_per_step: int) -> dict[int, float]:
    """Cumulative training minutes at each logged step, from the loop's tokens/s over each log window."""
    out, total, previous = {}, 0.0, 0
    for r in records:
        if r.get("tokens_per_s"):
            total += tokens_per_step * (r["step"] - previous) / r["tokens_per_s"] / 60
        previous = r["step"]
        out[r["step"]] = total
    return out


def run_variant(name: str, steps: int, work: str, train_it: bool = True) -> dict:
    """Train (or resume) variant `name` unless finished and score its checkpoints; `train_it=False` scores a
    stopped run's checkpoints as they are (its row says so)."""
    workdir = os.path.join(work, name)
    if os.path.exists(os.path.join(workdir, "config.json")):  # a started run keeps the budget it was started with
        with open(os.path.join(workdir, "config.json")) as f:
            saved = json.load(f)
        steps = round(saved["train"]["steps"] * saved["train"]["batch_size"] * saved["data"]["seq_len"] / (32 * 128))
    config = variant_config(name, steps, work)
    records = read_metrics(workdir)
    stopped = bool(records) and records[-1]["step"] < config.train.steps and not train_it
    if not stopped and (not records or records[-1]["step"] < config.train.steps):
        start = time.time()
        from atm import train
        train.train_and_evaluate(config, workdir)
        with open(os.path.join(workdir, "wall_seconds.txt"), "a") as f:
            f.write(f"{time.time() - start:.1f}\n")
        records = read_metrics(workdir)
    curve = heldout(workdir, config, "heldout_stopped.json" if stopped else "heldout.json")
    # The other two maskings: only for runs started since whole words split unspaced scripts (their final step).
    other = {m: heldout(workdir, config, f, m) for m, f in HELDOUT_MASKING.items()
             if VARIANTS[name][1].get("score_all_maskings") and not stopped}
    minutes = train_minutes(records, config.train.batch_size * config.data.seq_len)
    loop_eval = {r["step"]: r["eval_accuracy"] for r in records if "eval_accuracy" in r}
    final = max(curve)
    wall_path = os.path.join(workdir, "wall_seconds.txt")
    wall = sum(float(x) for x in open(wall_path).read().split()) if os.path.exists(wall_path) else float("nan")
    return {"variant": name, "description": VARIANTS[name][0] + (
                f" (stopped at {records[-1]['step']} of {config.train.steps} steps)" if stopped else ""),
            "steps": final,
            "train_minutes": minutes[final], "wall_minutes": wall / 60, "steps_per_s": final / (minutes[final] * 60),
            "final_accuracy": curve[final]["accuracy"], "best_accuracy": max(v["accuracy"] for v in curve.values()),
            "final_loss": curve[final]["loss"], "loop_eval_accuracy": loop_eval.get(final),
            "heldout_rows": curve[final]["rows"],
            **{f"final_accuracy_{m}": c[final]["accuracy"] for m, c in other.items()},
            "curve": [(s, round(minutes.get(s, float("nan")), 2), v["accuracy"], v["loss"]) for s, v in
                      sorted(curve.items())]}


def write_table(rows: list[dict], out_dir: str, load: str):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "sweep.json"), "w") as f:
        json.dump(rows, f, indent=1)
    lines = ["# Stage-1 `:mini` sweep (issue 14)", "",
             f"Load: {load}. Held-out = the loop's held-out rows minus any whose source text occurs among its "
             "training rows; masked-token accuracy and MLM loss over about one pass with fixed masks. "
             "'loop eval' is the run's own eval_accuracy (a third of its rows also occur in training).", "",
             "| variant | what | steps | train min | steps/s | held-out acc (final) | best | held-out MLM loss | loop eval acc |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        loop = f"{100 * r['loop_eval_accuracy']:.1f}%" if r["loop_eval_accuracy"] is not None else "–"
        lines.append(f"| {r['variant']} | {r['description']} | {r['steps']} | {r['train_minutes']:.1f} | "
                     f"{r['steps_per_s']:.2f} | {100 * r['final_accuracy']:.1f}% | {100 * r['best_accuracy']:.1f}% | "
                     f"{r['final_loss']:.2f} | {loop} |")
    lines += ["", "Curves (step, train minutes, held-out accuracy, held-out loss):", ""]
    for r in rows:
        points = ", ".join(f"{s}: {m:.1f} min {100 * a:.1f}% / {loss:.2f}" for s, m, a, loss in r["curve"])
        others = [f"{m.replace('_', ' ')} {100 * r[f'final_accuracy_{m}']:.1f}%" for m in HELDOUT_MASKING
                  if f"final_accuracy_{m}" in r]
        lines.append(f"- {r['variant']}: {points}" + (f" (final, scored with {', '.join(others)})" if others else ""))
    with open(os.path.join(out_dir, "sweep.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def word_length_shares(vocab_name: str, work: str) -> dict:
    """How the clean held-out tokens fall into words of 1, 2, ... pieces (≥ 20 together), under the whole-word
    rule now (atm.data.vocab.starts_word) and the ▁-only rule before it: what whole-word masking asks a model
    to predict at once."""
    import numpy as np

    from atm.data.vocab import SentencePieceVocabulary

    vocab = SentencePieceVocabulary(build_vocab(vocab_name, work))
    rules = {"words": vocab.word_start_table(),
             "spaced_words": np.array([vocab.id_to_piece(i).startswith("\u2581") for i in range(vocab.size)])}
    encoded = [np.asarray(ids) for ids in vocab.encode_batch(heldout_rows(common.stage1_mini_config())) if len(ids)]
    total = sum(len(ids) for ids in encoded)
    out = {"vocab": vocab_name, "tokens": total}
    for rule, starts in rules.items():
        tokens_by_length, words = np.zeros(21), 0
        for ids in encoded:
            word_starts = starts[ids].copy()
            word_starts[0] = True  # as pipeline.pack_row: a row's first piece begins a word
            lengths = np.bincount(np.cumsum(word_starts))[1:]
            np.add.at(tokens_by_length, np.minimum(lengths, 20), lengths)
            words += len(lengths)
        out[rule] = {"pieces_per_word": total / words,
                     "token_share_by_word_length": {n: float(v / total) for n, v in enumerate(tokens_by_length) if v}}
    return out


def count_model_accuracy(vocab_name: str, work: str, mask_rate: float = 0.15) -> dict:
    """What local context alone gives: the accuracy on single masked tokens of the held-out rows (the loop's
    every-50th rows not seen in training) of argmax counts of (left, right) neighbour pairs from half the
    training rows, backing off to the left neighbour, then the most frequent piece. No whole-word masking."""
    import collections
    import random

    import sentencepiece as spm
    build_vocab(vocab_name, work)
    corpus_data = VOCABS[vocab_name][2]
    corpus = os.path.join(work, "vocab", f"corpus_{vocab_name}.txt" if corpus_data else "corpus.txt")
    sp = spm.SentencePieceProcessor(model_file=os.path.join(work, "vocab", vocab_name + ".model"))
    with open(corpus, encoding="utf-8") as f:
        lines = [line.rstrip("\n").split("\t", 1)[-1] for line in f]
    train_rows = [t for i, t in enumerate(lines) if i % 50]
    seen = set(train_rows)
    held = [t for i, t in enumerate(lines) if i % 50 == 0 and t not in seen]
    pair, left, unigram = collections.defaultdict(collections.Counter), collections.defaultdict(collections.Counter), \
        collections.Counter()
    for ids in sp.encode(train_rows[::2]):
        ids = [2] + ids + [3]
        for j in range(1, len(ids) - 1):
            pair[ids[j - 1], ids[j + 1]][ids[j]] += 1
            left[ids[j - 1]][ids[j]] += 1
            unigram[ids[j]] += 1
    top = unigram.most_common(1)[0][0]
    rng, correct, frequent, n = random.Random(0), 0, 0, 0
    for ids in sp.encode(held):
        ids = [2] + ids + [3]
        for j in range(1, len(ids) - 1):
            if rng.random() >= mask_rate:
                continue
            key = (ids[j - 1], ids[j + 1])
            guess = (pair[key] if key in pair else left[ids[j - 1]] if ids[j - 1] in left else unigram).most_common(1)[0][0]
            correct, frequent, n = correct + (guess == ids[j]), frequent + (top == ids[j]), n + 1
    return {"vocab": vocab_name, "heldout_rows": len(held), "masked": n, "count_model_accuracy": correct / n,
            "most_frequent_piece_accuracy": frequent / n}


def finetune_config(teacher: str, scratch: bool, steps: int, learning_rate: float):
    """configs/finetune/massive.py:TEACHER (its encoder shape and vocabulary); `scratch`: the same without init_from."""
    spec = importlib.util.spec_from_file_location("massive", os.path.join(REPO, "configs", "finetune", "massive.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config(teacher)
    if scratch:
        c.init_from = ""
    c.train.update(steps=steps, eval_every=steps, log_every=max(1, steps // 10))
    c.optimizer.update(learning_rate=learning_rate, warmup_steps=max(1, steps // 15))
    c.checkpoint.update(every=steps, keep=1)
    return c


def finetune(variant: str, work: str, steps: int, learning_rates: dict) -> list[dict]:
    """MASSIVE en-US intent + slots from `variant`'s checkpoint and from scratch (same encoder, vocabulary and
    steps); test intent accuracy / slot F1 on en-US and zero-shot on de-DE."""
    teacher = os.path.join(work, variant)
    rows = []
    for init, lr in learning_rates.items():
        workdir = os.path.join(work, "finetune", f"{variant}_{init}_lr{lr:g}_{steps}")
        common.run(finetune_config(teacher, init == "scratch", steps, lr), workdir)
        figures = common.evaluate_locales(workdir, ("en-US", "de-DE"))
        rows.append({"teacher": variant, "init": init, "learning_rate": lr, "steps": steps, "workdir": workdir,
                     **{f"{loc}_{k}": v for loc, f in figures.items() for k, v in f.items()}})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="", help="comma-separated variants (default: all, in order)")
    parser.add_argument("--steps", type=int, default=600, help="steps at 32×128 tokens (scaled for other shapes)")
    parser.add_argument("--workdir", default="workdirs/sweep")
    parser.add_argument("--results", default="results/pretraining")
    parser.add_argument("--load", default="pinned to 1 of 2 CPU cores (taskset -c 1, nice 19) while two "
                                          "other engineers build and test on the other")
    parser.add_argument("--finetune", default="", help="a variant: fine-tune on MASSIVE en-US from it and from scratch")
    parser.add_argument("--finetune_steps", type=int, default=1500)
    parser.add_argument("--finetune_lr", default="pretrained=5e-4,scratch=1e-3",
                        help="init=learning rate pairs, init: pretrained | scratch")
    parser.add_argument("--word_lengths", default="", help="a vocabulary: token shares by word length (pieces)")
    parser.add_argument("--calibrate", default="", help="vocabularies: the (left, right)-neighbour count model's accuracy")
    args = parser.parse_args(argv)
    work = os.path.abspath(args.workdir)
    if args.word_lengths:
        shares = word_length_shares(args.word_lengths, work)
        with open(os.path.join(REPO, args.results, "word_lengths.json"), "w") as f:
            json.dump(shares, f, indent=1)
        for rule in ("spaced_words", "words"):
            by_length = shares[rule]["token_share_by_word_length"]
            print(f"{rule:>12}: {shares[rule]['pieces_per_word']:.2f} pieces per word; share of tokens in words of "
                  + ", ".join(f"{n}{'+' if n == 20 else ''}: {100 * v:.1f}%" for n, v in by_length.items()))
        return
    if args.calibrate:
        rows = [count_model_accuracy(v, work) for v in args.calibrate.split(",")]
        os.makedirs(os.path.join(REPO, args.results), exist_ok=True)
        with open(os.path.join(REPO, args.results, "count_model.json"), "w") as f:
            json.dump(rows, f, indent=1)
        for r in rows:
            print(f"{r['vocab']:>10}: count model {100 * r['count_model_accuracy']:.1f}%, most frequent piece "
                  f"{100 * r['most_frequent_piece_accuracy']:.1f}% ({r['masked']} masked tokens, {r['heldout_rows']} rows)")
        return
    if args.finetune:
        rates = {k: float(v) for k, v in (x.split("=") for x in args.finetune_lr.split(","))}
        rows = finetune(args.finetune, work, args.finetune_steps, rates)
        path = os.path.join(REPO, args.results, "finetune.json")
        previous = json.load(open(path)) if os.path.exists(path) else []
        keep = [r for r in previous if r["workdir"] not in {x["workdir"] for x in rows}]
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(keep + rows, f, indent=1)
        for r in keep + rows:
            print(f"{r['teacher']:>16} {r['init']:>10} lr {r['learning_rate']:g} {r['steps']} steps: en-US intent "
                  f"{100 * r['en-US_accuracy']:.1f}% slot F1 {100 * r.get('en-US_slot_f1', 0):.1f}%, de-DE zero-shot "
                  f"{100 * r['de-DE_accuracy']:.1f}% / {100 * r.get('de-DE_slot_f1', 0):.1f}%")
        return
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(VARIANTS)
    for n in names:
        if n not in VARIANTS:
            raise SystemExit(f"--only: unknown variant {n!r} (variants: {', '.join(VARIANTS)})")
    clock = common.Clock(work)
    for name in names:
        row = run_variant(name, args.steps, work)
        clock.log(f"{name}: held-out accuracy {100 * row['final_accuracy']:.1f}% after {row['steps']} steps "
                  f"({row['train_minutes']:.1f} train min)")
    done = [run_variant(n, args.steps, work, train_it=False) for n in VARIANTS
            if os.path.exists(os.path.join(work, n, "config.json"))]
    # Rows of earlier sessions whose workdirs are gone stay in the table as they were measured.
    previous_path = os.path.join(REPO, args.results, "sweep.json")
    if os.path.exists(previous_path):
        fresh = {r["variant"] for r in done}
        with open(previous_path) as f:
            done = [r for r in json.load(f) if r["variant"] not in fresh] + done
    write_table(done, os.path.join(REPO, args.results), args.load)
    print(open(os.path.join(REPO, args.results, "sweep.md")).read())


if __name__ == "__main__":
    main()
