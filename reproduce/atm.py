"""ATM (arXiv 2206.07808) in miniature: two-stage teachers, distilled students, MASSIVE fine-tuning.

    python -m reproduce.atm [--scale=1.0] [--seeds=3] [--workdir=workdirs/reproduce_atm] [--smoke]

Each of the `--seeds` seeds (default 3) runs the whole pipeline with its own seed: pretraining, distillation
and fine-tuning, so the spread in the table is that of the method, not only of fine-tuning. Steps per seed
at scale 1.0: stage 1 1000 (32×128 tokens), stage 2 360, students 600 each, fine-tuning 1000 per row.
The same command started once per core (`python -m reproduce.atm & python -m reproduce.atm`) shares the runs
(common.run_jobs: each process takes the next run the other does not hold); both write the same table at the end.

1. teacher_s1  MLM with configs/atm_stage1_public.py:mini, the CPU-sized stage-1 recipe (issue 14): the
               public corpus (WikiANN text + TyDi QA contexts + XNLI premises, 70% spoken form), half the
               positions masked (whole words), lr 3e-3, post-LN, position table started at sin/cos; the
               8000-piece vocabulary every run reads is trained on that corpus first (<workdir>/vocab).
2. teacher_s2  stage 2: `init_from` teacher_s1 (params only, fresh optimizer and schedule), MLM on
               MASSIVE utterances (configs/atm_stage2_indomain.py).
3. students    about a quarter of the teacher's non-embedding size, distilled (τ²·KL, α = 0.5, τ = 2)
               from teacher_s1 and from teacher_s2, plus a same-size student trained with MLM only, all
               on the same text (MASSIVE utterances with 30% stage-1 replay) for the same steps.
4. Every model fine-tuned on MASSIVE en-US (intent + slots), and the teacher's and the student's encoders
   from scratch with the same fine-tuning budget; evaluated on the en-US test split and zero-shot on de-DE
   and sw-KE test.
Writes results/atm/table.md, claims.json and atm.png (mean ± standard deviation over seeds). Layout:
<workdir>/seed<s>/{teacher_s1, teacher_s2, student_*, ft_<model>}; a finished run is not redone when the
script is run again with the same --workdir.
The paper's claims checked: stage 2 lowers intent and slot errors; the student from the stage-2
teacher beats the student from the stage-1 teacher and the MLM-only student; and, so that those mean
something, pretraining beats the same encoder from scratch (en-US and de-DE zero-shot) and so does distillation.
"""
from __future__ import annotations

import os

from atm import config as atm_config
from reproduce import common

TEACHER, STUDENT = common.TEACHER, common.STUDENT
MODELS = ["teacher_s1", "teacher_s2", "teacher_scratch", "student_s1", "student_s2", "student_mlm", "student_scratch"]
TEACHERS = ("teacher_s1", "teacher_s2", "teacher_scratch")  # the teacher's shape; the rest the student's
LABELS = {"teacher_s1": "teacher, stage 1", "teacher_s2": "teacher, stage 2",
          "teacher_scratch": "teacher's encoder from scratch (no pretraining)",
          "student_s1": "student ← stage-1 teacher", "student_s2": "student ← stage-2 teacher",
          "student_mlm": "student, MLM only", "student_scratch": "student's encoder from scratch"}
PLOT_LABELS = {"teacher_s1": "teacher\nstage 1", "teacher_s2": "teacher\nstage 2", "teacher_scratch": "teacher\nscratch",
               "student_s1": "student\n← T stage 1", "student_s2": "student\n← T stage 2",
               "student_mlm": "student\nMLM only", "student_scratch": "student\nscratch"}


FINETUNE_LR = 1e-3  # every row; a gentler rate for the pretrained rows costs them 5-14 points (NOTES §0b)


def model_of(teacher: bool) -> dict:
    return {**common.MODEL, **(TEACHER if teacher else STUDENT), **common.MINI_ENCODER}


def finetune_config(teacher: bool, vocab, steps, seed, init_from: str = ""):
    """MASSIVE en-US fine-tuning (intent + slots) of the teacher's or the student's shape (`init_from` "": from
    scratch)."""
    c = common.finetune_config(model_of(teacher), vocab, steps, seed, learning_rate=FINETUNE_LR)
    c.init_from = init_from
    return c


def main(argv=None):
    parser = common.parser(__doc__, seeds=3, workdir="workdirs/reproduce_atm", results="results/atm")
    parser.add_argument("--batch", type=int, default=32, help="pretraining and distillation batch")
    args = parser.parse_args(argv)
    if args.smoke:
        args.scale, args.seeds, args.batch = 0.005, min(args.seeds, 2), 8
    steps = common.schedule(dict(stage1=1000, stage2=360, distill=600, finetune=1000), args)
    work = os.path.abspath(args.workdir)
    clock = common.Clock(work)
    # One vocabulary for every run, trained before any seed starts so that seeds can run in parallel.
    vocab_folder = os.path.join(work, "vocab")
    vocab = (common.stage1_vocab(vocab_folder, "smoke", data={"num_examples": 400}) if args.smoke
             else common.stage1_vocab(vocab_folder))
    print(f"ATM miniature: steps {steps}, seeds {args.seeds}, workdir {work}", flush=True)
    jobs, finetuned = plan(work, vocab, steps, args)
    common.run_jobs(jobs, log=clock.log)
    results = {name: [common.evaluate_locales(finetuned[name, seed]) for seed in range(args.seeds)]
               for name in MODELS}
    write_results(results, steps, args, clock)


def plan(work: str, vocab: str, steps: dict, args) -> tuple[list, dict]:
    """(jobs, {(model, seed): its fine-tuning run dir}): every seed's stage 1 first (the longest runs, which the
    rest waits for), then stage by stage across seeds, the runs that need nothing (the MLM-only student, the
    from-scratch rows) last, where they fill a core that would otherwise wait. The same command started once per
    core shares the jobs (common.run_jobs)."""
    stages: list[list] = [[] for _ in range(5)]
    finetuned = {}
    for seed in range(args.seeds):
        root = f"{work}/seed{seed}"
        pretrained = pretraining_jobs(root, seed, vocab, steps, args)
        stages[0].append(pretrained["teacher_s1"])
        stages[1].append(pretrained["teacher_s2"])
        stages[2] += [pretrained["student_s1"], pretrained["student_s2"]]
        stages[4].append(pretrained["student_mlm"])
        for name in MODELS:
            # 4: fine-tune every model (and the two shapes from scratch) on MASSIVE en-US; en-US + zero-shot
            init = pretrained[name].workdir if name in pretrained else ""
            finetuned[name, seed] = f"{root}/ft_{name}"
            job = common.Job(finetuned[name, seed],
                             lambda teacher=name in TEACHERS, init=init, seed=seed: finetune_config(
                                 teacher, vocab, steps["finetune"], seed, init_from=init),
                             needs=(init,) if init else (), then=common.evaluate_locales)
            stages[4 if name in ("student_mlm", "teacher_scratch", "student_scratch") else 3].append(job)
    return [job for stage in stages for job in stage], finetuned


def pretraining_jobs(root: str, seed: int, vocab: str, steps: dict, args) -> dict:
    """Steps 1-3 with `seed`: {model: its job} for the pretrained and distilled models."""
    def pretrain(objective, model, tasks, phase, seq_len, **data):
        c = common.pretrain_config(objective, model, tasks, steps[phase], seq_len, args.batch, vocab=vocab, **data)
        c.seed = seed
        return c

    def stage1():  # 1: configs/atm_stage1_public.py:mini (its corpus, 70% spoken form, mask rate 0.5, lr 3e-3)
        c = common.stage1_mini_config()
        c.seed = seed
        c.model.update(model_of(teacher=True))
        c.data.update(vocab=vocab, num_examples=400 if args.smoke else 0)
        every = steps["stage1"]
        c.train.update(steps=every, batch_size=args.batch, eval_every=every, eval_batches=4,
                       log_every=max(1, every // 10))
        c.optimizer.warmup_steps = min(c.optimizer.warmup_steps, max(1, every // 10))
        c.checkpoint.update(every=every, keep=1)
        return c

    def stage2():  # 2: MLM on in-domain utterances from the stage-1 weights (fresh optimizer and schedule)
        c = pretrain("mlm", model_of(teacher=True), "massive_text", "stage2", 32,
                     num_examples=400 if args.smoke else 0)
        c.init_from = f"{root}/teacher_s1"
        c.optimizer.learning_rate = 5e-4
        return c

    def student(teacher):  # 3: on the same text, in-domain utterances with 30% stage-1 replay
        c = pretrain("distill" if teacher else "mlm", model_of(teacher=False), "massive_text", "distill", 32,
                     num_examples=400 if args.smoke else 40000, replay_tasks="mlm_text_spoken_written",
                     replay_share=0.3)
        if teacher:
            c.distill.teacher = f"{root}/{teacher}"
            c.kd.update(alpha=0.5, temperature=2.0, loss="kl")
        return c

    jobs = {"teacher_s1": common.Job(f"{root}/teacher_s1", stage1),
            "teacher_s2": common.Job(f"{root}/teacher_s2", stage2, needs=(f"{root}/teacher_s1",))}
    for name, teacher in (("student_s1", "teacher_s1"), ("student_s2", "teacher_s2"), ("student_mlm", None)):
        jobs[name] = common.Job(f"{root}/{name}", lambda teacher=teacher: student(teacher),
                                needs=(f"{root}/{teacher}",) if teacher else ())
    return jobs


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
        ("stage 2 lowers the intent error (en-US intent accuracy)", "teacher_s2", "teacher_s1", "en-US", "accuracy"),
        ("stage 2 lowers the slot error (en-US slot F1)", "teacher_s2", "teacher_s1", "en-US", "slot_f1"),
        ("student ← stage-2 teacher beats student ← stage-1 teacher (intent)", "student_s2", "student_s1", "en-US",
         "accuracy"),
        ("student ← stage-2 teacher beats student ← stage-1 teacher (slots)", "student_s2", "student_s1", "en-US",
         "slot_f1"),
        ("student ← stage-2 teacher beats the MLM-only student (intent)", "student_s2", "student_mlm", "en-US",
         "accuracy"),
        ("student ← stage-2 teacher beats the MLM-only student (slots)", "student_s2", "student_mlm", "en-US",
         "slot_f1"),
        # Without these the other claims could compare two models that pretraining made worse (issue 14).
        ("pretraining pays: the stage-1 teacher beats its encoder from scratch (en-US intent)", "teacher_s1",
         "teacher_scratch", "en-US", "accuracy"),
        ("pretraining pays: the stage-1 teacher beats its encoder from scratch (de-DE zero-shot intent)",
         "teacher_s1", "teacher_scratch", "de-DE", "accuracy"),
        ("distillation pays: student ← stage-2 teacher beats its encoder from scratch (en-US intent)", "student_s2",
         "student_scratch", "en-US", "accuracy"),
    ]
    verdicts = [(claim, common.verdict(values(better, locale, key), values(worse, locale, key)))
                for claim, better, worse, locale, key in claims]
    table = [
        "# ATM in miniature (arXiv 2206.07808)", "",
        common.produced_by("atm", args, clock, steps, (("steps", args.steps),)),
        f"Teacher: {TEACHER['num_layers']}×{TEACHER['hidden_size']} post-LN, {teacher_params:,} non-embedding params; "
        f"students: {STUDENT['num_layers']}×{STUDENT['hidden_size']}, {student_params:,} "
        f"({student_params / teacher_params:.2f}× the teacher). Vocabulary: 8000 SentencePiece pieces trained on "
        "the stage-1 corpus. Students: τ²·KL (α = 0.5, τ = 2) on MASSIVE utterances + 30% stage-1 replay; the "
        "MLM-only student sees the same text and steps.",
        f"Fine-tuning: MASSIVE en-US train, {steps['finetune']} steps, batch 32, the same for every row (the "
        "from-scratch rows: the same encoders with no pretraining); figures in % on the test splits, mean ± "
        f"standard deviation over {args.seeds} seeds, each seed its own pretraining, distillation and fine-tuning.",
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
