"""The Privileged Students (arXiv 2406.16524) in miniature: student initialisation vs task-level distillation.

    python -m reproduce.privileged [--scale=1.0] [--seeds=3] [--pretrained=RUN_DIR] [--smoke]

Each seed runs the whole pipeline with its own seed (pretraining, the teacher's fine-tuning, the students), so
the spread is that of the method, not only of the students' fine-tuning:
1. A pretrained teacher: `--pretrained`, a run directory in which `{seed}` stands for the seed (e.g.
   reproduce.atm's `workdirs/reproduce_atm/seed{seed}/teacher_s2`) or one directory for every seed (an imported
   Hugging Face checkpoint: reproduce.minilm runs this script on all-MiniLM-L6-v2); without it, an MLM run
   per seed on MASSIVE utterances + 30% stage-1 text (4 layers × 128, the stage-1 `:mini` encoder settings:
   post-LN, position table started at sin/cos, half the positions masked). The teacher keeps the
   pretrained run's shape and vocabulary.
2. The teacher fine-tuned on MASSIVE en-US (intent + slots), from the pretrained weights.
3. Students with half the layers (2 × 128 here, the teacher's width and vocabulary), fine-tuned on MASSIVE
   en-US with each initialisation — random / copy from the pretrained teacher / copy from the fine-tuned
   teacher (every-other layer; embeddings, layers and, from the fine-tuned teacher, the task heads) — each
   without distillation and with task-level KD (α_KD = 0.5, τ²·KL with τ = 2, or MSE on logits).
4. The low-resource variant: the same with 10% of the training rows (no KD and KL).
Evaluated on the en-US test split and zero-shot on de-DE test. Layout: <workdir>/seed<s>/{teacher_pretrained,
teacher_ft, student_<init>_<kd>_<pct>pct}. Writes results/privileged/table.md and privileged.png. The paper's
claim checked: copying from the fine-tuned teacher matters more than the distillation itself.
"""
from __future__ import annotations

import os

from reproduce import common

TEACHER = {**common.MODEL, **common.TEACHER, **common.MINI_ENCODER}
INITS = {"random": "random init", "pretrained": "copy ← pretrained teacher", "finetuned": "copy ← fine-tuned teacher"}
KDS = {"none": "no KD", "kl": "KD (KL)", "mse": "KD (MSE)"}


def finetune_config(teacher: dict, layers, steps, seed, vocab, fraction=1.0, learning_rate=2e-3):
    """MASSIVE en-US fine-tuning of the `teacher` shape with `layers` layers on `fraction` of the train rows."""
    return common.finetune_config({**teacher, "num_layers": layers}, vocab, steps, seed, train_fraction=fraction,
                                  learning_rate=learning_rate)


def pretrained_shape_and_vocab(run_dir: str) -> tuple[dict, str]:
    """The model section and the vocabulary (an atm run's vocab.model, an imported checkpoint's tokenizer/) of
    a pretrained run."""
    from atm.convert import workdir

    saved = workdir.read_config(run_dir)
    vocab = workdir.vocabulary_path(run_dir, saved)
    if not vocab:
        raise FileNotFoundError(f"--pretrained={run_dir}: neither vocab.model nor tokenizer/ in it")
    return saved["model"], vocab


def main(argv=None):
    parser = common.parser(__doc__, seeds=3, workdir="workdirs/reproduce_privileged", results="results/privileged")
    parser.add_argument("--pretrained", default="", help="a pretrained teacher run, `{seed}` standing for the seed "
                        "(else one is trained per seed)")
    parser.add_argument("--variants", default="", help="a subset, e.g. 'random:none:100,finetuned:kl:10' "
                        "(init:kd:data percent); default: the whole grid")
    parser.add_argument("--teacher_lr", type=float, default=1e-3, help="the teacher's fine-tuning learning rate")
    parser.add_argument("--student_lr", type=float, default=1e-3, help="every student's fine-tuning learning rate")
    args = parser.parse_args(argv)
    if args.smoke:
        args.scale, args.seeds = 0.005, 1
    steps = common.schedule(dict(pretrain=1500, teacher_ft=800, student_ft=800, low_resource_ft=400), args)
    work = os.path.abspath(args.workdir)
    clock = common.Clock(work)
    print(f"Privileged Students miniature: steps {steps}, seeds {args.seeds}, workdir {work}", flush=True)
    variants = [(init, kd, 1.0) for init in INITS for kd in KDS] + [(init, kd, 0.1) for init in INITS
                                                                     for kd in ("none", "kl")]
    if args.variants:
        variants = [(i, k, int(p) / 100) for i, k, p in (v.split(":") for v in args.variants.split(","))]
    jobs, teacher_dirs, student_dirs = plan(work, variants, steps, args)
    common.run_jobs(jobs, log=clock.log)
    seeds = range(args.seeds)
    teacher_figures = [common.evaluate_locales(teacher_dirs[s], ("en-US", "de-DE")) for s in seeds]
    results = {v: [common.evaluate_locales(student_dirs[v, s], ("en-US", "de-DE")) for s in seeds] for v in variants}
    from atm.convert import workdir
    shape = workdir.read_config(teacher_dirs[0])["model"]
    write_results(results, teacher_figures, steps, args, clock, shape)


def plan(work: str, variants: list[tuple], steps: dict, args) -> tuple[list, dict, dict]:
    """(jobs, {seed: the fine-tuned teacher's dir}, {((init, kd, fraction), seed): a student's dir}): every seed's
    pretraining (unless --pretrained), then its teacher's fine-tuning, then the students that need that teacher
    (copied from it or distilled from it); those that need no fine-tuned teacher come last, to fill a core that
    would wait for one. The same command started once per core shares the jobs (common.run_jobs)."""
    def scored(run_dir):
        return common.evaluate_locales(run_dir, ("en-US", "de-DE"))

    first, teachers, students, fillers = [], [], [], []
    teacher_dirs, student_dirs = {}, {}
    for seed in range(args.seeds):
        root = f"{work}/seed{seed}"
        if args.pretrained:
            pretrained, pretrained_needs = os.path.abspath(args.pretrained.format(seed=seed)), ()
        else:
            pretrained = f"{root}/teacher_pretrained"
            pretrained_needs = (pretrained,)
            first.append(common.Job(pretrained, lambda seed=seed: pretrain_config(seed, steps["pretrain"], args.smoke)))

        def teacher_config(seed=seed, pretrained=pretrained):
            shape, vocab = pretrained_shape_and_vocab(pretrained)
            c = finetune_config(shape, shape["num_layers"], steps["teacher_ft"], seed, vocab,
                                learning_rate=args.teacher_lr)
            c.init_from = pretrained
            return c

        teacher_dirs[seed] = f"{root}/teacher_ft"
        teachers.append(common.Job(teacher_dirs[seed], teacher_config, pretrained_needs, then=scored))
        for init, kd, fraction in variants:
            def student_config(seed=seed, pretrained=pretrained, init=init, kd=kd, fraction=fraction):
                shape, vocab = pretrained_shape_and_vocab(pretrained)
                c = finetune_config(shape, shape["num_layers"] // 2,
                                    steps["student_ft" if fraction == 1.0 else "low_resource_ft"], seed, vocab,
                                    fraction, args.student_lr)
                if init != "random":
                    c.student_init.update(mode=init, teacher=pretrained if init == "pretrained" else teacher_dirs[seed],
                                          layer_map="every_other")
                if kd != "none":
                    c.finetune.teacher = teacher_dirs[seed]
                    c.kd.update(alpha=0.5, temperature=2.0, loss=kd)
                return c

            student_dirs[(init, kd, fraction), seed] = f"{root}/student_{init}_{kd}_{int(fraction * 100)}pct"
            uses_teacher = init == "finetuned" or kd != "none"
            # Every student reads the pretrained run's shape and vocabulary; some also the fine-tuned teacher.
            needs = pretrained_needs + ((teacher_dirs[seed],) if uses_teacher else ())
            job = common.Job(student_dirs[(init, kd, fraction), seed], student_config, needs, then=scored)
            (students if uses_teacher else fillers).append(job)
    return first + teachers + students + fillers, teacher_dirs, student_dirs


def pretrain_config(seed: int, steps: int, smoke: bool):
    """MLM on MASSIVE utterances + 30% stage-1 text with the stage-1 `:mini` recipe's encoder and masking."""
    c = common.pretrain_config("mlm", TEACHER, "massive_text", steps, 32, 32, replay_tasks="mlm_text_spoken_written",
                               replay_share=0.3, num_examples=400 if smoke else 0)
    c.seed = seed
    c.mlm.mask_rate = 0.5
    return c


def write_results(results, teacher_figures, steps, args, clock, shape: dict = TEACHER):
    """`teacher_figures`: the fine-tuned teacher's figures per seed; `shape`: the teacher's model section (students
    have half its layers)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(args.results, exist_ok=True)

    def values(key, locale, metric):
        return [r[locale][metric] for r in results[key]]

    def mean(key, locale="en-US", metric="accuracy"):
        return common.mean_spread(values(key, locale, metric))[0]
    layers, width = shape["num_layers"], shape["hidden_size"]
    norm = "pre-LN" if shape["pre_layer_norm"] else "post-LN"
    copied = ", ".join(str(i) for i in range(0, layers, 2))

    def teacher_cell(locale, metric):
        return common.cell([f[locale][metric] for f in teacher_figures])
    rows = [f"| teacher ({layers} layers, fine-tuned) | 100% | — | {teacher_cell('en-US', 'accuracy')} | "
            f"{teacher_cell('en-US', 'slot_f1')} | {teacher_cell('de-DE', 'accuracy')} |"]
    for key in results:
        init, kd, fraction = key
        rows.append(f"| {INITS[init]} | {int(fraction * 100)}% | {KDS[kd]} | {common.cell(values(key, 'en-US', 'accuracy'))}"
                    f" | {common.cell(values(key, 'en-US', 'slot_f1'))} | {common.cell(values(key, 'de-DE', 'accuracy'))} |")
    # The claim: the gain of copying from the fine-tuned teacher (over random init, no KD) is larger than the
    # gain of distillation (over no KD, random init) — checked per data size and KD kind.
    held = common.held
    claims = []
    for fraction in (1.0, 0.1):
        if not all((init, "none", fraction) in results for init in ("random", "finetuned")):
            continue
        init_gain = mean(("finetuned", "none", fraction)) - mean(("random", "none", fraction))
        for kd in [k for k in ("kl", "mse") if ("random", k, fraction) in results]:
            kd_gain = mean(("random", kd, fraction)) - mean(("random", "none", fraction))
            claims.append((f"{int(fraction * 100)}% data: copy ← fine-tuned teacher gains {100 * init_gain:+.1f} "
                           f"intent-accuracy points, {KDS[kd]} gains {100 * kd_gain:+.1f}", held(init_gain > kd_gain)))
        gain_de = mean(("finetuned", "none", fraction), "de-DE") - mean(("random", "none", fraction), "de-DE")
        claims.append((f"{int(fraction * 100)}% data: copy ← fine-tuned teacher keeps more zero-shot de-DE "
                       f"ability than random init ({100 * gain_de:+.1f} points)", held(gain_de > 0)))
    table = [
        "# The Privileged Students in miniature (arXiv 2406.16524)", "",
        common.produced_by("privileged", args, clock, steps, (("pretrained", args.pretrained), ("steps", args.steps))),
        f"Teacher: {layers} layers × {width} ({norm}), fine-tuned on MASSIVE en-US intent + slots (lr {args.teacher_lr:g}); "
        f"students: {layers // 2} layers × {width}, the teacher's vocabulary, fine-tuned at lr {args.student_lr:g}; copies "
        f"take every other teacher layer ({copied}). Task-level KD: 0.5·CE + 0.5·KD per "
        "head (intent and slots), τ²·KL with τ = 2 or MSE on logits. Low resource: a fixed 10% of the train rows.",
        f"Figures in % on MASSIVE test; mean ± standard deviation over {args.seeds} seed(s) where more than one, each "
        "seed its own teacher (pretraining, where this script pretrains, and fine-tuning) and students.",
        f"Read with care: a student copied from the fine-tuned teacher continues from a model that already had "
        f"{steps['teacher_ft']} fine-tuning steps, so it has seen {steps['teacher_ft']} + {steps['student_ft']} steps "
        f"of the task while the others saw {steps['student_ft']}; at this short schedule that head start is much of "
        "its lead (it can even pass the teacher, which stopped earlier).", "",
        "| student init | train data | distillation | en-US intent acc | en-US slot F1 | de-DE intent acc (zero-shot) |",
        "|---|---|---|---|---|---|", *rows, "",
        "## The paper's claim, in miniature", "",
        *common.claim_bullets(claims), "",
        "![Privileged Students miniature](privileged.png)", ""]
    common.write_table(os.path.join(args.results, "table.md"), table, claims)

    fractions = sorted({f for _, _, f in results}, reverse=True)
    fig, axes = plt.subplots(1, len(fractions), figsize=(6 * len(fractions), 4), squeeze=False)
    for ax, fraction in zip(axes[0], fractions):
        kds = [kd for kd in KDS if any((init, kd, fraction) in results for init in INITS)]
        for offset, kd in enumerate(kds):
            means = [100 * mean((init, kd, fraction)) if (init, kd, fraction) in results else 0.0 for init in INITS]
            spreads = [100 * common.mean_spread(values((init, kd, fraction), "en-US", "accuracy"))[1]
                       if (init, kd, fraction) in results else 0.0 for init in INITS]
            ax.bar([i + 0.27 * offset for i in range(len(INITS))], means, 0.27, yerr=spreads, label=KDS[kd])
        teacher_mean = common.mean_spread([f["en-US"]["accuracy"] for f in teacher_figures])[0]
        ax.axhline(100 * teacher_mean, color="k", ls="--", lw=1, label="teacher")
        ax.set_xticks([i + 0.27 for i in range(len(INITS))])
        ax.set_xticklabels([v.replace(" ← ", "\n← ") for v in INITS.values()], fontsize=8)
        ax.set_title(f"en-US intent accuracy (%), {int(fraction * 100)}% of the training data")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(args.results, "privileged.png"), dpi=110)
    print("\n".join(table), flush=True)


if __name__ == "__main__":
    main()
