"""MUKA in miniature: amalgamating teachers of disjoint label sets into one student, without labels.

    python -m reproduce.muka [--scale=1.0] [--seeds=3] [--blocks=split2,split4,hetero,cross] [--smoke]

Blocks (MASSIVE en-US intents, 60 labels; every model 2 layers × 128, intents only):
  split2 / split4  the 18 scenarios cut into 2 / 4 contiguous groups, one teacher per group
                   (`finetune.label_subset=scenario:...`); rows: an oracle fine-tuned on every label with
                   gold labels, each teacher on its own part, vanilla KD, UHC, MUKA hard, soft, soft + margin
  hetero           split2 with the second teacher 1 layer × 96 on its own 1000-piece vocabulary
  cross            a MASSIVE teacher (all 60 intents) and an ATIS teacher (its intents): one student over
                   both label sets on both texts (no oracle: no single fine-tuning run covers both)
Students read no gold label (atm/objectives/amalgamate.py). Writes results/muka/table.md (with the
verdicts: MUKA (soft + margin) beats vanilla KD by ≥ 1.5 points, beats UHC, and closes most of the gap
(oracle − vanilla KD) to the oracle) and muka.png; results/muka/NOTES.md is the hand-written reading.
"""
from __future__ import annotations

import json
import os

from atm import evaluate
from atm.config import default_config
from atm.data import labelled
from reproduce import common

MODEL = dict(num_layers=2, hidden_size=128, num_heads=4, ffn_size=512, vocab_size=2000, max_positions=64,
             hidden_dropout=0.1, type_vocab_size=1)
SMALL = dict(MODEL, num_layers=1, hidden_size=96, num_heads=4, ffn_size=384, vocab_size=1000)
METHODS = {"vanilla_kd": ("vanilla_kd", "soft", False), "uhc": ("uhc", "soft", False),
           "muka_hard": ("muka", "hard", False), "muka_soft": ("muka", "soft", False),
           "muka_soft_margin": ("muka", "soft", True)}
NAMES = {"oracle": "oracle (all labels, gold)", "teachers": "each teacher on its own part", "vanilla_kd": "vanilla KD",
         "uhc": "UHC", "muka_hard": "MUKA hard", "muka_soft": "MUKA soft", "muka_soft_margin": "MUKA soft + margin"}


def scenario_groups(n: int) -> list[str]:
    """The MASSIVE scenarios (sorted) in n contiguous groups, as label_subset values."""
    c = default_config("finetune")
    c.finetune.task = "massive_en_us"
    names, _ = labelled.label_names_and_kind(c.finetune, None)
    scenarios = sorted({x.split("_")[0] for x in names["intent"]})
    bounds = [round(i * len(scenarios) / n) for i in range(n + 1)]
    return ["scenario:" + ",".join(scenarios[bounds[i]:bounds[i + 1]]) for i in range(n)]


def classifier_config(task, subset, steps, seed, model=MODEL, vocab_size=2000, seq_len=32):
    c = default_config("finetune")
    c.seed = seed
    c.model.update(model)
    c.finetune.update(task=task, label_subset=subset, sequence_heads_only=True, eval_split="validation",
                      unknown_labels="unk" if task == "atis" else "error")
    c.data.update(vocab_size=vocab_size, seq_len=seq_len)
    c.train.update(steps=steps, batch_size=32, log_every=max(1, steps // 5), eval_every=steps, eval_batches=-1)
    c.optimizer.update(learning_rate=2e-3, warmup_steps=max(1, steps // 10))
    c.checkpoint.update(every=steps, keep=1)
    return c


def student_config(teachers, method, steps, seed, mc_passes, seq_len=32, scores_file=""):
    c = default_config("amalgamate")
    c.seed = seed
    c.model.update(MODEL)
    name, target, margin = METHODS[method]
    c.amalgamate.update(teachers=",".join(f"{k}={v}" for k, v in teachers.items()), method=name, target=target,
                        margin=margin, mc_passes=mc_passes, scores="cached", scores_file=scores_file)
    c.finetune.eval_split = "validation"
    c.data.update(vocab_size=2000, seq_len=seq_len)
    c.train.update(steps=steps, batch_size=32, log_every=max(1, steps // 5), eval_every=steps, eval_batches=-1)
    c.optimizer.update(learning_rate=2e-3, warmup_steps=max(1, steps // 10))
    c.checkpoint.update(every=steps, keep=1)
    return c


def test_figures(workdir) -> dict:
    return common.run_figures(workdir, "test_figures.json",
                              lambda run_dir: evaluate.evaluate_run(run_dir, split="test")["rows"][0])


def teacher_choice(config, scores_path: str, student_dir: str) -> dict:
    """How often each way of weighing the teachers favours, on a training row, the teacher that knows the
    row's gold label: the best Monte-Carlo score (MUKA's choice) and the largest share of the softmax over the
    concatenated teacher logits (vanilla KD's target). The gold labels are read here for the analysis only;
    no student reads them."""
    import jax
    import numpy as np

    from atm import sharding
    from atm.objectives import amalgamate

    cached = scores_path.replace(".npz", "_choice.json")
    if os.path.exists(cached):
        with open(cached) as f:
            return json.load(f)
    plans = amalgamate.plan_teachers(config)
    part = {label: j for j, plan in enumerate(plans) for label in plan.labels}
    gold_part = []
    for task, bio_folder in dict.fromkeys(plan.source for plan in plans):  # build_split's row order
        raws, _, kind = labelled.raw_rows(amalgamate.source_config(config, task, bio_folder), "train", None,
                                          False, label_subset=False)
        gold_part += [part.get(raw[labelled.SEQUENCE_LABEL[kind][0]], -1) for raw in raws]
    gold_part = np.asarray(gold_part)
    with np.load(scores_path) as stored:
        by_scores = stored["scores"].argmax(axis=1)
    vocab, train, _, _ = amalgamate.Amalgamate.build_data(config, student_dir)
    objective = amalgamate.Amalgamate(config, vocab, train)
    mesh = sharding.make_mesh(config.mesh)
    frozen = {k: v for teachers in objective.teachers.values() for k, v in teachers.shard(mesh).items()}
    ordered = amalgamate.AmalgamationBatcher(train.split, train.arrays, 256, 0, False)
    sizes = [len(plan.labels) for plan in plans]

    def favoured(frozen, batch):
        """(B,) the teacher with the largest share of the concatenated softmax; (B,) the best score
        1 − H/log|C_j| of one pass with dropout off."""
        logits = objective.teacher_logits(frozen, batch)
        probs = jax.nn.softmax(jax.numpy.concatenate(logits, axis=-1), axis=-1)
        bounds = np.cumsum([0] + sizes)
        mass = jax.numpy.stack([probs[:, a:b].sum(-1) for a, b in zip(bounds[:-1], bounds[1:])], axis=-1)
        entropy = jax.numpy.stack([-(jax.nn.softmax(z) * jax.nn.log_softmax(z)).sum(-1) / np.log(z.shape[-1])
                                   for z in logits], axis=-1)
        return mass.argmax(axis=1), (1 - entropy).argmax(axis=1)

    by_logits, by_entropy = [], []
    with sharding.MeshContext(mesh):
        favoured_fn = jax.jit(favoured)
        for i in range(ordered.num_batches):
            batch = ordered.batch(i)
            real = batch["example_weight"] > 0
            mass, entropy = favoured_fn(frozen, {k: v for k, v in batch.items() if k.startswith("teacher")
                                                 or k in ("positions", "token_types")})
            by_logits.append(np.asarray(mass)[real])
            by_entropy.append(np.asarray(entropy)[real])
    by_logits, by_entropy = np.concatenate(by_logits), np.concatenate(by_entropy)
    if not len(gold_part) == len(by_scores) == len(by_logits):
        raise ValueError(f"{scores_path}: {len(by_scores)} scored rows, {len(gold_part)} training rows")
    known = gold_part >= 0
    out = {name: float((choice[known] == gold_part[known]).mean()) for name, choice in
           (("mc_scores", by_scores), ("one_pass_scores", by_entropy), ("teacher_logits", by_logits))}
    out["rows"] = int(known.sum())
    with open(cached, "w") as f:
        json.dump(out, f)
    return out


def run_block(block, steps, seed, work, mc_passes, clock) -> dict:
    """{row: test accuracy} of one block and seed."""
    root = os.path.join(work, block, f"seed{seed}")
    out = {}
    if block == "cross":
        teachers = {"massive": classifier_config("massive_en_us", "", steps["teacher"], seed),
                    "atis": classifier_config("atis", "", steps["teacher"], seed, vocab_size=1000, seq_len=48)}
        seq_len = 48
    else:
        groups = scenario_groups(4 if block == "split4" else 2)
        teachers = {}
        for i, group in enumerate(groups):
            small = block == "hetero" and i == 1
            teachers[f"t{i + 1}"] = classifier_config("massive_en_us", group, steps["teacher"], seed,
                                                      SMALL if small else MODEL, 1000 if small else 2000)
        seq_len = 32
        oracle = os.path.join(root, "oracle")
        common.run(classifier_config("massive_en_us", "", steps["teacher"], seed), oracle)
        out["oracle"] = test_figures(oracle)["accuracy"]
    dirs = {}
    for name, config in teachers.items():
        dirs[name] = os.path.join(root, f"teacher_{name}")
        common.run(config, dirs[name])
    out["teachers"] = [test_figures(d)["accuracy"] for d in dirs.values()]
    clock.log(f"{block} seed {seed}: teachers {out['teachers']}")
    scores_path = os.path.join(root, "mc_scores.npz")
    for method in METHODS:
        workdir = os.path.join(root, method)
        # The three MUKA rows share one scoring pass: same teachers, seed and stream (score.signature checks it).
        config = student_config(dirs, method, steps["student"], seed, mc_passes, seq_len, scores_path)
        common.run(config, workdir)
        figures = test_figures(workdir)
        out[method] = figures["accuracy"]
        out[f"{method}_parts"] = [figures.get(f"accuracy_{name}") for name in dirs]
        clock.log(f"{block} seed {seed} {method}: {figures['accuracy']:.3f}")
    out["teacher_choice"] = teacher_choice(config, scores_path, os.path.join(root, "muka_soft"))
    return out


def main(argv=None):
    parser = common.parser(__doc__, seeds=3, workdir="workdirs/reproduce_muka", results="results/muka")
    parser.add_argument("--blocks", default="split2,split4,hetero,cross")
    parser.add_argument("--mc_passes", type=int, default=16)
    args = parser.parse_args(argv)
    if args.smoke:
        args.scale, args.seeds, args.mc_passes = 0.005, 1, 2
    steps = common.schedule(dict(teacher=1500, student=1500), args)
    work = os.path.abspath(args.workdir)
    clock = common.Clock(work)
    blocks = [b for b in args.blocks.split(",") if b]
    results = {b: [run_block(b, steps, seed, work, args.mc_passes, clock) for seed in range(args.seeds)]
               for b in blocks}
    write(results, args, clock, steps)


def write(results, args, clock, steps):
    lines = [common.produced_by("muka", args, clock, steps, (("blocks", args.blocks),)), "",
             "Test intent accuracy (%), mean ± std over seeds; students read no gold label.", ""]
    verdicts = ["## The paper's claims, in miniature", ""]
    claims = []
    for block, seeds in results.items():
        lines += [f"## {block}", "", "| row | accuracy | per teacher part |", "|---|---|---|"]
        for row in ["oracle", "teachers", *METHODS]:
            if row not in seeds[0]:
                continue
            if row == "teachers":
                parts = [[s["teachers"][i] for s in seeds] for i in range(len(seeds[0]["teachers"]))]
                lines.append(f"| {NAMES[row]} | | {' / '.join(common.cell(p) for p in parts)} |")
                continue
            part_cells = ""
            if f"{row}_parts" in seeds[0]:
                parts = [[s[f"{row}_parts"][i] or 0.0 for s in seeds] for i in range(len(seeds[0][f"{row}_parts"]))]
                part_cells = " / ".join(common.cell(p) for p in parts)
            lines.append(f"| {NAMES[row]} | {common.cell([s[row] for s in seeds])} | {part_cells} |")
        if "teacher_choice" in seeds[0]:
            choice = {k: common.cell([s["teacher_choice"][k] for s in seeds])
                      for k in ("mc_scores", "one_pass_scores", "teacher_logits")}
            lines += ["", "Training rows on which the teacher that knows the gold label is favoured (gold read for "
                      f"this figure only): by the Monte-Carlo scores (MUKA) {choice['mc_scores']}%, by the same score "
                      f"from one pass with dropout off {choice['one_pass_scores']}%, by the share of the softmax over "
                      f"the concatenated teacher logits (vanilla KD) {choice['teacher_logits']}%"]
        muka, vanilla, uhc = ([s[k] for s in seeds] for k in ("muka_soft_margin", "vanilla_kd", "uhc"))
        gap = sum(m - v for m, v in zip(muka, vanilla)) / len(seeds) * 100
        block_claims = [(f"{block}: MUKA (soft + margin) beats vanilla KD by ≥ 1.5 points",
                         f"{common.held(gap >= 1.5)} ({gap:+.1f} points)"),
                        (f"{block}: MUKA (soft + margin) beats UHC", common.verdict(muka, uhc))]
        if "oracle" in seeds[0]:
            oracle = [s["oracle"] for s in seeds]
            closed = [(m - v) / max(o - v, 1e-9) for m, v, o in zip(muka, vanilla, oracle)]
            share = sum(closed) / len(closed)
            block_claims.append((f"{block}: MUKA closes most of the gap to the oracle",
                                 f"{common.held(share > 0.5)} ({100 * share:.0f}% of oracle − vanilla KD)"))
        verdicts += common.claim_bullets(block_claims)
        claims += block_claims
        lines.append("")
    lines += [*verdicts, "", "![MUKA miniature](muka.png)", ""]
    common.write_table(os.path.join(args.results, "table.md"), lines, claims)
    plot(results, os.path.join(args.results, "muka.png"))
    print("\n".join(lines), flush=True)


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = ["oracle", *METHODS]
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(rows)
    for i, row in enumerate(rows):
        values = [100 * sum(s[row] for s in seeds) / len(seeds) if row in seeds[0] else 0
                  for seeds in results.values()]
        ax.bar([b + i * width for b in range(len(results))], values, width, label=NAMES[row])
    ax.set_xticks([b + 0.4 - width / 2 for b in range(len(results))], list(results))
    ax.set_ylabel("test intent accuracy (%)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
