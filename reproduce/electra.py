"""ELECTRA (arXiv 2003.10555) in miniature: replaced-token detection against MLM at equal pretraining wall-clock.

    python -m reproduce.electra [--scale=1.0] [--seeds=3] [--workdir=workdirs/reproduce_electra] [--smoke]
    python -m reproduce.electra --smoke --workdir=/tmp/e --results=/tmp/e_results   # end to end, a 2×32 model

1. step_ratio  ELECTRA's training step and the MLM step of the same discriminator, timed interleaved on the
               same batches (`atm.bench.electra_vs_mlm`, the `python -m atm.bench --config=configs/electra.py`
               figure): r = ELECTRA's median step time / MLM's. Interleaving exposes both to the same
               background load, so r holds on a shared machine where absolute times drift.
2. electra     ELECTRA pretraining (generator 0.25× wide, λ = 50, 15% masked, no random tokens) of a
               4×128 discriminator, `pretrain` steps of 32×64 tokens, on English text (WikiANN-en fragments,
               their spoken form, MASSIVE en-US utterances), its own 8000-piece vocabulary.
3. mlm         MLM (BERT's 80/10/10 masking of the same 15% of slots) of the same encoder on the same text and
               vocabulary for round(r × pretrain) steps: the same pretraining wall-clock.
4. Each encoder fine-tuned on SST-2 and on MASSIVE en-US intents (sequence heads only, as
   reproduce/narrowbert.py), `--seeds` seeds each, scored on the whole validation split of each.
Writes results/electra/table.md and results/electra/electra.png (mean ± standard deviation over seeds).
A finished step is not redone when the script is run again with the same --workdir.
The paper's claim checked: at equal pretraining compute, ELECTRA fine-tunes better than MLM. How far each
pretraining got (MLM masked-token accuracy; ELECTRA's generator accuracy and replaced-token F1) goes into
the table: at the most-frequent-piece plateau the verdict means little (results/pretraining/NOTES.md).
"""
from __future__ import annotations

import copy
import json
import os

from atm import config as atm_config
from reproduce import common

# The discriminator (= the MLM encoder): common.TEACHER's 4×128 shape with the stage-1 `:mini` encoder settings
# (post-LN, sin/cos position start: the pretraining sweep's levers, results/pretraining/), lr 1e-3; the generator
# follows from config.electra (hidden 32, 1 head, FFN 128).
ENCODER = {**common.TEACHER, **common.MINI_ENCODER}
SMOKE_ENCODER = dict(num_layers=2, hidden_size=32, num_heads=2, ffn_size=64, vocab_size=2000, pre_layer_norm=False)
TEXT = "mlm_text_en:0.6,mlm_text_en_spoken:0.2,massive_text_en_us:0.2"
TASKS = {"sst2": ("SST-2", "sst2", 64), "massive": ("MASSIVE en-US intents", "massive_en_us", 32)}
MODELS = ("electra", "mlm")
PRETRAIN_LR = 1e-3  # both pretraining runs (MLM copies the ELECTRA run's optimiser)
# Every fine-tuning run of both encoders (--finetune_lr): google-research/electra's rate for ELECTRA-small. The
# discriminator is sensitive to it: at 2e-3 it does not learn SST-2 at all (55.8% after 600 steps, train loss
# ln 2); at 1e-3 one seed of three stalls (60.4%); at 3e-4 that seed reaches 75.6% (results/electra/NOTES.md).
FINETUNE_LR = 3e-4
LABELS = {"electra": "ELECTRA discriminator", "mlm": "MLM encoder"}


def electra_pretrain_config(model: dict, steps: int, batch: int, smoke: bool):
    """ELECTRA pretraining of the `model` discriminator on TEXT (--smoke: 400 rows, a 2000-piece vocabulary)."""
    c = common.pretrain_config("electra", model, TEXT, steps, 64, batch, num_examples=400 if smoke else 0)
    c.data.vocab_size = c.model.vocab_size
    # Not the MLM sweep's 3e-3: there the discriminator collapses to one constant logit (AUC 0.575 at step 300,
    # 0.500 at 600); at 1e-3 its AUC rises (0.60 → 0.63 over 400 steps; results/electra/NOTES.md).
    c.optimizer.learning_rate = PRETRAIN_LR
    c.train.eval_every = max(1, steps // 5)  # the discriminator's curve (F1, AUC) in metrics.jsonl
    return c


def mlm_pretrain_config(electra_config, steps: int, vocab: str):
    """`atm.objectives.electra.mlm_config` of the ELECTRA run (same encoder, text, optimiser, mask slots), on
    the ELECTRA run's vocabulary, for `steps` steps."""
    from atm.objectives.electra import mlm_config

    c = mlm_config(electra_config)
    c.data.vocab = vocab
    c.train.update(steps=steps, log_every=max(1, steps // 10), eval_every=steps)
    c.optimizer.warmup_steps = max(1, steps // 10)
    c.checkpoint.every = steps
    return c


def step_ratio(electra_config, path: str, smoke: bool) -> dict:
    """r = ELECTRA step time / MLM step time (atm.bench, interleaved), measured once and kept in `path`."""
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    from atm import bench

    config = copy.deepcopy(electra_config)
    config.data.source = "synthetic"  # the bench draws random ids of the model's vocabulary: no text needed
    record = bench.electra_vs_mlm(config, steps=2 if smoke else 10, warmup=0 if smoke else 2)
    out = {"ratio": record["electra_over_mlm"], "electra_step_s": record["electra"]["step_s"],
           "mlm_step_s": record["mlm"]["step_s"], "load_avg_1m": record["electra"]["load_avg_1m"]}
    with open(path, "w") as f:
        json.dump(out, f, indent=2)
    return out


def finetune_config(task: str, model: dict, vocab: str, steps: int, seed: int, eval_batches: int = -1,
                    learning_rate: float = FINETUNE_LR):
    """Fine-tuning on `task` (a TASKS key) with its sequence head only (MASSIVE: intents, no slot head), scored
    on its validation split as reproduce/narrowbert.py does (`eval_batches` -1: all of it)."""
    _, name, seq_len = TASKS[task]
    return common.finetune_config({**common.MODEL, **model}, vocab, steps, seed, task=name, seq_len=seq_len,
                                  learning_rate=learning_rate, eval_batches=eval_batches, sequence_heads_only=True)


def main(argv=None):
    parser = common.parser(__doc__, seeds=3, workdir="workdirs/reproduce_electra", results="results/electra")
    parser.add_argument("--batch", type=int, default=32, help="pretraining batch (rows of 64 tokens)")
    parser.add_argument("--finetune_lr", type=float, default=FINETUNE_LR,
                        help="every fine-tuning run's learning rate (run dirs carry it, so rates do not mix)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.scale, args.seeds, args.batch = 0.005, min(args.seeds, 2), 8
    steps = common.schedule(dict(pretrain=1500, finetune=600), args)
    work = os.path.abspath(args.workdir)
    clock = common.Clock(work)
    print(f"ELECTRA miniature: steps {steps}, seeds {args.seeds}, workdir {work}", flush=True)

    # 1-3: equal pretraining wall-clock: MLM gets r × ELECTRA's steps
    model = SMOKE_ENCODER if args.smoke else ENCODER
    electra = electra_pretrain_config(model, steps["pretrain"], args.batch, args.smoke)
    ratio = step_ratio(electra, os.path.join(args.results, "step_ratio.json"), args.smoke)
    clock.log(f"ELECTRA step / MLM step = {ratio['ratio']:.3f} (load average {ratio['load_avg_1m']})")
    pretrained = {"electra": common.run(electra, f"{work}/electra")}
    vocab = f"{work}/electra/vocab.model"
    clock.log("electra pretrained")
    mlm_steps = max(2, round(ratio["ratio"] * steps["pretrain"]))
    pretrained["mlm"] = common.run(mlm_pretrain_config(electra, mlm_steps, vocab), f"{work}/mlm")
    clock.log(f"mlm pretrained ({mlm_steps} steps)")

    # 4: fine-tune both on SST-2 and MASSIVE en-US intents, several seeds
    results = {}
    for name in MODELS:
        for task in TASKS:
            for seed in range(args.seeds):
                c = finetune_config(task, model, vocab, steps["finetune"], seed, eval_batches=2 if args.smoke else -1,
                                    learning_rate=args.finetune_lr)
                c.init_from = f"{work}/{name}"
                summary = common.run(c, f"{work}/ft_{name}_{task}_lr{args.finetune_lr:g}_seed{seed}")
                results.setdefault(name, {}).setdefault(task, []).append(summary["eval_accuracy"])
                clock.log(f"fine-tuned {name} on {task}, seed {seed}")
    write_results(results, pretrained, {**steps, "mlm_pretrain": mlm_steps}, ratio, args, clock, model)


def pretraining_reach(name: str, summary: dict) -> str:
    """How far a pretraining run got, from its final eval."""
    if name == "electra":
        auc = f", AUC {summary['eval_rtd_auc']:.3f}" if "eval_rtd_auc" in summary else ""
        return (f"generator masked-token accuracy {100 * summary['eval_generator_accuracy']:.1f}%, "
                f"replaced-token F1 {100 * summary['eval_rtd_f1']:.1f}%{auc} "
                f"({100 * summary['eval_replaced_share']:.1f}% of tokens replaced)")
    return f"masked-token accuracy {100 * summary['eval_accuracy']:.1f}%, MLM loss {summary['eval_loss']:.2f}"


def write_results(results: dict, pretrained: dict, steps: dict, ratio: dict, args, clock, model: dict = ENCODER):
    """`results`: {model: {task: [accuracy per seed]}}; `pretrained`: {model: its pretraining summary};
    `model`: the encoder's shape."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(args.results, exist_ok=True)
    shape = {**common.MODEL, **model}
    params = common.non_embedding(atm_config.EncoderConfig(**shape))
    rows = [f"| {LABELS[name]} | {steps['pretrain'] if name == 'electra' else steps['mlm_pretrain']} | "
            f"{pretraining_reach(name, pretrained[name])} | "
            + " | ".join(common.cell(results[name][task]) for task in TASKS) + " |" for name in MODELS]
    claims = [(f"ELECTRA beats MLM at equal pretraining wall-clock ({label})",
               common.verdict(results["electra"][task], results["mlm"][task])) for task, (label, _, _) in TASKS.items()]
    table = [
        "# ELECTRA in miniature (arXiv 2003.10555)", "",
        common.produced_by("electra", args, clock, steps,
                           (("steps", args.steps), ("finetune_lr", f"{args.finetune_lr:g}"))),
        f"Encoder (the ELECTRA discriminator and the MLM encoder alike): {shape['num_layers']}×"
        f"{shape['hidden_size']} post-LN (position table started at sin/cos), {params:,} non-embedding params; the generator 0.25× as wide. Text: "
        f"`{TEXT}`, {args.batch}×64-token batches, lr {PRETRAIN_LR:g}, a {shape['vocab_size']}-piece vocabulary trained by the ELECTRA run. Equal pretraining "
        f"wall-clock: an ELECTRA step took {ratio['ratio']:.3f}× an MLM step (atm.bench, interleaved, load average "
        f"{ratio['load_avg_1m']}), so MLM ran {steps['mlm_pretrain']} steps to ELECTRA's {steps['pretrain']}.",
        f"Fine-tuning: {steps['finetune']} steps, batch 32, lr {args.finetune_lr:g}, on SST-2 and MASSIVE en-US intents; "
        f"validation accuracy in %, mean ± standard deviation over {args.seeds} fine-tuning seeds (one pretraining run each).",
        "", "| encoder | pretraining steps | how far pretraining got (final eval) | "
        + " | ".join(f"{label} acc" for label, _, _ in TASKS.values()) + " |",
        "|---|---|---|" + "---|" * len(TASKS), *rows, "",
        "## The paper's claim, in miniature", "",
        *common.claim_bullets(claims), "", "![ELECTRA miniature](electra.png)", ""]
    common.write_table(os.path.join(args.results, "table.md"), table, claims)

    fig, ax = plt.subplots(figsize=(6, 4))
    width = 0.8 / len(MODELS)
    for offset, name in enumerate(MODELS):
        means = [100 * common.mean_spread(results[name][task])[0] for task in TASKS]
        spreads = [100 * common.mean_spread(results[name][task])[1] for task in TASKS]
        ax.bar([i + width * offset for i in range(len(TASKS))], means, width, yerr=spreads, label=LABELS[name])
    ax.set_xticks([i + width * (len(MODELS) - 1) / 2 for i in range(len(TASKS))])
    ax.set_xticklabels([label for label, _, _ in TASKS.values()])
    ax.set_ylabel("validation accuracy (%)")
    ax.legend(fontsize=8)
    ax.set_title("ELECTRA vs MLM at equal pretraining wall-clock")
    fig.tight_layout()
    fig.savefig(os.path.join(args.results, "electra.png"), dpi=110)
    print("\n".join(table), flush=True)


if __name__ == "__main__":
    main()
