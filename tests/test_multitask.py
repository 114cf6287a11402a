"""Multi-task learning with KD from several teachers (ROaD): sampling, teacher combination, head routing,
sharding, resume, evaluation and bad input, on tiny BIO folders the tests write."""
import json
import os
import shutil
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from atm import train
from atm.config import default_config
from atm.distill import kd as kd_lib
from atm.objectives import multitask
from helpers import apply_overrides, run_steps
from test_finetune import finetune_config, write_bio_folder
from test_resume import final_params, metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------- sampling
@pytest.mark.parametrize("sampling", ["proportional", "uniform", "temperature"])
def test_sampling_frequencies_are_within_one_percent_over_10000_draws(sampling):
    sizes = [5000, 1200, 300, 60]
    rates = multitask.task_rates(sizes, sampling, 0.5)
    n = np.array(sizes, float)
    expected = {"proportional": n / n.sum(), "uniform": np.full(4, 0.25), "temperature": n ** 0.5 / (n ** 0.5).sum()}
    np.testing.assert_allclose(rates, expected[sampling], rtol=1e-12)
    for k in (1, 4):  # 10,000 draws either way
        schedule = multitask.TaskSchedule(rates, k, seed=0)
        draws = np.concatenate([schedule.draws(s) for s in range(10_000 // k)])
        freq = np.bincount(draws, minlength=4) / len(draws)
        assert np.abs(freq - rates).max() < 0.01, (sampling, k, freq, rates)


def test_schedule_is_a_function_of_seed_and_step_and_counts_blocks():
    rates = multitask.task_rates([30, 10, 5], "proportional", 1.0)
    a, b = multitask.TaskSchedule(rates, 2, seed=3), multitask.TaskSchedule(rates, 2, seed=3)
    steps = [2500, 0, 1023, 1024, 7, 3000]  # any order, across chunk boundaries
    for s in steps:
        np.testing.assert_array_equal(a.draws(s), b.draws(s))
        brute = np.bincount(np.concatenate([b.draws(t) for t in range(s)] or [np.zeros(0, int)]), minlength=3)
        np.testing.assert_array_equal(a.uses_before(s), brute)
    assert not np.array_equal([a.draws(s) for s in range(50)],
                              [multitask.TaskSchedule(rates, 2, seed=4).draws(s) for s in range(50)])


# ----------------------------------------------------------------------------- teacher combination
def _kd(student, teachers, combine, gold=None, present=None):
    return kd_lib.multi_teacher_kd(student, teachers, "kl", 3.0, combine, present, gold, 0.75)


def test_with_one_teacher_every_combine_mode_is_single_teacher_kd():
    rng = np.random.default_rng(0)
    student, teacher = rng.normal(size=(5, 4)).astype(np.float32), rng.normal(size=(1, 5, 4)).astype(np.float32)
    gold = np.array([0, 1, 2, 3, 0])
    with jax.numpy_rank_promotion("raise"):
        single = kd_lib.kd_per_position(student, teacher[0], "kl", 3.0)
        for combine in kd_lib.COMBINES:
            np.testing.assert_array_equal(_kd(student, teacher, combine, gold), single)


def test_weighted_reproduces_a_hand_computed_three_teacher_example_and_falls_back_to_gold():
    z = np.array([[[2.0, 0.0, 1.0]],   # right (argmax 0 = gold)
                  [[1.0, 0.5, 0.0]],   # right
                  [[0.0, 3.0, 0.0]]],  # wrong
                 np.float32)  # (T=3, B=1, C=3)
    gold = np.array([0])
    # M = 3, n_wrong = 1, W = 0.75: Ŵ = (3 − 0.75)/2 = 1.125; z̄ = (1.125·z1 + 1.125·z2 + 0.75·z3)/3
    combined = (1.125 * z[0] + 1.125 * z[1] + 0.75 * z[2]) / 3
    np.testing.assert_allclose(combined, [[1.125, 0.9375, 0.375]], rtol=1e-6)
    logits, any_right = kd_lib.weighted_teacher_logits(jnp.asarray(z), jnp.asarray(gold), 0.75)
    np.testing.assert_allclose(logits, combined, rtol=1e-6)
    assert bool(any_right[0])
    target = kd_lib.weighted_target(jnp.asarray(z), jnp.asarray(gold), 3.0, 0.75)
    e = np.exp(combined / 3.0)
    np.testing.assert_allclose(target, e / e.sum(-1, keepdims=True), rtol=1e-6)
    # every teacher wrong (gold = 2): the gold one-hot; the KD is then τ²·CE(σ(z_S/τ), gold)
    all_wrong = kd_lib.weighted_target(jnp.asarray(z), jnp.asarray([2]), 3.0, 0.75)
    np.testing.assert_array_equal(all_wrong, [[0.0, 0.0, 1.0]])
    student = np.array([[0.3, -0.2, 0.5]], np.float32)
    log_q = student[0] / 3.0 - np.log(np.exp(student[0] / 3.0).sum())
    np.testing.assert_allclose(_kd(student, z, "weighted", np.array([2])), [-9.0 * log_q[2]], rtol=1e-5)
    # confidence: w_t ∝ σ(z_t)_gold, target Σ w_t σ(z_t/τ)
    p1 = np.exp(z[:, 0]) / np.exp(z[:, 0]).sum(-1, keepdims=True)
    w = p1[:, 0] / p1[:, 0].sum()
    pt = np.exp(z[:, 0] / 3) / np.exp(z[:, 0] / 3).sum(-1, keepdims=True)
    np.testing.assert_allclose(kd_lib.confidence_target(jnp.asarray(z), jnp.asarray(gold), 3.0)[0], w @ pt, rtol=1e-5)


@pytest.mark.parametrize("combine", ["mean_probs", "mean_logits", "weighted", "confidence"])
def test_kd_is_zero_at_the_combined_teacher_and_its_gradient_matches_finite_differences(combine):
    rng = np.random.default_rng(1)
    teachers = rng.normal(size=(3, 4, 5)).astype(np.float32)
    gold = np.array([0, 1, 2, 3])
    tau = 3.0
    if combine == "mean_logits":
        at_teacher = teachers.mean(0)
    elif combine == "weighted":
        at_teacher = np.asarray(kd_lib.weighted_teacher_logits(jnp.asarray(teachers), jnp.asarray(gold), 0.75)[0])
    else:
        target = (kd_lib.confidence_target(jnp.asarray(teachers), jnp.asarray(gold), tau) if combine == "confidence"
                  else jax.nn.softmax(jnp.asarray(teachers) / tau, -1).mean(0))
        at_teacher = tau * np.log(np.asarray(target))
    with jax.numpy_rank_promotion("raise"):
        loss = _kd(at_teacher, teachers, combine, gold)
        if combine == "weighted":  # rows where no teacher is right compare with the gold one-hot instead
            _, right = kd_lib.weighted_teacher_logits(jnp.asarray(teachers), jnp.asarray(gold), 0.75)
            loss = jnp.where(right, loss, 0.0)
        assert float(jnp.abs(loss).max()) < 1e-5, loss

        student = rng.normal(size=(4, 5)).astype(np.float64)

        @jax.jit
        def total(s):
            return _kd(jnp.asarray(s, jnp.float32), teachers, combine, gold).sum()
        grad = np.asarray(jax.grad(total)(student.astype(np.float32)))
    eps = 1e-2
    numeric = np.zeros_like(student)
    for index in np.ndindex(student.shape):
        up, down = student.copy(), student.copy()
        up[index] += eps
        down[index] -= eps
        numeric[index] = (float(total(up)) - float(total(down))) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, atol=2e-3, rtol=1e-2)


def test_fine_tuning_head_losses_take_the_weighted_mode_on_span_and_sequence_heads():
    """finetune.head_losses with two teachers and kd.combine=weighted: sequence heads on the label, span heads
    on start and end apart, each against the weighted target."""
    from atm.objectives.finetune import head_losses

    rng = np.random.default_rng(2)
    B, L = 3, 6
    kd_config = default_config("finetune").kd
    kd_config.update(alpha=1.0, temperature=3.0, combine="weighted")
    heads = (("label", "sequence", 3), ("answer", "span", 2))
    batch = {"example_weight": np.ones(B, np.float32), "label": np.array([0, 2, 1], np.int32),
             "segment_ids": np.ones((B, L), np.int32), "token_labels": np.full((B, L), -100, np.int32),
             "start_position": np.array([1, 2, 0], np.int32), "end_position": np.array([2, 3, 4], np.int32)}
    student = {"label": rng.normal(size=(B, 3)).astype(np.float32), "answer": rng.normal(size=(B, L, 2)).astype(np.float32)}
    teachers = {"label": rng.normal(size=(2, B, 3)).astype(np.float32),
                "answer": rng.normal(size=(2, B, L, 2)).astype(np.float32)}
    _, sums = head_losses(heads, student, batch, 1.0, kd_config, teachers, ("a", "b"))

    def kl(target, s):
        log_q = jax.nn.log_softmax(jnp.asarray(s) / 3.0, -1)
        return 9.0 * jnp.sum(jax.scipy.special.xlogy(target, target) - target * log_q, -1)

    def weighted(t, gold):
        return kd_lib.weighted_target(jnp.asarray(t), jnp.asarray(gold), 3.0, 0.75)
    expected = (kl(weighted(teachers["label"], batch["label"]), student["label"])
                + 0.5 * (kl(weighted(teachers["answer"][..., 0], batch["start_position"]), student["answer"][..., 0])
                         + kl(weighted(teachers["answer"][..., 1], batch["end_position"]), student["answer"][..., 1])))
    np.testing.assert_allclose(float(sums["kd_loss"]), float(expected.sum()), rtol=1e-5)


# ----------------------------------------------------------------------------- a tiny multi-task setup
@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Three BIO folders (a and b share their labels, c has other intents) and two teachers fine-tuned on a."""
    root = tmp_path_factory.mktemp("multitask")
    a = write_bio_folder(root / "fa", n_train=48, n_eval=16, seed=0)
    b = write_bio_folder(root / "fb", n_train=48, n_eval=16, seed=1)
    c = write_bio_folder(root / "fc", n_train=48, n_eval=16, seed=2)
    for split in ("train", "dev", "test"):
        labels = c / split / "label"
        labels.write_text("\n".join("other_" + x for x in labels.read_text().split()) + "\n")
    teachers = []
    for seed in (0, 1):
        workdir = str(root / f"teacher{seed}")
        overrides = {"train.steps": 3, "checkpoint.every": 3, "train.eval_every": 3, "seed": seed,
                     "model.hidden_size": 32, "model.ffn_size": 64, "model.vocab_size": 200}
        if seed:
            overrides["data.vocab"] = os.path.join(teachers[0], "vocab.model")
        train.train_and_evaluate(finetune_config(a, **overrides), workdir)
        teachers.append(workdir)
    return {"root": root, "a": str(a), "b": str(b), "c": str(c), "teachers": teachers,
            "vocab": os.path.join(teachers[0], "vocab.model")}


def multitask_config(setup, **overrides):
    c = default_config("multitask")
    c.model.update(num_layers=2, hidden_size=32, num_heads=4, ffn_size=64, vocab_size=200, max_positions=64)
    c.data.update(vocab_size=200, seq_len=24, vocab=setup["vocab"])
    c.multitask.update(tasks=",".join(setup[k] for k in "abc"), tasks_per_step=2)
    c.kd.update(temperature=3.0, alpha=0.5, combine="weighted")
    c.finetune.eval_split = "validation"
    c.train.update(steps=4, batch_size=16, log_every=1, eval_every=4, eval_batches=-1)
    c.optimizer.update(learning_rate=3e-3, warmup_steps=1)
    c.checkpoint.every = 4
    return apply_overrides(c, overrides)


def test_heads_are_shared_by_equal_label_sets_and_updated_only_by_their_own_rows(setup, tmp_path):
    config = multitask_config(setup, **{"multitask.teachers": f"fa={'+'.join(setup['teachers'])}"})
    built = train.build(config, str(tmp_path / "w"), devices=jax.devices()[:1])
    objective = built.objective
    assert [h for h, _, _ in objective.heads] == ["fa_intent", "fa_slots", "fc_intent", "fc_slots"]
    assert objective.head_maps[1] == {"intent": "fa_intent", "slots": "fa_slots"}  # b shares a's heads
    state = built.trainer.init_state()
    frozen = built.trainer.frozen
    batch = {k: jnp.asarray(v) for k, v in built.train_data.batch(0).items()}
    grad_fn = jax.jit(jax.grad(lambda p, b: objective.loss(p, frozen, b, jax.random.key(0), True)[0]))
    for task, own, other in ((2, "fc", "fa"), (0, "fa", "fc")):  # one-task batches: c's rows, then a's
        grads = grad_fn(state.params, dict(batch, task_id=jnp.full_like(batch["task_id"], task)))
        for name in ("intent", "slots"):
            assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree_util.tree_leaves(grads[f"{other}_{name}"]))
            assert all(float(jnp.abs(g).max()) > 0.0 for g in jax.tree_util.tree_leaves(grads[f"{own}_{name}"]))
        assert all(float(jnp.abs(g).max()) > 0.0 for g in jax.tree_util.tree_leaves(grads["encoder"]))
    _, sums = objective.loss(state.params, frozen, batch, jax.random.key(0), True)
    assert {"kd_loss", "kd_loss_fa", "kd_loss_teacher0_fa", "kd_loss_teacher1_fa"} <= set(sums)


def test_multitask_step_on_data2_fsdp2_tensor2_equals_one_device(setup, tmp_path):
    config = multitask_config(setup, **{"multitask.teachers": f"fa={'+'.join(setup['teachers'])}",
                                        "model.hidden_dropout": 0.0, "model.attention_dropout": 0.0})
    losses_1, params_1 = run_steps(config, str(tmp_path / "one"), devices=jax.devices()[:1], steps=2)
    config.mesh.update(data=2, fsdp=2, tensor=2)
    losses_8, params_8 = run_steps(config, str(tmp_path / "eight"), devices=jax.devices()[:8], steps=2)
    np.testing.assert_allclose(losses_8, losses_1, atol=1e-5, rtol=1e-5)
    for x, y in zip(jax.tree_util.tree_leaves(params_8), jax.tree_util.tree_leaves(params_1)):
        np.testing.assert_allclose(x, y, atol=1e-5)


# ----------------------------------------------------------------------------- the command line
def run_cli(setup, workdir, *extra, steps=8):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    cmd = [sys.executable, "-m", "atm.main", "--config=configs/road/multitask.py", f"--workdir={workdir}",
           f"--config.multitask.tasks={setup['a']},{setup['b']},{setup['c']}", "--config.multitask.tasks_per_step=1",
           f"--config.multitask.teachers=fa={'+'.join(setup['teachers'])}", f"--config.data.vocab={setup['vocab']}",
           "--config.data.vocab_size=200", "--config.model.vocab_size=200", "--config.model.num_layers=1",
           "--config.model.hidden_size=32", "--config.model.num_heads=4", "--config.model.ffn_size=64",
           "--config.data.seq_len=24", "--config.model.max_positions=64", "--config.train.batch_size=8",
           f"--config.train.steps={steps}", "--config.train.log_every=1", "--config.train.eval_every=8",
           "--config.checkpoint.every=4", "--config.optimizer.warmup_steps=2", "--config.finetune.squad_version=1",
           "--config.seed=1", *extra]  # seed 1 draws fb, fb, fa, fc | fa, fb, fc, fa: switches across the kill
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def straight_run(setup):
    workdir = str(setup["root"] / "mt_straight")
    result = run_cli(setup, workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


@pytest.mark.heavy  # minutes: a killed subprocess and its rerun; the loop's resume is in test_resume
def test_sigkill_and_rerun_across_task_switches_is_bit_identical(setup, straight_run, tmp_path):
    workdir = str(tmp_path / "killed")
    killed = run_cli(setup, workdir, "--config.train.kill_at_step=4")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    resumed = run_cli(setup, workdir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resumed from checkpoint at step 4" in resumed.stdout
    a, b = metrics(straight_run), metrics(workdir)
    # the task changes across the kill (steps 4 and 5) and within each half
    drawn = [max((k for k in m if k.startswith("rows_")), key=lambda k: m[k]) for m in a]
    assert len(set(drawn[:4])) > 1 and len(set(drawn[4:])) > 1 and drawn[3] != drawn[4], drawn
    assert [m["loss"] for m in a] == [m["loss"] for m in b]  # bit for bit
    assert [m.get("kd_loss") for m in a] == [m.get("kd_loss") for m in b]
    for x, y in zip(jax.tree_util.tree_leaves(final_params(straight_run, 8)),
                    jax.tree_util.tree_leaves(final_params(workdir, 8))):
        np.testing.assert_array_equal(x, y)


def test_evaluate_scores_each_task_with_its_own_head(setup, straight_run):
    from atm import evaluate
    last = metrics(straight_run)[-1]
    result = evaluate.evaluate_run(straight_run, split="validation")
    assert [r["task"] for r in result["rows"]] == ["fa", "fb", "fc"]
    for row in result["rows"]:
        assert row["accuracy"] == pytest.approx(last[f"eval_{row['task']}_accuracy"], abs=1e-9)
        assert row["slot_f1"] == pytest.approx(last[f"eval_{row['task']}_slot_f1"], abs=1e-9)
    assert os.path.exists(os.path.join(straight_run, "eval_fc_validation.json"))
    # a folder outside the list with a's labels goes through a's head
    other = write_bio_folder(setup["root"] / "fd", n_train=48, n_eval=16, seed=5)
    row = evaluate.evaluate_run(straight_run, task=str(other), split="validation")["rows"][0]
    assert row["task"] == "fd" and 0.0 <= row["accuracy"] <= 1.0


# ----------------------------------------------------------------------------- bad input
def test_bad_input_names_the_key_before_anything_compiles(setup, tmp_path):
    def build(workdir="bad", **overrides):
        return train.build(multitask_config(setup, **overrides), str(tmp_path / workdir), devices=jax.devices()[:1])

    with pytest.raises(ValueError, match=r"config.multitask.tasks: task 'sst3' is not registered; did you mean sst2"):
        build(**{"multitask.tasks": f"{setup['a']}, sst3"})
    with pytest.raises(ValueError, match=r"config.multitask.tasks: task 'tydiqa_goldp_ar' has no training split"):
        build(**{"multitask.tasks": f"{setup['a']}, tydiqa_goldp_ar"})
    with pytest.raises(ValueError, match=r"config.multitask.tasks: the BIO folder .* has no train/"):
        build(**{"multitask.tasks": f"{setup['a']}, {tmp_path}"})
    with pytest.raises(ValueError, match=r"config.multitask.teachers: task 'sst2' is not in config.multitask.tasks"):
        build(**{"multitask.teachers": f"sst2={setup['teachers'][0]}"})
    with pytest.raises(ValueError, match=r"config.multitask.teachers: .*uses the vocabulary .* and they differ"):
        build("own_vocab", **{"multitask.teachers": f"fa={setup['teachers'][0]}", "data.vocab": ""})
    relabelled = str(tmp_path / "teacher_on_c")  # a teacher whose run says it was fine-tuned on c's labels
    shutil.copytree(setup["teachers"][0], relabelled)
    with open(os.path.join(relabelled, "config.json")) as f:
        saved = json.load(f)
    saved["finetune"]["bio_folder"] = setup["c"]
    with open(os.path.join(relabelled, "config.json"), "w") as f:
        json.dump(saved, f)
    with pytest.raises(ValueError, match=r"config.multitask.teachers: the teacher teacher_on_c .* BIO folder .*fc, "
                                         r"whose \['intent'\] labels differ from those of BIO folder .*fa"):
        build(**{"multitask.teachers": f"fa={relabelled}"})
    with pytest.raises(ValueError, match=r"config.train.batch_size=16 is not divisible by config.multitask.tasks_per_step=3"):
        build(**{"multitask.tasks_per_step": 3})
    with pytest.raises(ValueError, match=r"config.kd.combine='best'"):
        build(**{"kd.combine": "best"})
    with pytest.raises(ValueError, match=r"config.multitask.sampling='random'"):
        build(**{"multitask.sampling": "random"})


def test_fine_tuning_takes_several_teachers_with_every_combine_mode(setup, tmp_path):
    """finetune.teacher=RUN1,RUN2 with kd.combine=weighted: at kd.alpha=1 the jitted eval loss is the KD alone and
    equals head_losses on the same logits; the other modes, on the same logits, give different targets."""
    from atm.objectives.finetune import head_losses

    config = finetune_config(setup["a"], **{
        "data.vocab": setup["vocab"], "finetune.teacher": ",".join(setup["teachers"]), "kd.alpha": 1.0,
        "kd.combine": "weighted", "kd.temperature": 3.0, "model.hidden_size": 32, "model.ffn_size": 64,
        "model.vocab_size": 200, "model.num_layers": 1})
    built = train.build(config, str(tmp_path / "ft"), devices=jax.devices()[:1])
    objective, trainer = built.objective, built.trainer
    state = trainer.init_state()
    batch = trainer.global_batch(built.eval_data.batch(0))
    out = jax.device_get(trainer.eval_outputs(state.params, batch))
    assert {"kd_loss_teacher0", "kd_loss_teacher1"} <= set(out)
    np.testing.assert_allclose(out["loss"], out["kd_loss"], rtol=1e-5)
    logits = objective.student_logits(state.params, batch, None, False)
    teachers = objective.teacher_logits(trainer.frozen, batch)
    figures = {}
    for combine in ("mean_probs", "mean_logits", "weighted", "confidence"):
        kd_config = config.kd.copy_and_resolve_references()
        kd_config.combine = combine
        _, sums = head_losses(objective.heads, logits, batch, 1.0, kd_config, teachers, objective.teachers.names)
        figures[combine] = float(sums["kd_loss"])
    np.testing.assert_allclose(figures["weighted"], out["kd_loss"], rtol=1e-4)
    assert len({round(v, 6) for v in figures.values()}) == 4, figures
