"""ATM (arXiv 2206.07808) in miniature: two-stage teachers, distilled students, MASSIVE fine-tuning.

    python -m reproduce.atm [--scale=1.0] [--seeds=3] [--workdir=workdirs/reproduce_atm] [--smoke]

The default (scale 1.0, 3 seeds) takes about half an hour on 2 quiet CPU cores (results/atm/table.md
states the measured time): stage 1 720 steps, stage 2 360, students 600, fine-tuning 600 per seed.

1. teacher_s1  MLM on the stage-1 public corpus (WikiANN text + TyDi QA contexts + XNLI premises,
               70% spoken form; configs/atm_stage1_public.py), its own 8000-piece vocabulary.
2. teacher_s2  stage 2: `init_from` teacher_s1 (params only, fresh optimizer and schedule), MLM on
               MASSIVE utterances (configs/atm_stage2_indomain.py).
3. students    about a quarter of the teacher's non-embedding size, distilled (τ²·KL, α = 0.5, τ = 2)
               from teacher_s1 and from teacher_s2, plus a same-size student trained with MLM only, all
               on the same text (MASSIVE utterances with 30% stage-1 replay) for the same steps.
4. Every model fine-tuned on MASSIVE en-US (intent + slots), `--seeds` seeds each, evaluated on the
   en-US test split and zero-shot on de-DE and sw-KE test.
Writes results/atm/table.md and results/atm/atm.png (mean ± standard deviation over seeds).
A finished step is not redone when the script is run again with the same --workdir.
The paper's claims checked: stage 2 lowers intent and slot errors; the student from the stage-2
teacher beats the student from the stage-1 teacher and the MLM-only student.
"""
from __future__ import annotations

import os

from atm import config as atm_config
from reproduce import common

TEACHER, STUDENT = common.TEACHER, common.STUDENT
MODELS = ["teacher_s1", "teacher_s2", "student_s1", "student_s2", "student_mlm"]
LABELS = {"teacher_s1": "teacher, stage 1", "teacher_s2": "teacher, stage 2",
          "student_s1": "student ← stage-1 teacher", "student_s2": "student ← stage-2 teacher",
          "student_mlm": "student, MLM only"}
PLOT_LABELS = {"teacher_s1": "teacher\nstage 1", "teacher_s2": "teacher\nstage 2", "student_s1": "student\n← T stage 1",
               "student_s2": "student\n← T stage 2", "student_mlm": "student\nMLM only"}


def finetune_config(teacher: bool, vocab, steps, seed):
    """MASSIVE en-US fine-tuning of a teacher (pre-LN) or a student (post-LN, as distilled)."""
    model = {**common.MODEL, **(TEACHER if teacher else STUDENT), "pre_layer_norm": teacher}
    return common.finetune_config(model, vocab, steps, seed)


def main(argv=None):
    parser = common.parser(__doc__, seeds=3, workdir="workdirs/reproduce_atm", results="results/atm")
    parser.add_argument("--batch", type=int, default=32, help="pretraining and distillation batch")
    args = parser.parse_args(argv)
    if args.smoke:
        args.scale, args.seeds, args.batch = 0.005, min(args.seeds, 2), 8
    steps = common.schedule(dict(stage1=720, stage2=360, distill=600, finetune=600), args)
    work = os.path.abspath(args.workdir)
    clock = common.Clock(work)
    os.makedirs(work, exist_ok=True)
    print(f"ATM miniature: steps {steps}, seeds {args.seeds}, workdir {work}", flush=True)

    # 1-2: the teachers
    stage1 = common.pretrain_config("mlm", TEACHER, "mlm_text:0.8,tydiqa_goldp:0.1,xnli:0.1", steps["stage1"], 64,
                                    args.batch, spoken_share=0.7, num_examples=400 if args.smoke else 60000)
    common.run(stage1, f"{work}/teacher_s1")
    vocab = f"{work}/teacher_s1/vocab.model"
    clock.log("teacher_s1 (stage 1) done")
    stage2 = common.pretrain_config("mlm", TEACHER, "massive_text", steps["stage2"], 32, args.batch, vocab=vocab,
                                    num_examples=400 if args.smoke else 0)
    stage2.init_from = f"{work}/teacher_s1"
    stage2.optimizer.learning_rate = 5e-4
    common.run(stage2, f"{work}/teacher_s2")
    clock.log("teacher_s2 (stage 2) done")

    # 3: the students, on the same text: in-domain utterances with 30% stage-1 replay
    distill_text = dict(vocab=vocab, num_examples=400 if args.smoke else 40000,
                        replay_tasks="mlm_text_spoken_written", replay_share=0.3)
    for name, teacher in (("student_s1", "teacher_s1"), ("student_s2", "teacher_s2"), ("student_mlm", None)):
        c = common.pretrain_config("distill" if teacher else "mlm", STUDENT, "massive_text", steps["distill"], 32,
                                   args.batch, **distill_text)
        c.model.pre_layer_norm = False
        if teacher:
            c.distill.teacher = f"{work}/{teacher}"
            c.kd.update(alpha=0.5, temperature=2.0, loss="kl")
        common.run(c, f"{work}/{name}")
        clock.log(f"{name} done")

    # 4: fine-tune every model on MASSIVE en-US, several seeds; evaluate en-US + zero-shot
    results = {}
    for name in MODELS:
        for seed in range(args.seeds):
            c = finetune_config(name.startswith("teacher"), vocab, steps["finetune"], seed)
            c.init_from = f"{work}/{name}"
            run_dir = f"{work}/ft_{name}_seed{seed}"
            common.run(c, run_dir)
            results.setdefault(name, []).append(common.evaluate_locales(run_dir))
            clock.log(f"fine-tuned {name} seed {seed}")
    write_results(results, steps, args, clock)


def write_results(results, steps, args, clock):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(args.results, exist_ok=True)
    teacher_params = common.non_embedding(atm_config.EncoderConfig(**TEACHER))
    student_params = common.non_embedding(atm_config.EncoderConfig(**STUDENT))

    def values(name, locale, key):
        return [r[locale][key] for r in results[name]]
    rows = []
    for name in MODELS:
        rows.append("| " + " | ".join([LABELS[name], cell_of(values(name, "en-US", "accuracy")),
                                       cell_of(values(name, "en-US", "slot_f1")), cell_of(values(name, "en-US", "semer")),
                                       cell_of(values(name, "de-DE", "accuracy")), cell_of(values(name, "de-DE", "slot_f1")),
                                       cell_of(values(name, "sw-KE", "accuracy")), cell_of(values(name, "sw-KE", "slot_f1"))])
                    + " |")

    claims = [
        ("stage 2 lowers the intent error (en-US intent accuracy)", "teacher_s2", "teacher_s1", "accuracy"),
        ("stage 2 lowers the slot error (en-US slot F1)", "teacher_s2", "teacher_s1", "slot_f1"),
        ("student ← stage-2 teacher beats student ← stage-1 teacher (intent)", "student_s2", "student_s1", "accuracy"),
        ("student ← stage-2 teacher beats student ← stage-1 teacher (slots)", "student_s2", "student_s1", "slot_f1"),
        ("student ← stage-2 teacher beats the MLM-only student (intent)", "student_s2", "student_mlm", "accuracy"),
        ("student ← stage-2 teacher beats the MLM-only student (slots)", "student_s2", "student_mlm", "slot_f1"),
    ]
    verdicts = [(claim, common.verdict(values(better, "en-US", key), values(worse, "en-US", key)))
                for claim, better, worse, key in claims]
    table = [
        "# ATM in miniature (arXiv 2206.07808)", "",
        common.produced_by("atm", args, clock, steps, (("steps", args.steps),)),
        f"Teacher: {TEACHER['num_layers']}×{TEACHER['hidden_size']} pre-LN, {teacher_params:,} non-embedding params; "
        f"students: {STUDENT['num_layers']}×{STUDENT['hidden_size']}, {student_params:,} "
        f"({student_params / teacher_params:.2f}× the teacher). Vocabulary: 8000 SentencePiece pieces trained on "
        "the stage-1 corpus. Students: τ²·KL (α = 0.5, τ = 2) on MASSIVE utterances + 30% stage-1 replay; the "
        "MLM-only student sees the same text and steps.",
        f"Fine-tuning: MASSIVE en-US train, {steps['finetune']} steps, batch 32; figures in % on the test splits, "
        f"mean ± standard deviation over {args.seeds} fine-tuning seeds (pretraining and distillation: one run each).",
        "", "| model | en-US intent acc | en-US slot F1 | en-US SemER ↓ | de-DE intent acc | de-DE slot F1 | "
        "sw-KE intent acc | sw-KE slot F1 |", "|---|---|---|---|---|---|---|---|", *rows, "",
        "## The paper's claims, in miniature", "", *common.claim_bullets(verdicts), "",
        "![ATM miniature](atm.png)", ""]
    common.write_table(os.path.join(args.results, "table.md"), table, verdicts)

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, (key, title) in zip(axes, [("accuracy", "intent accuracy (%)"), ("slot_f1", "slot F1 (%)"),
                                       ("semer", "SemER (%, lower is better)")]):
        locales = ["en-US", "de-DE", "sw-KE"] if key != "semer" else ["en-US"]
        width = 0.8 / len(locales)
        for offset, locale in enumerate(locales):
            means = [100 * common.mean_spread(values(n, locale, key))[0] for n in MODELS]
            spreads = [100 * common.mean_spread(values(n, locale, key))[1] for n in MODELS]
            ax.bar([i + width * offset for i in range(len(MODELS))], means, width, yerr=spreads, label=locale)
        ax.set_xticks([i + width * (len(locales) - 1) / 2 for i in range(len(MODELS))])
        ax.set_xticklabels([PLOT_LABELS[n] for n in MODELS], fontsize=8)
        ax.set_title(title)
        ax.legend(fontsize=7)
    fig.suptitle("ATM in miniature: MASSIVE test (fine-tuned on en-US)")
    fig.tight_layout()
    fig.savefig(os.path.join(args.results, "atm.png"), dpi=110)
    print("\n".join(table), flush=True)


def cell_of(values):
    return common.cell(values)


if __name__ == "__main__":
    main()
