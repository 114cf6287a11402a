"""NarrowBERT in miniature: BERT vs NarrowBERT arrangements, same pretraining, then SST-2 and MASSIVE intents.

    python -m reproduce.narrowbert [--size=mini] [--scale=1.0] [--seeds=3] [--results=results/narrowbert]
    python -m reproduce.narrowbert & python -m reproduce.narrowbert   # one per core: the two share the runs
    python -m reproduce.narrowbert --smoke --seeds=1 --results=/tmp/nb   # seconds-to-minutes check

`--size` picks a shape of SCALES (`--smoke`: the `smoke` one); `--scale` multiplies its pretraining and
fine-tuning steps (10-100 on a GPU), as every reproduce script's --scale does.

For each seed and each arrangement (BERT = "" plus `SCALES[scale]["arrangements"]`):
  1. MLM pretraining on the ATM stage-1 corpus (configs/atm_stage1_public.py: WikiANN text, TyDi QA
     contexts, XNLI premises, 70% spoken form, whole-word masking; `rows` rows sampled, 0: all), the same
     number of steps, batches and masks for every arrangement; the `mini` size with the `:mini` recipe
     (post-LN, sin/cos position start, half the positions masked, lr 3e-3), which leaves the frequent-piece
     plateau. The SentencePiece vocabulary is trained once, on the first run's training text, and shared by
     every run.
  2. Fine-tuning from that checkpoint (`config.init_from`), in the same arrangement, on SST-2 and on
     MASSIVE en-US intents alone (`finetune.sequence_heads_only`: S = [CLS] for NarrowBERT), scored on
     the validation split. Sizes with `scratch` also fine-tune BERT from random weights: the row that says
     whether pretraining is worth anything at this budget.
Throughput ratios come from `atm.bench.compare_arrangements` at the pretraining shape (BERT and each
arrangement interleaved on the same batches: pretraining steps and [CLS] inference), as the runs
themselves are timed one after another on a shared machine. The ">2× pretraining" claim is judged at the
paper's 15% masking (NarrowBERT's narrow layers run on the masked slots, so the speed-up depends on how many
there are); a recipe that masks more is benched at its own rate too, and both figures are printed.
Writes `table.md`, `claims.json`, `results.json` and `narrowbert.png` into --results. Runs live in --workdir; a run
that finished (its `summary.json` exists) is not redone.
"""
from __future__ import annotations

import json
import os
import statistics
from typing import NamedTuple

from reproduce import common

SCALES = {
    # ~45 minutes on 2 shared CPU cores (load ~10); too few steps to learn anything (results/narrowbert/NOTES.md).
    "small": dict(model=dict(num_layers=4, hidden_size=64, num_heads=4, ffn_size=256), vocab_size=8000,
                  seq_len=64, batch_size=32, rows=20000, pretrain_steps=150, finetune_steps=100,
                  finetune_seq_len=48, arrangements="1sf:3sf", bench_steps=5),
    # The committed results/narrowbert/: models that learn their fine-tuning tasks (4×128, 500 MLM steps,
    # 400 fine-tuning steps at lr 2e-3), BERT vs 1sf:3sf; 23.4 minutes on 2 quiet CPU cores with 3 seeds.
    "medium": dict(model=dict(num_layers=4, hidden_size=128, num_heads=4, ffn_size=512), vocab_size=8000,
                   seq_len=64, batch_size=32, rows=20000, pretrain_steps=500, finetune_steps=400,
                   finetune_seq_len=48, finetune_lr=2e-3, arrangements="1sf:3sf", bench_steps=10),
    # The committed results/narrowbert/ (issue 14): the stage-1 `:mini` recipe at 64 tokens, 1000 MLM steps of the
    # 4×128 encoder; fine-tuning 1000 steps at lr 1e-3 (as reproduce/atm.py) with a from-scratch row.
    "mini": dict(model=dict(num_layers=4, hidden_size=128, num_heads=4, ffn_size=512, **common.MINI_ENCODER),
                 recipe="mini", vocab_size=8000, seq_len=64, batch_size=32, rows=0, pretrain_steps=1000,
                 finetune_steps=1000, finetune_seq_len=48, finetune_lr=1e-3, arrangements="1sf:3sf", bench_steps=10,
                 scratch=True),
    # The pipeline end to end in a few minutes (tests/test_narrow.py runs it with one seed).
    "smoke": dict(model=dict(num_layers=2, hidden_size=32, num_heads=2, ffn_size=64), vocab_size=2000,
                  seq_len=32, batch_size=8, rows=600, pretrain_steps=3, finetune_steps=3, finetune_seq_len=24,
                  arrangements="1sf:1sf", bench_steps=1, finetune_eval_batches=2, scratch=True),
}
TASKS = (("sst2", "sst2", "SST-2"), ("massive_intents", "massive_en_us", "MASSIVE en-US intents"))
SCRATCH = "scratch"  # the from-scratch row: BERT's shape, fine-tuned from random weights
PAPER_MASK_RATE = 0.15  # the paper's pretraining masking, at which its ">2× pretraining" is judged


def pretrain_config(scale: dict, arrangement: str, seed: int, vocab: str):
    import configs.atm_stage1_public as stage1

    c = stage1.get_config(scale.get("recipe", "small"))
    c.model.update(scale["model"])
    c.model.update(vocab_size=scale["vocab_size"], arrangement=arrangement, hidden_dropout=0.1)
    c.seed = seed
    c.data.vocab = vocab
    c.data.vocab_size = scale["vocab_size"]
    c.data.seq_len = scale["seq_len"]
    c.data.num_examples = scale["rows"]
    c.train.update(steps=scale["pretrain_steps"], batch_size=scale["batch_size"],
                   log_every=max(1, scale["pretrain_steps"] // 10), eval_every=scale["pretrain_steps"], eval_batches=4)
    if "recipe" not in scale:  # a recipe brings its own learning rate and warmup
        c.optimizer.update(learning_rate=1e-3, warmup_steps=max(1, scale["pretrain_steps"] // 10))
    c.checkpoint.update(every=scale["pretrain_steps"], async_save=False)
    return c


def finetune_config(scale: dict, model: dict, task: str, seed: int, vocab: str, init_from: str):
    # SST-2 has only [CLS]; MASSIVE: intents without the slot head. Eval batches -1: the whole validation split.
    c = common.finetune_config(model, vocab, scale["finetune_steps"], seed, task=task,
                               seq_len=scale["finetune_seq_len"], batch_size=scale["batch_size"],
                               learning_rate=scale.get("finetune_lr", 5e-4),
                               eval_batches=scale.get("finetune_eval_batches", -1), keep=None,
                               sequence_heads_only=True)
    c.init_from = init_from  # "": from scratch
    c.data.vocab_size = scale["vocab_size"]
    c.checkpoint.async_save = False
    return c


def train_vocabulary(config, directory: str) -> str:
    """The shared SentencePiece model, trained once on the pretraining config's training text (as a
    run without `data.vocab` would train its own)."""
    from atm.data import sources

    def make():
        rows, _ = sources.load_texts(config.data)
        train_texts, _ = sources.split_train_eval(sources.apply_spoken_share(rows, config.data.spoken_share),
                                                  config.data.eval_fraction)
        sources.load_vocab(config.data, directory, train_texts)
    return common.made_once(os.path.join(directory, "vocab.model"), make)


def run(scale_name: str, seeds: int, out: str, workdir: str, step_scale: float = 1.0) -> dict:
    """Runs every seed's plan (another process running the same command shares it), benches and writes the table."""
    scale = dict(SCALES[scale_name])
    scale.update(common.scaled({p: scale[p] for p in ("pretrain_steps", "finetune_steps")}, step_scale))
    clock = common.Clock(workdir)
    arrangements = [""] + [a for a in scale["arrangements"].split(",") if a]
    vocab = train_vocabulary(pretrain_config(scale, "", 0, ""), os.path.join(workdir, "vocab"))
    plans = {seed: seed_jobs(scale, seed, arrangements, vocab, workdir) for seed in range(seeds)}
    # Every pretraining first (the fine-tunings wait for them), the from-scratch rows last: they need nothing
    # and fill a core that would otherwise wait.
    rows = [row for seed in plans for row in plans[seed]]
    jobs = [row.pretrain for row in rows if row.pretrain]
    jobs += [job for row in rows if row.pretrain for job in row.finetune.values()]
    jobs += [job for row in rows if not row.pretrain for job in row.finetune.values()]
    common.run_jobs(jobs, log=clock.log)
    runs = [run_record(seed, row) for seed in plans for row in plans[seed]]
    # Every run has finished (run_jobs waited for the other process's), so the machine is quiet: one process
    # benches and writes the table; one started beside it waits for the lock, then reads what it wrote.
    with common.run_lock(workdir):
        results_path = os.path.join(out, "results.json")
        if not os.path.exists(results_path) or _read_json(results_path).get("runs") != runs:
            speed = bench_speed(scale, arrangements, vocab, None)
            paper_speed = speed if pretrain_config(scale, "", 0, vocab).mlm.mask_rate == PAPER_MASK_RATE else \
                bench_speed(scale, arrangements, vocab, PAPER_MASK_RATE)
            results = {"scale": scale_name, "step_scale": step_scale, "scale_settings": scale, "seeds": seeds,
                       "minutes": round(clock.minutes(), 1), "runs": runs, "speed": speed,
                       "speed_paper_mask": paper_speed}
            os.makedirs(out, exist_ok=True)
            with open(results_path, "w") as f:
                json.dump(results, f, indent=1)
            write_table(results, os.path.join(out, "table.md"))
            plot(results, os.path.join(out, "narrowbert.png"))
        return _read_json(results_path)


def _read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def table_rows(scale: dict, arrangements: list[str]) -> list[tuple[str, str]]:
    """(arrangement, its run folder name) per row of the table: each arrangement, then the scratch row."""
    rows = arrangements + ([SCRATCH] if scale.get("scratch") else [])
    return [(a, a.replace(":", "-") or "bert") for a in rows]


class Row(NamedTuple):
    """One row of the table for one seed: its pretraining job (None for the scratch row) and fine-tuning jobs."""
    arrangement: str
    pretrain: "common.Job | None"
    finetune: dict  # {task key: its fine-tuning job}


def seed_jobs(scale: dict, seed: int, arrangements: list[str], vocab: str, workdir: str) -> list[Row]:
    """The table's rows for `seed`: each arrangement, then the scratch row."""
    rows = []
    for arrangement, name in table_rows(scale, arrangements):
        config = pretrain_config(scale, "" if arrangement == SCRATCH else arrangement, seed, vocab)
        pretrain = None
        if arrangement != SCRATCH:
            pretrain = common.Job(os.path.join(workdir, f"seed{seed}", name, "pretrain"), lambda c=config: c)
        init = pretrain.workdir if pretrain else ""
        finetune = {key: common.Job(os.path.join(workdir, f"seed{seed}", name, key),
                                    lambda task=task, model=config.model.to_dict(), init=init: finetune_config(
                                        scale, model, task, seed, vocab, init),
                                    needs=(init,) if init else ())
                    for key, task, _ in TASKS}
        rows.append(Row(arrangement, pretrain, finetune))
    return rows


def run_record(seed: int, row: Row) -> dict:
    """The table's record of one finished row of `seed_jobs`: pretraining and fine-tuning figures."""
    record = {"seed": seed, "arrangement": row.arrangement or "bert", "pretrain": {}}
    for key, job in ([("pretrain", row.pretrain)] if row.pretrain else []) + list(row.finetune.items()):
        record[key] = _figures(common.run(job.config(), job.workdir), job.workdir)
    return record


def bench_speed(scale: dict, arrangements: list[str], vocab: str, mask_rate: float | None) -> list[dict]:
    """atm.bench.compare_arrangements at the pretraining shape (`mask_rate` None: the recipe's own), with the
    load average it ran under."""
    from atm import bench

    config = pretrain_config(scale, "", 0, vocab)
    if mask_rate is not None:
        config.mlm.mask_rate = mask_rate
    config.bench = {"arrangements": ",".join(arrangements[1:])}
    lines = bench.compare_arrangements(_bench_ready(config), steps=scale["bench_steps"], warmup=1)
    return [{**{k: v for k, v in line.items() if k not in ("train", "infer")}, "mask_rate": config.mlm.mask_rate,
             "load_avg_1m": round(os.getloadavg()[0], 2)} for line in lines]


def _bench_ready(config):
    """The bench draws random ids: no data source or vocabulary file is read."""
    import ml_collections

    c = ml_collections.ConfigDict(config.to_dict())
    c.data.source, c.data.vocab, c.data.whole_word_masking = "synthetic", "", False
    return c


def _figures(summary: dict, workdir: str) -> dict:
    """Final eval figures and the median logged tokens/s (the first log, with compilation, left out)."""
    speeds = []
    path = os.path.join(workdir, "metrics.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            speeds = [json.loads(line).get("tokens_per_s") for line in f if line.strip()]
    speeds = [s for s in speeds[1:] if s] or [s for s in speeds if s]
    keep = ("eval_loss", "eval_accuracy", "loss", "step")
    return {**{k: summary[k] for k in keep if k in summary},
            "tokens_per_s": statistics.median(speeds) if speeds else None}


def _mean_spread(values):
    """(mean, spread) over the runs that have the figure; (None, None) if none has."""
    values = [v for v in values if v is not None]
    return common.mean_spread(values) if values else (None, None)


def summarize(results: dict) -> list[dict]:
    rows = []
    names = list(dict.fromkeys(r["arrangement"] for r in results["runs"]))
    speed = {line["arrangement"]: line for line in results.get("speed_paper_mask", results["speed"])}
    recipe_speed = {line["arrangement"]: line for line in results["speed"]}
    for name in names:
        runs = [r for r in results["runs"] if r["arrangement"] == name]
        row = {"arrangement": name, "seeds": len(runs)}
        row["mlm_eval_accuracy"] = _mean_spread([r["pretrain"].get("eval_accuracy") for r in runs])
        for key, _, _ in TASKS:
            row[key] = _mean_spread([r[key].get("eval_accuracy") for r in runs])
        line = speed.get(name, {})
        row["speedup_train"] = line.get("speedup_train", 1.0 if name == "bert" else None)
        row["speedup_infer"] = line.get("speedup_infer", 1.0 if name == "bert" else None)
        row["flops_ratio_train"] = line.get("flops_ratio_train", 1.0 if name == "bert" else None)
        row["flops_ratio_infer"] = line.get("flops_ratio_infer", 1.0 if name == "bert" else None)
        row["speedup_train_recipe"] = recipe_speed.get(name, {}).get("speedup_train", 1.0 if name == "bert" else None)
        rows.append(row)
    return rows


def claims(results: dict) -> list[tuple[str, str]]:
    """[(claim, verdict)] per arrangement and task: "little or no accuracy lost" holds when the arrangement's
    mean accuracy is at most one seed spread (the larger std of the two, at least 1 point) below BERT's; the
    speed claim at the paper's masking; with a scratch row, whether BERT's pretraining pays, per task."""
    def accuracies(name, key):
        return [r[key]["eval_accuracy"] for r in results["runs"]
                if r["arrangement"] == name and r[key].get("eval_accuracy") is not None]

    speed = {line["arrangement"]: line for line in results.get("speed_paper_mask", results["speed"])}
    lines = []
    names = list(dict.fromkeys(r["arrangement"] for r in results["runs"]))
    if SCRATCH in names:
        for key, _, label in TASKS:
            lines.append((f"pretraining pays: BERT pretrained vs from scratch, {label}",
                          common.verdict(accuracies("bert", key), accuracies(SCRATCH, key))))
    for name in (n for n in names if n not in ("bert", SCRATCH)):
        for key, _, label in TASKS:
            (narrow, narrow_std), (bert, bert_std) = (common.mean_spread([100 * v for v in accuracies(n, key)])
                                                      for n in (name, "bert"))
            allowed = max(narrow_std, bert_std, 1.0)
            lines.append((f"{name}, {label}: {narrow - bert:+.1f} points vs BERT (allowed: -{allowed:.1f})",
                          common.held(narrow - bert >= -allowed)))
        train = speed.get(name, {}).get("speedup_train")
        if train is not None:
            mask = speed[name].get("mask_rate", PAPER_MASK_RATE)
            lines.append((f"{name}, > 2× pretraining throughput: {train:.2f}× ({100 * mask:g}% masked)",
                          f"{common.held(train > 2.0)} at this shape"))
    return lines


def write_table(results: dict, path: str):
    def pct(pair):
        mean, std = pair
        return "—" if mean is None else f"{100 * mean:.1f} ± {100 * std:.1f}"

    def ratio(x):
        return "—" if x is None else f"{x:.2f}×"

    s = results["scale_settings"]
    lines = [
        f"# NarrowBERT in miniature (scale `{results['scale']}`, {results['seeds']} seeds)", "",
        f"Produced by `python -m reproduce.narrowbert --size={results['scale']} "
        f"--scale={results.get('step_scale', 1.0)} --seeds={results['seeds']}`"
        + (f" in {results['minutes']} minutes by the workdir's clock (reproduce.common.Clock)."
           if "minutes" in results else "."),
        f"Model {s['model']}, vocabulary {s['vocab_size']}; pretraining: {s['pretrain_steps']} MLM steps of "
        f"{s['batch_size']}×{s['seq_len']} tokens on the ATM stage-1 corpus ({str(s['rows']) + ' rows' if s['rows'] else 'every row'}"
        + (f", configs/atm_stage1_public.py:{s['recipe']}'s recipe" if "recipe" in s else "") + "); fine-tuning: "
        f"{s['finetune_steps']} steps of {s['batch_size']}×{s['finetune_seq_len']} at learning rate "
        f"{s.get('finetune_lr', 5e-4):g}, same arrangement, "
        "validation accuracy. Mean ± std over seeds. Speed-ups: atm.bench interleaved on the same batches "
        "at the pretraining shape (median step time of BERT / of the arrangement), pretraining at the paper's "
        f"{100 * PAPER_MASK_RATE:g}% masking and at the recipe's; FLOP ratio: analytic." + bench_load(results), "",
        "| arrangement | MLM eval acc | SST-2 acc | MASSIVE intent acc | pretrain speed-up (paper's masking) | "
        "pretrain speed-up (recipe's masking) | [CLS] infer speed-up | FLOP ratio train (paper's masking) / infer |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in summarize(results):
        lines.append(f"| {row['arrangement']} | {pct(row['mlm_eval_accuracy'])} | {pct(row['sst2'])} | "
                     f"{pct(row['massive_intents'])} | {ratio(row['speedup_train'])} | "
                     f"{ratio(row['speedup_train_recipe'])} | {ratio(row['speedup_infer'])} "
                     f"| {ratio(row['flops_ratio_train'])} / {ratio(row['flops_ratio_infer'])} |")
    verdicts = claims(results)
    lines += ["", "## The paper's claim, in miniature", ""] + common.claim_bullets(verdicts) + [""]
    common.write_table(path, lines, verdicts)


def bench_load(results: dict) -> str:
    """The benches' masking and load average, as a sentence (empty for results that did not record them)."""
    lines = results["speed"] + results.get("speed_paper_mask", [])
    if not all("load_avg_1m" in line for line in lines):
        return ""
    masks = sorted({line["mask_rate"] for line in lines})
    loads = sorted({line["load_avg_1m"] for line in lines})
    return (f" Benched at {' and '.join(f'{100 * m:g}%' for m in masks)} masked, load average "
            f"{' / '.join(f'{x:g}' for x in loads)} (2 CPU cores).")


def plot(results: dict, path: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summarize(results)
    names = [r["arrangement"] for r in rows]
    fig, (acc_ax, speed_ax) = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / len(TASKS)
    for i, (key, _, label) in enumerate(TASKS):
        means = [100 * (r[key][0] or 0) for r in rows]
        stds = [100 * (r[key][1] or 0) for r in rows]
        acc_ax.bar([x + i * width for x in range(len(rows))], means, width, yerr=stds, capsize=3, label=label)
    acc_ax.set_xticks([x + width * (len(TASKS) - 1) / 2 for x in range(len(rows))], names)
    acc_ax.set_ylabel("validation accuracy (%)")
    acc_ax.set_title(f"fine-tuned accuracy, mean ± std over {results['seeds']} seeds")
    acc_ax.legend()
    for i, (key, label) in enumerate((("speedup_train", "pretraining"), ("speedup_infer", "[CLS] inference"))):
        speed_ax.bar([x + i * 0.4 for x in range(len(rows))], [r[key] or 0 for r in rows], 0.4, label=label)
    speed_ax.axhline(1.0, color="grey", lw=0.8)
    speed_ax.set_xticks([x + 0.2 for x in range(len(rows))], names)
    speed_ax.set_ylabel("throughput / BERT's")
    speed_ax.set_title("speed-up over atm BERT (same batches)")
    speed_ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = common.parser(__doc__, seeds=3, workdir=os.path.join(common.REPO, "workdirs", "reproduce_narrowbert"),
                           results=os.path.join(common.REPO, "results", "narrowbert"))
    parser.add_argument("--size", default="mini", choices=sorted(SCALES), help="the model and data shape")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    if args.steps:
        parser.error("--steps: reproduce.narrowbert has two phases; scale them with --scale")
    size = "smoke" if args.smoke else args.size
    runs = size if args.scale == 1.0 else f"{size}_x{args.scale:g}"  # a finished run of another scale is not reused
    results = run(size, args.seeds, args.results, os.path.join(args.workdir, runs), args.scale)
    print(open(os.path.join(args.results, "table.md")).read(), flush=True)
    return results


if __name__ == "__main__":
    main()
