"""MUKA amalgamation (atm/objectives/amalgamate.py): the maths on hand-computed cases, Monte-Carlo passes
with dropout on, label subsets, and a miniature run where two teachers on disjoint label halves (one with
its own vocabulary) make a student over the union without a gold label."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from atm import train
from atm.amalgamate.demo import TEMPLATES, write_intent_folder
from atm.data import labelled
from atm.objectives import amalgamate as am
from helpers import apply_overrides


def teacher_config(folder, subset, **overrides):
    import configs.muka.teacher as teacher
    c = teacher.get_config()
    c.model.update(num_layers=2, hidden_size=64, num_heads=4, ffn_size=128, vocab_size=200, max_positions=64,
                   hidden_dropout=0.1)
    c.finetune.update(task="", bio_folder=str(folder), label_subset=subset, eval_split="validation")
    c.data.update(vocab_size=200, seq_len=24)
    c.train.update(steps=100, batch_size=16, log_every=50, eval_every=100, eval_batches=-1)
    c.optimizer.update(learning_rate=3e-3, warmup_steps=10)
    c.checkpoint.every = 100
    return apply_overrides(c, overrides)


def student_config(teachers, **overrides):
    import configs.muka.amalgamate as amalgamate
    c = amalgamate.get_config()
    c.model.update(num_layers=2, hidden_size=64, num_heads=4, ffn_size=128, vocab_size=200, max_positions=64)
    c.amalgamate.update(teachers=teachers, mc_passes=4)
    c.data.update(vocab_size=200, seq_len=24)
    c.train.update(steps=150, batch_size=16, log_every=25, eval_every=150, eval_batches=-1)
    c.optimizer.update(learning_rate=3e-3, warmup_steps=10)
    c.checkpoint.every = 150
    return apply_overrides(c, overrides)


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """Two teachers on the two halves of the six intents; the second shallower and narrower, with its own
    vocabulary (trained on its half's text, at most 150 pieces)."""
    root = tmp_path_factory.mktemp("muka")
    folder = write_intent_folder(root / "intents")
    t1, t2 = str(root / "t1"), str(root / "t2")
    s1 = train.train_and_evaluate(teacher_config(folder, "part:1/2"), t1)
    s2 = train.train_and_evaluate(teacher_config(folder, "part:2/2", **{
        "data.vocab_size": 150, "model.vocab_size": 150, "model.num_layers": 1, "model.hidden_size": 48,
        "model.ffn_size": 96}), t2)
    return {"root": root, "folder": folder, "t1": t1, "t2": t2, "summaries": (s1, s2)}


# ------------------------------------------------------------------------------- the maths, by hand
def test_scores_targets_margin_and_loss_by_hand():
    with jax.numpy_rank_promotion("raise"):
        # the score: 1 for one-hot, 0 for uniform, by hand for p = (0.5, 0.25, 0.25)
        s = am.confidence_score(jnp.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.25, 0.25]]))
        h = -(0.5 * np.log(0.5) + 2 * 0.25 * np.log(0.25))
        np.testing.assert_allclose(np.asarray(s), [1.0, 0.0, 1 - h / np.log(3)], atol=1e-6)
        # two teachers: C_1 = {0, 1}, C_2 = {2, 3, 4}; one row
        p1, p2 = np.array([[0.8, 0.2]]), np.array([[0.1, 0.3, 0.6]])
        padded = np.asarray(am.zero_pad([jnp.asarray(p1), jnp.asarray(p2)], 5))
        np.testing.assert_allclose(padded, [[[0.8, 0.2, 0, 0, 0]], [[0, 0, 0.1, 0.3, 0.6]]], atol=1e-7)
        scores = jnp.array([[0.7], [0.4]])  # (T, B)
        hard = np.asarray(am.amalgamated_target(jnp.asarray(padded), scores, "hard", 0.2))
        np.testing.assert_allclose(hard, [[0.8, 0.2, 0, 0, 0]], atol=1e-7)
        w1 = np.exp(0.7 / 0.2) / (np.exp(0.7 / 0.2) + np.exp(0.4 / 0.2))  # softmax(s/τ_s)
        soft = np.asarray(am.amalgamated_target(jnp.asarray(padded), scores, "soft", 0.2))
        np.testing.assert_allclose(soft, [[0.8 * w1, 0.2 * w1, 0.1 * (1 - w1), 0.3 * (1 - w1), 0.6 * (1 - w1)]],
                                   atol=1e-6)
        np.testing.assert_allclose(np.asarray(am.score_margin(scores)), [0.3 + 1e-6], atol=1e-7)
        np.testing.assert_allclose(np.asarray(am.score_margin(jnp.array([[0.2], [0.9], [0.5]]))), [0.4 + 1e-6],
                                   atol=1e-7)
        # the loss: m·KL(q ‖ σ(z_S)) with the teachers' logits log p (τ = 1: σ(z_j) = p_j)
        z_s = np.array([[0.3, -0.2, 1.0, 0.0, 0.5]])
        log_q_s = z_s - np.log(np.exp(z_s).sum())
        kl = lambda q: float(np.sum(np.where(q > 0, q * np.log(np.where(q > 0, q, 1)), 0) - q * log_q_s))  # noqa: E731
        logits = [jnp.log(jnp.asarray(p1)), jnp.log(jnp.asarray(p2))]
        for target, q in (("hard", hard), ("soft", soft)):
            loss, m, kd = am.muka_loss(jnp.asarray(z_s), logits, scores, target, True, 1.0, 0.2)
            np.testing.assert_allclose(float(kd[0]), kl(q[0]), rtol=1e-5)
            np.testing.assert_allclose(float(loss[0]), (0.3 + 1e-6) * kl(q[0]), rtol=1e-5)
        # vanilla KD: the softmax of the concatenated logits; UHC: Σ_j KL(p_j ‖ student renormalised on C_j)
        concat = np.concatenate([np.log(p1), np.log(p2)], -1)
        q_vanilla = np.exp(concat) / np.exp(concat).sum()
        np.testing.assert_allclose(float(am.vanilla_kd_loss(jnp.asarray(z_s), logits, 1.0)[0]), kl(q_vanilla[0]),
                                   rtol=1e-5)
        uhc = 0.0
        for p, cols in ((p1, slice(0, 2)), (p2, slice(2, 5))):
            log_r = z_s[:, cols] - np.log(np.exp(z_s[:, cols]).sum())
            uhc += float(np.sum(p * (np.log(p) - log_r)))
        np.testing.assert_allclose(float(am.uhc_loss(jnp.asarray(z_s), logits, 1.0)[0]), uhc, rtol=1e-5)


def test_zero_targets_give_a_finite_loss_and_gradient():
    """A hard target is exactly 0 on the other teacher's labels; one teacher certain to the last bit too."""
    logits = [jnp.array([[50.0, -50.0]]), jnp.array([[0.0, 1.0, -60.0]])]  # σ underflows to exact zeros
    scores = jnp.array([[1.0], [0.0]])

    def f(z_s):
        return am.muka_loss(z_s, logits, scores, "hard", True, 1.0, 0.2)[0].sum()
    z = jnp.array([[0.1, 0.2, 0.3, 0.4, 0.5]])
    value, grad = jax.value_and_grad(f)(z)
    assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(grad)))
    # the gradient of KL(q ‖ σ(z)) is σ(z) − q
    q = np.array([1.0, 0.0, 0.0, 0.0, 0.0])
    expected = (np.exp(np.asarray(z)) / np.exp(np.asarray(z)).sum() - q) * (1.0 + 1e-6)
    np.testing.assert_allclose(np.asarray(grad), expected, rtol=1e-5, atol=1e-6)


def test_one_teacher_over_every_label_is_plain_kd():
    from atm.distill.kd import kd_per_position
    rng = np.random.default_rng(0)
    z_t, z_s = jnp.asarray(rng.normal(size=(4, 6))), jnp.asarray(rng.normal(size=(4, 6)))
    scores = jnp.asarray(rng.uniform(size=(1, 4)))
    plain = np.asarray(kd_per_position(z_s, z_t, "kl", 1.0))
    for target in ("hard", "soft"):
        loss, m, _ = am.muka_loss(z_s, [z_t], scores, target, True, 1.0, 0.2)
        np.testing.assert_allclose(np.asarray(m), 1.0)
        np.testing.assert_allclose(np.asarray(loss), plain, rtol=1e-6)


# ------------------------------------------------------------------------------- label subsets
def test_label_subset_by_scenario_part_and_list(tmp_path):
    names = tuple(sorted(TEMPLATES))  # home_alarm, home_lights, home_music, travel_fare, travel_flight, travel_hotel
    assert labelled.select_labels("scenario:home", names) == names[:3]
    assert labelled.select_labels("part:2/2", names) == names[3:]
    assert labelled.select_labels("part:2/4", names) == names[2:3]  # bounds 0, 2, 3, 4, 6
    assert labelled.select_labels("travel_fare, home_alarm", names) == ("home_alarm", "travel_fare")
    for bad, match in (("scenario:garden", r"label_subset='scenario:garden'.*unknown scenario.*\['garden'\]"),
                       ("home_alarm,nope", r"label_subset='home_alarm,nope'.*unknown label.*\['nope'\]"),
                       ("part:3/2", r"part:3/2.*1 <= k <= n"), ("part:x", "write part:k/n")):
        with pytest.raises(ValueError, match=match):
            labelled.select_labels(bad, names)
    # on a BIO folder: only the subset's rows, and a head over the subset
    folder = write_intent_folder(tmp_path / "f", n_train=60, n_eval=20)
    c = teacher_config(folder, "scenario:travel")
    raws, names_kept, kind = labelled.raw_rows(c.finetune, "train", None, False)
    rows = list(raws)
    assert names_kept["intent"] == ("travel_fare", "travel_flight", "travel_hotel") and kind == "intent_slots"
    assert rows and all(r["intent"].startswith("travel_") for r in rows)
    all_rows = list(labelled.raw_rows(c.finetune, "train", None, False, label_subset=False)[0])
    assert len(all_rows) == 60 > len(rows)
    c.finetune.label_subset = "scenario:garden"
    with pytest.raises(ValueError, match="config.finetune.label_subset"):
        labelled.label_names_and_kind(c.finetune, None)


# ------------------------------------------------------------------------------- with real teachers
@pytest.fixture(scope="module")
def student(teachers):
    """The amalgamated student (online scores, MUKA soft + margin), trained in process."""
    config = student_config(f"{teachers['t1']},{teachers['t2']}")
    workdir = str(teachers["root"] / "student")
    summary = train.train_and_evaluate(config, workdir)
    return config, workdir, summary


def test_two_teachers_on_disjoint_halves_make_a_student_over_the_union(teachers, student):
    import json
    from atm import evaluate
    s1, s2 = teachers["summaries"]
    assert s1["eval_accuracy"] > 0.9 and s2["eval_accuracy"] > 0.9, (s1, s2)  # each on its own half
    config, workdir, summary = student
    # six intents: chance is 1/6; the student never saw a gold label
    assert summary["eval_accuracy"] > 0.6, summary
    assert summary["eval_accuracy_t1"] > 0.25 and summary["eval_accuracy_t2"] > 0.25, summary  # chance: 1/6
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        losses = [r["loss"] for r in map(json.loads, f) if "loss" in r]
    assert losses[-1] < 0.5 * losses[0], losses
    result = evaluate.evaluate_run(workdir, split="test")
    row = result["rows"][0]
    assert row["task"] == "union" and row["rows"] == 120
    assert row["accuracy"] > 0.6 and {"accuracy_t1", "accuracy_t2"} <= set(row)
    assert os.path.exists(os.path.join(workdir, "eval_union_test.json"))
    with pytest.raises(ValueError, match="amalgamate run"):
        evaluate.evaluate_run(workdir, task="atis", split="test")


def built_student(teachers, tmp_path, devices=None, **overrides):
    config = student_config(f"{teachers['t1']},{teachers['t2']}", **overrides)
    return train.build(config, str(tmp_path), devices=devices)


def test_teacher_with_another_vocabulary_sees_its_own_tokenizer_ids(teachers, tmp_path):
    built = built_student(teachers, tmp_path / "s", devices=jax.devices()[:1])
    objective, data = built.objective, built.train_data
    plan2 = objective.plans[1]
    from atm.distill.teacher import vocabulary_digest
    # t2 trained its vocabulary on its own half's text (and capped at 150 pieces): another vocabulary
    assert vocabulary_digest(plan2.run.vocab_path) != vocabulary_digest(built.vocab.path)
    # the teacher's own fine-tuning pipeline, on every row (label subset off), gives the ids its batch holds
    ft = teacher_config(teachers["folder"], "").finetune
    split = labelled.load_split(ft, "train", plan2.vocab, None, False)
    batch = data.batch(0)
    different = 0
    for row, index in enumerate(batch["example_index"]):
        ids = [plan2.vocab.cls_id] + list(split.examples[index]["input_ids"])[:22] + [plan2.vocab.sep_id]
        np.testing.assert_array_equal(batch["teacher1_input_ids"][row][:len(ids)], ids)
        assert (batch["teacher1_input_ids"][row][len(ids):] == plan2.vocab.pad_id).all()
        different += not np.array_equal(batch["teacher1_input_ids"][row], batch["input_ids"][row])
    assert different > 0  # the student's own vocabulary gives other ids


def test_mc_passes_differ_with_dropout_and_are_reproducible(teachers, tmp_path):
    import dataclasses
    from atm.distill import teacher as teacher_lib
    from atm.models.heads import EncoderWithHeads
    built = built_student(teachers, tmp_path / "s", devices=jax.devices()[:1])
    objective, trainer = built.objective, built.trainer
    frozen = trainer.frozen
    batch = {k: jnp.asarray(v) for k, v in built.train_data.batch(0).items()}
    plan = objective.plans[0]
    teachers_t1 = objective.teachers[plan.name]
    ids, seg = batch["teacher0_input_ids"][:4], batch["teacher0_segment_ids"][:4]
    keys = am.row_keys(0, 0, batch["example_index"][:4])

    def passes(t):
        def one(k):
            return jax.vmap(lambda i, s, key: t.apply(frozen, plan.name, i[None], s[None], rng=jax.random.fold_in(
                key, k))[plan.head][0])(ids, seg, keys)
        return np.stack([np.asarray(one(k)) for k in range(3)])
    with trainer.activate():
        logits_KxBxC = passes(teachers_t1)
        again = passes(teachers_t1)
        # dropout 0 (the same teacher built without dropout): every pass is the deterministic forward
        ids0 = jnp.zeros((1, 24), jnp.int32)
        no_dropout = teacher_lib.Teachers(
            f"{plan.name}={plan.run.directory}", "test", ("finetune",), "float32",
            lambda cfg, det: EncoderWithHeads(dataclasses.replace(cfg, hidden_dropout=0.0, attention_dropout=0.0),
                                              ((plan.head, "sequence", 3),), deterministic=det), (ids0,) * 4)
        frozen0 = no_dropout.shard(trainer.mesh)
        still = []
        for k in range(3):
            still.append(np.asarray(jax.vmap(lambda i, s, key: no_dropout.apply(
                frozen0, plan.name, i[None], s[None], rng=jax.random.fold_in(key, k))[plan.head][0])(ids, seg, keys)))
        deterministic = np.asarray(no_dropout.apply(frozen0, plan.name, ids, seg)[plan.head])
    assert np.abs(logits_KxBxC[0] - logits_KxBxC[1]).max() > 1e-3  # dropout is on
    np.testing.assert_array_equal(logits_KxBxC, again)  # same seed, same masks
    for s in still:
        np.testing.assert_allclose(s, deterministic, atol=1e-5)
    # the objective's scores: in [0, 1], reproducible from the seed
    score = jax.jit(objective.teacher_scores)
    with trainer.activate():
        s1, s2 = np.asarray(score(frozen, batch)), np.asarray(score(frozen, batch))
    np.testing.assert_array_equal(s1, s2)
    assert s1.shape == (2, 16) and (s1 >= -1e-6).all() and (s1 <= 1 + 1e-6).all()


def test_cached_scores_equal_online_scores_and_belong_to_their_stream(teachers, tmp_path):
    built = built_student(teachers, tmp_path / "s", **{"amalgamate.scores": "cached"})
    trainer = built.trainer
    frozen = trainer.frozen  # the automatic first pass writes WORKDIR/amalgamate_scores.npz
    path = str(tmp_path / "s" / am.SCORES_FILE)
    assert os.path.exists(path)
    batch = built.train_data.batch(3)
    online = jax.jit(built.objective.teacher_scores)
    with trainer.activate():
        scores_TxB = np.asarray(online(frozen, trainer.global_batch(batch)))
    np.testing.assert_allclose(batch["teacher_scores"], scores_TxB.T, atol=1e-5)
    # the loss reads them: a cached-score step equals an online-score step
    online_built = built_student(teachers, tmp_path / "o")
    state = trainer.init_state()
    with trainer.activate():
        cached_loss = jax.jit(lambda p, f, b: trainer.objective.loss(p, f, b, None, False))(
            state.params, frozen, trainer.global_batch(batch))
    plain = {k: v for k, v in batch.items() if k != "teacher_scores"}
    with online_built.trainer.activate():
        online_loss = jax.jit(lambda p, f, b: online_built.objective.loss(p, f, b, None, False))(
            state.params, frozen, online_built.trainer.global_batch(plain))
    np.testing.assert_allclose(float(cached_loss[0]), float(online_loss[0]), rtol=1e-5)
    # another stream (another K): an error naming the key, before any step
    other = built_student(teachers, tmp_path / "x", **{"amalgamate.scores": "cached", "amalgamate.mc_passes": 3,
                                                        "amalgamate.scores_file": path})
    with pytest.raises(ValueError, match=r"config.amalgamate.scores_file=.*another stream: mc_passes is 4 there and 3"):
        other.trainer.frozen  # noqa: B018


@pytest.fixture(scope="module")
def one_device_run(teachers, tmp_path_factory):
    """(losses, params) of two student steps on one device."""
    from helpers import run_steps
    return run_steps(student_config(f"{teachers['t1']},{teachers['t2']}"), str(tmp_path_factory.mktemp("one")),
                     jax.devices()[:1], steps=2)


def test_gold_labels_are_never_read(teachers, one_device_run, tmp_path):
    """The same teachers pointed at a copy of their data whose training labels are shuffled: the student's
    parameters are bit-identical."""
    import json
    import shutil
    from helpers import run_steps
    shuffled = write_intent_folder(tmp_path / "shuffled", shuffle_labels=True)
    original_labels = (teachers["folder"] / "train" / "label").read_text()
    assert (shuffled / "train" / "label").read_text() != original_labels
    assert (shuffled / "train" / "seq.in").read_text() == (teachers["folder"] / "train" / "seq.in").read_text()
    copies = []
    for name in ("t1", "t2"):
        copy = tmp_path / name
        shutil.copytree(teachers[name], copy)
        saved = json.loads((copy / "config.json").read_text())
        saved["finetune"]["bio_folder"] = str(shuffled)
        (copy / "config.json").write_text(json.dumps(saved))
        copies.append(str(copy))
    _, params = one_device_run
    _, same = run_steps(student_config(f"t1={copies[0]},t2={copies[1]}"), str(tmp_path / "b"), jax.devices()[:1],
                        steps=2)
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(same)):
        np.testing.assert_array_equal(a, b)
    row = am.text_only({"text": "a b", "words": ["a", "b"], "intent": "x"})
    with pytest.raises(KeyError, match="only the text"):
        row["intent"]  # noqa: B018


def test_sharded_mesh_equals_one_device(teachers, one_device_run, tmp_path):
    from helpers import run_steps
    config = student_config(f"{teachers['t1']},{teachers['t2']}", **{"mesh.data": 2, "mesh.fsdp": 2,
                                                                    "mesh.tensor": 2})
    losses8, params8 = run_steps(config, str(tmp_path / "m8"), steps=2)
    losses1, params1 = one_device_run
    np.testing.assert_allclose(losses8, losses1, rtol=1e-4)
    for a, b in zip(jax.tree_util.tree_leaves(params8), jax.tree_util.tree_leaves(params1)):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_bad_input_names_the_key(teachers, tmp_path):
    from atm import config as atm_config
    both = f"{teachers['t1']},{teachers['t2']}"
    c = student_config(both, **{"amalgamate.mc_passes": 0})
    with pytest.raises(ValueError, match=r"config.amalgamate.mc_passes=0 is out of range"):
        atm_config.validate(c)
    for key, value in (("method", "mkd"), ("target", "medium"), ("scores", "sometimes")):
        with pytest.raises(ValueError, match=rf"config.amalgamate.{key}='{value}'"):
            built_student(teachers, tmp_path / key, **{f"amalgamate.{key}": value})
    with pytest.raises(ValueError, match=r"config.amalgamate.teachers: the teachers t1 and t1_2 share the labels "
                                         r"\['home_alarm', 'home_lights', 'home_music'\]"):
        train.build(student_config(f"{teachers['t1']},{teachers['t1']}"), str(tmp_path / "overlap"))
    # a run that is not a fine-tuned classifier: an MLM run (its saved config says so), a fine-tuned NER run
    import json
    import shutil
    for name, edit, match in (("mlm", {"objective": "mlm"}, r"config.amalgamate.teachers=.*mlm.*is a 'mlm' run"),
                              ("ner", {"finetune": {"task": "conll2003", "bio_folder": "", "label_subset": ""}},
                               r"config.amalgamate.teachers \(ner=.*\) was fine-tuned on a 'ner' task")):
        shutil.copytree(teachers["t2"], tmp_path / name)
        saved = json.loads((tmp_path / name / "config.json").read_text())
        for key, value in edit.items():
            saved[key] = {**saved[key], **value} if isinstance(value, dict) else value
        (tmp_path / name / "config.json").write_text(json.dumps(saved))
        with pytest.raises(ValueError, match=match):
            train.build(student_config(f"{teachers['t1']},{name}={tmp_path / name}"), str(tmp_path / "bad"))


@pytest.mark.heavy  # minutes: a killed subprocess and its rerun; the loop's resume is in test_resume
def test_cli_sigkill_and_rerun_is_bit_identical(teachers, tmp_path):
    """The user's command, with cached scores (the automatic first pass): killed after step 3 and rerun, the run
    equals a straight one bit for bit."""
    import json
    import signal
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    small = ["--config.model.num_layers=2", "--config.model.hidden_size=64", "--config.model.num_heads=4",
             "--config.model.ffn_size=128", "--config.model.vocab_size=200", "--config.model.max_positions=64",
             "--config.data.vocab_size=200", "--config.data.seq_len=24", "--config.train.batch_size=16",
             "--config.train.steps=6", "--config.train.log_every=1", "--config.checkpoint.every=3",
             "--config.train.eval_every=6", "--config.train.eval_batches=1", "--config.amalgamate.mc_passes=2",
             "--config.amalgamate.scores=cached", f"--config.amalgamate.teachers={teachers['t1']},{teachers['t2']}"]
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")

    def run(workdir, *extra):
        return subprocess.run([sys.executable, "-m", "atm.main", "--config=configs/muka/amalgamate.py",
                               f"--workdir={workdir}", *small, *extra], cwd=root, env=env, capture_output=True,
                              text=True, timeout=600)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    first = run(straight)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Scored 480 training rows with 2 Monte-Carlo passes" in first.stdout
    dead = run(killed, "--config.train.kill_at_step=3")
    assert dead.returncode == -signal.SIGKILL, dead.stderr[-3000:]
    again = run(killed)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Resumed from checkpoint at step 3" in again.stdout and "Scored" not in again.stdout

    def records(workdir):
        with open(workdir / "metrics.jsonl") as f:
            return [json.loads(line) for line in f]
    a, b = records(straight), records(killed)
    assert [m["step"] for m in a] == [m["step"] for m in b] == list(range(1, 7))
    assert [m["loss"] for m in a] == [m["loss"] for m in b]
    assert [m.get("eval_accuracy") for m in a] == [m.get("eval_accuracy") for m in b]


def test_teachers_of_two_data_sets_make_one_student_over_both(teachers, tmp_path):
    """A teacher on the generated intents' home half and one on another data set (ATIS-like flight / airfare /
    weather): the student covers both label sets and reads both texts."""
    from test_finetune import write_bio_folder
    other = write_bio_folder(tmp_path / "mini_atis", n_train=64, n_eval=16)
    t3 = str(tmp_path / "t3")
    train.train_and_evaluate(teacher_config(other, "", **{"train.steps": 4, "checkpoint.every": 4,
                                                          "train.eval_every": 4}), t3)
    built = train.build(student_config(f"{teachers['t1']},t3={t3}"), str(tmp_path / "s"), devices=jax.devices()[:1])
    union = built.objective.label_names["label"]
    assert union == ("home_alarm", "home_lights", "home_music", "airfare", "flight", "weather")
    assert built.train_data.num_rows == 480 + 64  # both training texts
    # evaluation rows keep their gold labels: the travel_* rows of the first data set are no teacher's, left out
    outside = built.data_stats["data_eval_rows_outside_union"]
    assert outside > 0 and built.eval_data.num_rows + outside == 120 + 16
    gold = built.eval_data.arrays["label"]
    assert set(gold[-16:]) <= {3, 4, 5} and set(gold[:-16]) <= {0, 1, 2}
    from helpers import run_steps
    losses, _ = run_steps(built.config, str(tmp_path / "s"), jax.devices()[:1], steps=1)
    assert np.isfinite(losses).all()
