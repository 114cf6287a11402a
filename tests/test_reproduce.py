"""The miniature paper tables' writers: claims judged from per-seed figures, with the seeds' spread."""
import json
import os

import pytest

from reproduce import atm as atm_script
from reproduce import common


def test_verdict_states_the_gap_and_the_seed_spread():
    assert (common.verdict([0.20, 0.21, 0.19], [0.10, 0.12, 0.11])
            == "**held** (+9.0 points, larger than the seed spread)")
    assert (common.verdict([0.30, 0.20, 0.10], [0.22, 0.21, 0.20])
            == "**did not hold** (-1.0 points, within the seed spread of 10.0)")
    assert common.verdict([0.1], [0.2]) == "**did not hold** (-10.0 points)"  # one seed: no spread to compare


def test_clock_counts_running_time_across_restarts_not_the_gap_between_them(tmp_path, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(common.time, "time", lambda: now[0])
    first = common.Clock(str(tmp_path))
    now[0] += 600
    first.log("ten minutes in")  # the script is killed after this line
    now[0] += 86400  # a day passes before the next session resumes it
    second = common.Clock(str(tmp_path))
    now[0] += 300
    assert second.minutes() == pytest.approx(15.0)


def test_a_finished_run_of_another_config_is_an_error_never_reused(tmp_path):
    from atm import train

    finished = common.finetune_config({}, "", 300, 0)
    finished.data.vocab = "/runs/pretrained/vocab.model"  # what the run filled in from its init_from
    train.write_resolved_config(finished, str(tmp_path))
    (tmp_path / "summary.json").write_text('{"step": 300}')
    again = common.finetune_config({}, "", 300, 0)  # vocab left empty: the run would fill in the same one
    assert common.run(again, str(tmp_path)) == {"step": 300}
    again.train.steps, again.optimizer.learning_rate = 600, 5e-4
    with pytest.raises(ValueError, match=r"holds a finished run of another config \(optimizer.learning_rate: "
                                         r"0.002 → 0.0005, train.steps: 300 → 600\)"):
        common.run(again, str(tmp_path))


def test_a_run_another_process_is_training_is_waited_for_and_a_dead_ones_lock_taken_over(tmp_path, monkeypatch):
    import subprocess
    import threading

    from atm import train

    config = common.finetune_config({}, "", 300, 0)
    trained = []
    monkeypatch.setattr(train, "train_and_evaluate", lambda c, w: trained.append(w) or {"step": 300})
    monkeypatch.setattr(common, "LOCK_POLL_S", 0.05)

    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / "running.pid").write_text(str(dead.pid))  # left by a SIGKILLed process
    assert common.run(config, str(stale)) == {"step": 300} and trained == [str(stale)]
    assert not (stale / "running.pid").exists()

    other = subprocess.Popen(["sleep", "60"])  # another process training `busy`, finishing it in 0.5 s
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "running.pid").write_text(str(other.pid))

    def finish():
        train.write_resolved_config(config, str(busy))
        (busy / "summary.json").write_text('{"step": 300, "by": "the other process"}')
        other.kill()
        other.wait()  # reaped: a zombie would still answer os.kill(pid, 0)
        (busy / "running.pid").unlink()
    threading.Timer(0.5, finish).start()
    assert common.run(config, str(busy)) == {"step": 300, "by": "the other process"}  # waited, then read
    assert trained == [str(stale)]  # never trained twice


def test_a_run_is_recorded_restored_in_a_new_checkout_and_retrained_when_a_later_run_needs_it(tmp_path,
                                                                                                  monkeypatch):
    import shutil

    from atm import train
    from atm.convert.workdir import config_from_workdir

    repo = tmp_path / "repo"
    monkeypatch.setattr(common, "REPO", str(repo))
    monkeypatch.setattr(common, "WORKDIRS", str(repo / "workdirs"))
    monkeypatch.setattr(common, "RECORDS", str(repo / "results" / "runs"))
    trained, loss = [], [1.25]

    def fake_train(config, workdir):  # what a run leaves: its config, vocabulary (pretraining), metrics
        trained.append(os.path.basename(workdir))
        train.write_resolved_config(config, workdir)
        if not config.data.vocab:
            with open(os.path.join(workdir, "vocab.model"), "wb") as f:
                f.write(b"8000 pieces")
        with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
            f.write('{"step": 1}\n')
        return {"step": config.train.steps, "loss": loss[0] + config.seed, "tokens_per_s": 1e3 * len(trained),
                "workdir": workdir}
    monkeypatch.setattr(train, "train_and_evaluate", fake_train)

    pre_dir, work = str(repo / "workdirs" / "block" / "pretrain"), repo / "workdirs" / "block"
    common.run(common.pretrain_config("mlm", common.TEACHER, "massive_text_en_us", 10, 32, 4), pre_dir)
    finetune = lambda seed: config_from_workdir(common.finetune_config({}, "", 5, seed), pre_dir)  # noqa: E731
    common.run(finetune(0), str(work / "ft0"))
    assert common.run_figures(str(work / "ft0"), "figures.json", lambda d: {"accuracy": 0.5}) == {"accuracy": 0.5}
    record = repo / "results" / "runs" / "block" / "ft0"
    assert sorted(os.listdir(record)) == ["config.json", "figures.json", "metrics.jsonl", "summary.json"]
    assert "{REPO}/workdirs/block/pretrain" in (record / "config.json").read_text()  # the checkout's path left out
    assert str(repo) not in (record / "config.json").read_text()
    assert len(os.listdir(repo / "results" / "runs" / "vocab")) == 1  # one vocabulary, stored once by content

    shutil.rmtree(repo / "workdirs")  # a new checkout: workdirs/ is gone, results/ committed
    trained.clear()
    assert common.restore(pre_dir) and (work / "pretrain" / "vocab.model").read_bytes() == b"8000 pieces"
    assert not (work / "pretrain" / "checkpoints").exists()  # the start of later runs, as reproduce/road.py's
    assert common.restore(str(work / "ft0")) and (work / "ft0" / "figures.json").exists()
    assert common.run(finetune(0), str(work / "ft0"))["loss"] == 1.25 and trained == []  # restored, not trained
    assert common.run_figures(str(work / "ft0"), "figures.json", lambda d: pytest.fail("recomputed")) == \
        {"accuracy": 0.5}

    # A run that reads only the restored vocabulary (brought back by content) needs no checkpoint of its run.
    common.run(common.finetune_config({}, str(work / "pretrain" / "vocab.model"), 5, 3), str(work / "ft3"))
    assert trained == ["ft3"] and (work / "pretrain" / common.RESTORED).exists()
    common.run(finetune(1), str(work / "ft1"))  # starts from the restored run: retrained first, as recorded
    assert trained == ["ft3", "pretrain", "ft1"] and not (work / "pretrain" / common.RESTORED).exists()

    # A run another live process is (re)training is not refilled from its record under it.
    import subprocess
    shutil.rmtree(work / "ft0")
    (work / "ft0").mkdir()
    other = subprocess.Popen(["sleep", "60"])
    (work / "ft0" / "running.pid").write_text(str(other.pid))
    assert not common.restore(str(work / "ft0")) and os.listdir(work / "ft0") == ["running.pid"]
    other.kill()
    other.wait()
    assert common.restore(str(work / "ft0"))  # its process gone: restored

    shutil.rmtree(repo / "workdirs")
    loss[0] = 1.25 * (1 + 2e-7)  # retrained on another core count: XLA's sums round otherwise, the same run
    common.restore(pre_dir)
    common.run(finetune(2), str(work / "ft2"))
    assert trained[-2:] == ["pretrain", "ft2"]

    shutil.rmtree(repo / "workdirs")
    loss[0] = 1.5  # the retrained checkpoint is another one: the runs recorded from it would not follow
    common.restore(pre_dir)
    with pytest.raises(RuntimeError, match=r"pretrain was retrained from its record .* but did not reproduce it "
                                           r"\(loss: recorded 1.25, now 1.5\)"):
        common.run(finetune(4), str(work / "ft4"))


def test_run_jobs_puts_off_a_run_another_process_holds_and_the_runs_that_need_it(tmp_path, monkeypatch):
    import subprocess
    import threading

    from atm import train

    order = []

    def fake_train(config, workdir):
        train.write_resolved_config(config, workdir)
        order.append(os.path.basename(workdir))
        return {"step": 1}
    monkeypatch.setattr(train, "train_and_evaluate", fake_train)
    monkeypatch.setattr(common, "LOCK_POLL_S", 0.05)
    config = lambda: common.finetune_config({}, "", 1, 0)  # noqa: E731
    held, after_held, free = (str(tmp_path / name) for name in ("held", "after_held", "free"))
    other = subprocess.Popen(["sleep", "60"])  # another process running `held`, done in 0.5 s
    os.makedirs(held)
    with open(os.path.join(held, "running.pid"), "w") as f:
        f.write(str(other.pid))

    def finish():
        train.write_resolved_config(config(), held)
        with open(os.path.join(held, "summary.json"), "w") as f:
            f.write('{"step": 1}')
        other.kill()
        other.wait()
        os.remove(os.path.join(held, "running.pid"))
    threading.Timer(0.5, finish).start()
    scored = []
    common.run_jobs([common.Job(held, config), common.Job(after_held, config, needs=(held,)),
                     common.Job(free, config, then=scored.append)], log=lambda message: None)
    assert order == ["free", "after_held"]  # `held` was never trained here; `free` did not wait for it
    assert scored == [free]


def check_plan(jobs):
    """Every run of a plan once, and every run a job needs comes before it in the plan."""
    seen = set()
    for job in jobs:
        assert job.workdir not in seen and all(n in seen for n in job.needs), job.workdir
        seen.add(job.workdir)


def test_atm_privileged_and_narrowbert_plans_put_the_long_chains_first_and_the_runs_needing_nothing_last():
    import argparse

    from atm import config as atm_config
    from reproduce import narrowbert, privileged

    args = argparse.Namespace(seeds=2, smoke=False, batch=32, pretrained="", teacher_lr=1e-3, student_lr=1e-3)
    steps = {"stage1": 10, "stage2": 5, "distill": 5, "finetune": 5}
    jobs, finetuned = atm_script.plan("/w", "/w/vocab/v8k.model", steps, args)
    names = [os.path.relpath(job.workdir, "/w") for job in jobs]
    check_plan(jobs)
    assert len(jobs) == 2 * 12 and names[:2] == ["seed0/teacher_s1", "seed1/teacher_s1"]
    assert set(names[-8:]) == {f"seed{s}/{n}" for s in (0, 1) for n in
                               ("student_mlm", "ft_student_mlm", "ft_teacher_scratch", "ft_student_scratch")}
    assert finetuned["student_s2", 1] == "/w/seed1/ft_student_s2"
    by_name = dict(zip(names, jobs))
    assert by_name["seed1/ft_student_s2"].needs == ("/w/seed1/student_s2",)
    assert by_name["seed1/student_s2"].config().distill.teacher == "/w/seed1/teacher_s2"
    assert by_name["seed0/ft_teacher_scratch"].config().init_from == ""
    for job in jobs:
        atm_config.validate(job.config())

    variants = [("random", "none", 1.0), ("finetuned", "kl", 1.0), ("pretrained", "none", 0.1)]
    jobs, teachers, students = privileged.plan("/p", variants, {"pretrain": 10, "teacher_ft": 5, "student_ft": 5,
                                                                "low_resource_ft": 3}, args)
    check_plan(jobs)
    names = [os.path.relpath(job.workdir, "/p") for job in jobs]
    assert names[:4] == ["seed0/teacher_pretrained", "seed1/teacher_pretrained", "seed0/teacher_ft", "seed1/teacher_ft"]
    assert students[("finetuned", "kl", 1.0), 1] == "/p/seed1/student_finetuned_kl_100pct"
    args.pretrained = "/hf/minilm"  # an imported checkpoint: nothing to wait for, so random students come first
    jobs, _, _ = privileged.plan("/p", variants, {"pretrain": 10, "teacher_ft": 5, "student_ft": 5,
                                                  "low_resource_ft": 3}, args)
    check_plan(jobs)
    assert [os.path.relpath(job.workdir, "/p") for job in jobs[:2]] == ["seed0/teacher_ft", "seed1/teacher_ft"]
    assert not any(os.path.basename(job.workdir) == "teacher_pretrained" for job in jobs)

    scale = dict(narrowbert.SCALES["mini"])
    rows = narrowbert.seed_jobs(scale, 1, ["", "1sf:3sf"], "/n/vocab/vocab.model", "/n")
    assert [row.arrangement for row in rows] == ["", "1sf:3sf"] + ([narrowbert.SCRATCH] if scale.get("scratch") else [])
    assert rows[1].finetune["sst2"].needs == ("/n/seed1/1sf-3sf/pretrain",)
    assert rows[1].finetune["sst2"].config().model.arrangement == "1sf:3sf"
    if scale.get("scratch"):
        assert rows[-1].pretrain is None and rows[-1].finetune["sst2"].needs == () and \
            rows[-1].finetune["sst2"].config().init_from == ""


def write_atm_table(results_dir):
    """reproduce/atm.py's writer on made-up per-seed figures (3 seeds, 25 minutes)."""
    def figures(accuracy, slot_f1):
        return {locale: {"accuracy": accuracy, "slot_f1": slot_f1, "semer": 1.0 - slot_f1}
                for locale in ("en-US", "de-DE", "sw-KE")}

    means = {"teacher_s1": (0.30, 0.40), "teacher_s2": (0.40, 0.38), "teacher_scratch": (0.25, 0.30),
             "student_s1": (0.20, 0.20), "student_s2": (0.25, 0.30), "student_mlm": (0.26, 0.10),
             "student_scratch": (0.30, 0.30)}
    results = {name: [figures(acc + d, f1 + d) for d in (-0.01, 0.0, 0.01)] for name, (acc, f1) in means.items()}

    class Args:
        scale, seeds, steps, results = 1.0, 3, "", str(results_dir)

    class Clock:
        def minutes(self):
            return 25.0

    atm_script.write_results(results, {"stage1": 1, "stage2": 1, "distill": 1, "finetune": 1}, Args, Clock())


def test_atm_table_judges_each_claim_from_its_two_rows(tmp_path):
    write_atm_table(tmp_path)
    table = (tmp_path / "table.md").read_text()
    assert "| teacher, stage 2 | 40.0 ± 1.0 | 38.0 ± 1.0 | 62.0 ± 1.0 |" in table
    assert "stage 2 lowers the intent error (en-US intent accuracy): **held** (+10.0 points, larger" in table
    assert "stage 2 lowers the slot error (en-US slot F1): **did not hold** (-2.0 points, larger" in table
    assert "beats student ← stage-1 teacher (slots): **held** (+10.0 points" in table
    assert "beats the MLM-only student (intent): **did not hold** (-1.0 points, within the seed spread of 1.0)" in table
    assert "| teacher's encoder from scratch (no pretraining) | 25.0 ± 1.0 | 30.0 ± 1.0 |" in table
    assert ("pretraining pays: the stage-1 teacher beats its encoder from scratch (de-DE zero-shot intent): **held** "
            "(+5.0 points, larger") in table
    assert ("distillation pays: student ← stage-2 teacher beats its encoder from scratch (en-US intent): "
            "**did not hold** (-5.0 points") in table
    assert (tmp_path / "atm.png").stat().st_size > 10_000


def write_muka_table(results_dir):
    """reproduce/muka.py's writer on made-up figures: split2 with 3 seeds and an oracle, cross with one seed."""
    from reproduce import muka

    def seed(d):
        return {"oracle": 0.90 + d, "teachers": [0.95, 0.93], "vanilla_kd": 0.70 + d, "uhc": 0.75 + d,
                "muka_hard": 0.78 + d, "muka_soft": 0.80 + d, "muka_soft_margin": 0.85 + d,
                **{f"{m}_parts": [0.8, 0.7] for m in muka.METHODS},
                "teacher_choice": {"mc_scores": 0.6 + d, "one_pass_scores": 0.55, "teacher_logits": 0.8}}
    results = {"split2": [seed(d) for d in (-0.01, 0.0, 0.01)], "cross": [
        {k: v for k, v in seed(0.0).items() if k != "oracle"}]}

    class Args:
        scale, seeds, steps, results, blocks = 1.0, 3, "", str(results_dir), "split2,cross"

    class Clock:
        def minutes(self):
            return 10.0

    muka.write(results, Args, Clock(), {"teacher": 1, "student": 1})


def test_muka_table_judges_its_claims_from_the_rows(tmp_path):
    write_muka_table(tmp_path)
    table = (tmp_path / "table.md").read_text()
    assert not (tmp_path / "NOTES.md").exists()  # the hand-written reading is not overwritten
    notes = table.split("## The paper's claims, in miniature")[1]
    assert "| MUKA soft + margin | 85.0 ± 1.0 | 80.0 ± 0.0 / 70.0 ± 0.0 |" in table
    assert "| MUKA soft + margin | 85.0 | 80.0 / 70.0 |" in table  # the cross block: one seed
    assert "| oracle (all labels, gold) | 90.0 ± 1.0 |  |" in table
    assert "by the Monte-Carlo scores (MUKA) 60.0 ± 1.0%, by the same score from one pass" in table
    assert "beats vanilla KD by ≥ 1.5 points: **held** (+15.0 points)" in notes
    assert "beats UHC: **held** (+10.0 points, larger than the seed spread)" in notes
    assert "closes most of the gap to the oracle: **held** (75% of oracle − vanilla KD)" in notes
    assert notes.count("closes most") == 1  # the cross block has no oracle
    assert (tmp_path / "muka.png").stat().st_size > 5_000


def test_electra_table_judges_the_claim_per_task_and_states_how_far_pretraining_got(tmp_path):
    from reproduce import electra as electra_script

    results = {"electra": {"sst2": [0.80, 0.81, 0.82], "massive": [0.50, 0.52, 0.54]},
               "mlm": {"sst2": [0.70, 0.71, 0.72], "massive": [0.53, 0.53, 0.53]}}
    pretrained = {"electra": {"eval_generator_accuracy": 0.21, "eval_rtd_f1": 0.43, "eval_replaced_share": 0.12,
                              "eval_rtd_auc": 0.71},
                  "mlm": {"eval_accuracy": 0.18, "eval_loss": 4.5}}

    class Args:
        scale, seeds, steps, results, batch, finetune_lr = 1.0, 3, "", str(tmp_path), 32, 3e-4

    class Clock:
        def minutes(self):
            return 70.0

    ratio = {"ratio": 1.3, "electra_step_s": 0.13, "mlm_step_s": 0.1, "load_avg_1m": 2.0}
    electra_script.write_results(results, pretrained, {"pretrain": 1500, "finetune": 600, "mlm_pretrain": 1950},
                                 ratio, Args, Clock())
    table = (tmp_path / "table.md").read_text()
    assert ("| ELECTRA discriminator | 1500 | generator masked-token accuracy 21.0%, replaced-token F1 43.0%, "
            "AUC 0.710 (12.0% of tokens replaced) | 81.0 ± 1.0 | 52.0 ± 2.0 |") in table
    assert "| MLM encoder | 1950 | masked-token accuracy 18.0%, MLM loss 4.50 | 71.0 ± 1.0 | 53.0 ± 0.0 |" in table
    assert "(SST-2): **held** (+10.0 points, larger than the seed spread)" in table
    assert "(MASSIVE en-US intents): **did not hold** (-1.0 points, within the seed spread of 2.0)" in table
    assert "an ELECTRA step took 1.300× an MLM step" in table and "MLM ran 1950 steps to ELECTRA's 1500" in table
    assert (tmp_path / "electra.png").stat().st_size > 10_000


def test_road_table_has_a_row_per_arm_and_judges_the_three_claims_per_column(tmp_path):
    from reproduce import road

    def figures(task, base):
        if task == "xnli_en":
            langs = {f"xnli_{x}": base - 0.1 for x in ("de", "sw")}
            return {"accuracy": base, **langs, "xnli_en": base, "zero_shot": (base + 2 * (base - 0.1)) / 3}
        if task == "tydiqa_goldp_en":
            return {"f1": base, "exact_match": base - 0.2}
        if task == "massive_en_us":
            return {"accuracy": base, "slot_f1": base - 0.3}
        return {"accuracy": base}

    # (a) 0.50, (b) 0.60, (c) 0.58 with a spread of 10 points, (d) 0.61
    means = {"teachers": 0.70, "single_task": 0.50, "multitask": 0.60, "multitask_kd": 0.58, "multitask_wkd": 0.61}
    spreads = {"multitask_kd": (-0.1, 0.0, 0.1)}
    block = {arm: {task: [figures(task, m + d) for d in spreads.get(arm, (-0.01, 0.0, 0.01))] for task in road.TASKS}
             for arm, m in means.items()}
    block["teachers"] = {task: [figures(task, 0.70)] * 2 for task in road.TASKS}

    class Args:
        scale, seeds, steps, results, tasks, blocks = 1.0, 3, "", str(tmp_path), "all four", "electra"
        finetune_lr = 5e-4

    class Clock:
        def minutes(self):
            return 5.0

    steps = {"multitask": 1, **{f"finetune_{task}": 2 for task in road.TASKS}, "finetune_massive_en_us": 3}
    road.write({"electra": block}, {"electra": "/runs/electra"}, Args, Clock(), steps)
    table, notes = (tmp_path / "table.md").read_text(), (tmp_path / "NOTES.md").read_text()
    assert ("| (b) multi-task → fine-tuning | 60.0 ± 1.0 | 60.0 ± 1.0 | 53.3 ± 1.0 | 60.0 ± 1.0 | 40.0 ± 1.0 "
            "| 60.0 ± 1.0 | 30.0 ± 1.0 |") in table
    assert "| teachers (2 per task) | 70.0 ± 0.0 |" in table
    assert ("Fine-tuning steps (batch 32): SST-2 2, XNLI (en) 2, TyDi QA GoldP en 2, MASSIVE en-US 3; lr 0.0005 for "
            "every fine-tune and the multi-task step.") in table
    assert "| (c) multi-task + KD (mean_probs) → fine-tuning | 58.0 ± 10.0 | 58.0 ± 10.0 | 51.3 ± 10.0 |" in table
    assert "| arm | de | en | sw |" in table and "| (a) single-task fine-tuning | 40.0 ± 1.0 | 50.0 ± 1.0 | 40.0 ± 1.0 |" in table
    first, second, third = notes.split("- the multi-task")[1], notes.split("- KD inside")[1], notes.split("- weighted")[1]
    assert "SST-2 acc: **held** (+10.0 points, larger than the seed spread)" in first
    assert "in all: held in 7 of 7 columns, 7 of them by more than the seed spread" in first
    assert "MASSIVE slot F1: **did not hold** (-2.0 points, within the seed spread of 10.0)" in second
    assert "in all: held in 0 of 7 columns" in second
    assert "TyDi QA F1: **held** (+3.0 points, within the seed spread of 10.0)" in third
    assert "in all: held in 7 of 7 columns, 0 of them by more than the seed spread" in third
    assert (tmp_path / "road.png").stat().st_size > 10_000
    assert road.judge([0.25, 0.75], [0.5, 0.5], at_least=True).startswith("**held** (+0.0 points")  # ≥: a tie holds
    assert road.judge([0.25, 0.75], [0.5, 0.5]).startswith("**did not hold** (+0.0 points")


def test_results_readme_has_one_line_per_claim_of_every_table_and_names_the_missing_ones(tmp_path):
    from reproduce import __main__ as tables

    write_atm_table(tmp_path / "atm")
    write_muka_table(tmp_path / "muka")
    text = tables.readme(str(tmp_path))
    assert text == (tmp_path / "README.md").read_text()
    atm_part = text.split("## ATM")[1].split("## ")[0]
    assert "From [atm/table.md](atm/table.md). Produced by `python -m reproduce.atm --scale=1.0 --seeds=3` in 25.0" in atm_part
    assert atm_part.count("\n- ") == 9  # the table's nine claims, each with its verdict
    assert "- stage 2 lowers the intent error (en-US intent accuracy): **held** (+10.0 points, larger" in atm_part
    assert "- split2: MUKA (soft + margin) beats vanilla KD by ≥ 1.5 points: **held** (+15.0 points)" in text
    assert "- cross: MUKA (soft + margin) beats UHC: **held** (+10.0 points)" in text
    assert text.count("closes most of the gap") == 1  # only split2 has an oracle
    assert "- `road/`: not run yet (`python -m reproduce.road`)." in text
    assert "- `minilm/stage2/`: not run yet" in text and "- `minilm/privileged/`: not run yet" in text


def test_reproduce_all_runs_each_script_in_turn_and_a_failure_costs_only_its_table(tmp_path, monkeypatch):
    import importlib
    import types

    from reproduce import __main__ as tables

    calls = []

    def fake_script(name):
        def main(argv):
            calls.append((name, argv))
            if name == "privileged":
                raise RuntimeError("a run failed")
            if name == "atm":
                write_atm_table(tmp_path / "results" / "atm")
        return types.SimpleNamespace(main=main)

    monkeypatch.setattr(importlib, "import_module", lambda module: fake_script(module.split(".")[-1]))
    code = tables.main(["all", "--only=atm,privileged,road", "--scale=20", "--seeds=5",
                        f"--workdir={tmp_path}/w", f"--results={tmp_path}/results"])
    assert code == 1 and [name for name, _ in calls] == ["atm", "privileged", "road"]
    assert calls[2][1] == [f"--workdir={tmp_path}/w/reproduce_road", f"--results={tmp_path}/results/road",
                           "--scale=20.0", "--seeds=5", f"--electra_workdir={tmp_path}/w/reproduce_electra"]
    readme = (tmp_path / "results" / "README.md").read_text()
    assert "stage 2 lowers the intent error" in readme and "- `privileged/`: not run yet" in readme
    with pytest.raises(SystemExit):
        tables.main(["all", "--only=atm,bert"])


def test_privileged_table_judges_copying_against_distillation_per_data_size(tmp_path):
    from reproduce import privileged

    def figures(en, de):
        return {"en-US": {"accuracy": en, "slot_f1": en / 2}, "de-DE": {"accuracy": de, "slot_f1": de / 2}}

    # 100%: copying gains +30 points, KL +5, MSE +40 (so the MSE claim fails); 10%: copying gains +10, KL +2
    means = {("random", "none", 1.0): (0.40, 0.10), ("random", "kl", 1.0): (0.45, 0.10),
             ("random", "mse", 1.0): (0.80, 0.10), ("finetuned", "none", 1.0): (0.70, 0.15),
             ("random", "none", 0.1): (0.20, 0.05), ("random", "kl", 0.1): (0.22, 0.05),
             ("finetuned", "none", 0.1): (0.30, 0.04)}
    results = {key: [figures(en + d, de + d) for d in (-0.01, 0.01)] for key, (en, de) in means.items()}

    class Args:
        scale, seeds, steps, results, pretrained, teacher_lr, student_lr = 1.0, 2, "", str(tmp_path), "/m", 1e-4, 3e-4

    class Clock:
        def minutes(self):
            return 40.0

    shape = {**privileged.TEACHER, "num_layers": 6, "hidden_size": 384, "pre_layer_norm": False}
    teachers = [figures(0.74, 0.2), figures(0.76, 0.2)]  # one per seed
    privileged.write_results(results, teachers, {"teacher_ft": 400, "student_ft": 400}, Args, Clock(), shape)
    table = (tmp_path / "table.md").read_text()
    assert "Teacher: 6 layers × 384 (post-LN), fine-tuned on MASSIVE en-US intent + slots (lr 0.0001)" in table
    assert "students: 3 layers × 384" in table and "take every other teacher layer (0, 2, 4)" in table
    assert "| copy ← fine-tuned teacher | 100% | no KD | 70.0 ± 1.4 | 35.0 ± 0.7 | 15.0 ± 1.4 |" in table
    assert "| teacher (6 layers, fine-tuned) | 100% | — | 75.0 ± 1.4 | 37.5 ± 0.7 | 20.0 ± 0.0 |" in table
    claims = [c["verdict"] for c in json.loads((tmp_path / "claims.json").read_text())["claims"]]
    assert claims == ["**held**", "**did not hold**", "**held**", "**held**", "**did not hold**"]
    assert "100% data: copy ← fine-tuned teacher gains +30.0 intent-accuracy points, KD (KL) gains +5.0: **held**" in table
    assert "10% data: copy ← fine-tuned teacher keeps more zero-shot de-DE ability than random init (-1.0 points)" in table


def test_minilm_stage2_table_judges_stage2_and_scratch_from_per_seed_figures(tmp_path):
    from reproduce import minilm

    def seeds(accuracy, slot_f1):
        return [{"accuracy": accuracy + d, "slot_f1": slot_f1 + d} for d in (-0.01, 0.0, 0.01)]
    results = {"stage1": seeds(0.80, 0.60), "stage2": seeds(0.82, 0.59), "scratch": seeds(0.60, 0.40)}

    class Args:
        scale, seeds, steps, results = 1.0, 3, "", str(tmp_path)

    class Clock:
        def minutes(self):
            return 50.0

    shape = {"num_layers": 6, "hidden_size": 384, "vocab_size": 30522}
    text = minilm.write_stage2(results, {"eval_accuracy": 0.363, "eval_loss": 3.5}, shape,
                               {"stage2": 600, "finetune": 400}, Args, Clock())
    assert "| MiniLM + stage 2 (MLM on MASSIVE en-US) | 0.0005 | 82.0 ± 1.0 | 59.0 ± 1.0 |" in text
    assert "it ended at 36.3% masked-token accuracy" in text
    assert "- stage 2 beats stage 1 (intent accuracy): **held** (+2.0 points, larger than the seed spread)" in text
    assert "- stage 2 beats stage 1 (slot F1): **did not hold** (-1.0 points, within the seed spread of 1.0)" in text
    assert "- pretraining beats the same encoder from scratch (intent accuracy): **held** (+20.0 points" in text
    record = json.loads((tmp_path / "stage2" / "claims.json").read_text())
    assert len(record["claims"]) == 4 and record["produced_by"].startswith("Produced by `python -m reproduce.minilm")
