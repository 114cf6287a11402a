"""MLM distillation: the KD loss, online vs offline teacher logits, sharded vs one device, clear errors."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import ml_collections
import pytest

from atm import config as atm_config
from atm import sharding, train
from atm.config import default_config
from atm.data import sources
from atm.data.vocab import train_sentencepiece
from atm.distill import cache as cache_lib
from atm.distill.kd import kd_per_position
from atm.objectives.distill import dense_from_top_k
from helpers import apply_overrides, tiny_config

STEPS = 3


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    """A tiny MLM teacher run (2 layers × 64)."""
    workdir = tmp_path_factory.mktemp("teacher")
    train.train_and_evaluate(tiny_config(**{"train.steps": 2, "checkpoint.every": 2, "train.eval_every": 2}),
                             str(workdir))
    return str(workdir)


def distill_config(teacher, **overrides):
    """A distill config on the teacher's stream: a 2 × 32 student (a quarter of the teacher's width² )."""
    tiny = tiny_config()
    c = default_config("distill")
    for section in ("data", "train", "optimizer", "checkpoint"):
        c[section].update(tiny[section].to_dict())
    c.model.update(tiny.model.to_dict())
    c.model.update(hidden_size=32, num_heads=4, ffn_size=64)
    c.train.update(steps=STEPS, eval_every=STEPS, eval_batches=2)
    c.distill.teacher = teacher
    return apply_overrides(c, overrides)


def run_distill(config, workdir, devices=None):
    """(per-step losses, final params) of `config.train.steps` in-process steps on a mesh over `devices`."""
    built = train.build(config, workdir, devices=devices)
    trainer, train_data = built.trainer, built.train_data
    state = trainer.init_state()
    losses = []
    for step in range(config.train.steps):
        state, metrics = trainer.train_step(state, trainer.global_batch(train_data.batch(step)))
        losses.append(float(metrics["loss"]))
    return np.array(losses), jax.device_get(state.params)


@pytest.mark.parametrize("kind", ["kl", "mse"])
def test_kd_loss_is_zero_for_equal_logits_and_its_gradient_matches_finite_differences(kind):
    rng = np.random.default_rng(0)
    teacher = jnp.asarray(rng.normal(size=(3, 7)) * 2, jnp.float32)
    np.testing.assert_allclose(kd_per_position(teacher, teacher, kind, 2.0), 0.0, atol=1e-6)
    student = np.asarray(rng.normal(size=(3, 7)), np.float64)

    def total(s):
        return float(jnp.sum(kd_per_position(jnp.asarray(s, jnp.float32), teacher, kind, 2.0)))
    grad = np.asarray(jax.grad(lambda s: jnp.sum(kd_per_position(s, teacher, kind, 2.0)))(
        jnp.asarray(student, jnp.float32)))
    eps = 1e-2
    for index in [(0, 0), (1, 3), (2, 6)]:
        up, down = student.copy(), student.copy()
        up[index] += eps
        down[index] -= eps
        numeric = (total(up) - total(down)) / (2 * eps)
        assert abs(numeric - grad[index]) < 2e-3 * max(1.0, abs(numeric)), (index, numeric, grad[index])


def test_top_k_with_the_whole_vocabulary_is_the_dense_loss():
    rng = np.random.default_rng(1)
    student, teacher = (jnp.asarray(rng.normal(size=(2, 4, 11)), jnp.float32) for _ in range(2))
    values, ids = jax.lax.top_k(teacher, 11)
    dense, present = dense_from_top_k(values, ids, 11)
    np.testing.assert_array_equal(np.asarray(dense), np.asarray(teacher))
    for kind in ("kl", "mse"):
        np.testing.assert_allclose(kd_per_position(student, dense, kind, 2.0, present),
                                   kd_per_position(student, teacher, kind, 2.0), rtol=1e-5, atol=1e-6)
    # top-3: the teacher distribution is renormalised over its 3 kept entries
    values, ids = jax.lax.top_k(teacher, 3)
    _, present = dense_from_top_k(values, ids, 11)
    assert int(present.sum()) == 2 * 4 * 3


def test_student_equal_to_teacher_has_zero_kd_and_hidden_loss(teacher_dir, tmp_path):
    config = distill_config(teacher_dir, **{"distill.hidden_weight": 1.0, "distill.layer_map": "first_k"})
    config.model.update(tiny_config().model.to_dict())  # the teacher's own shape
    built = train.build(config, str(tmp_path), devices=jax.devices()[:1])
    objective, trainer, train_data = built.objective, built.trainer, built.train_data
    assert objective.projection is None  # same width: the identity
    [teacher_params] = jax.device_get(trainer.frozen).values()  # frozen holds {teacher name: params}
    out = trainer.eval_outputs(teacher_params, trainer.global_batch(train_data.batch(0)))
    weight = float(out["weight"])
    assert weight > 0
    assert abs(float(out["kd_loss"])) / weight < 1e-5
    assert abs(float(out["hidden_loss"])) / weight < 1e-9
    np.testing.assert_allclose(float(out["loss"]), 0.5 * float(out["mlm_loss"]) + float(out["hidden_loss"]),
                               rtol=1e-5, atol=1e-5)


def test_distillation_step_on_8_devices_equals_one_device(teacher_dir, tmp_path):
    # Teacher and student (with the hidden-state projection, widths 64 vs 32) sharded data×fsdp×tensor.
    overrides = {"distill.hidden_weight": 0.5, "model.hidden_dropout": 0.1}
    one, one_params = run_distill(distill_config(teacher_dir, **overrides), str(tmp_path / "one"), jax.devices()[:1])
    config = distill_config(teacher_dir, **overrides)
    config.mesh.update(data=2, fsdp=2, tensor=2)
    eight, eight_params = run_distill(config, str(tmp_path / "eight"))
    np.testing.assert_allclose(eight, one, rtol=1e-5)
    assert "distill_projection" in one_params
    assert one[-1] < one[0]


def test_offline_top_k_cache_reproduces_the_online_run(teacher_dir, tmp_path):
    config = distill_config(teacher_dir)
    meta = cache_lib.write(config, teacher_dir, str(tmp_path / "cache"), top_k=config.model.vocab_size)
    assert meta["steps"] == STEPS and meta["eval_batches"] == 2
    online, _ = run_distill(config, str(tmp_path / "online"), jax.devices()[:1])
    # the offline run goes through the whole loop (8 devices, evaluation included)
    offline_config = distill_config("", **{"distill.cache": str(tmp_path / "cache"), "train.log_every": 1})
    summary = train.train_and_evaluate(offline_config, str(tmp_path / "offline"))
    with open(tmp_path / "offline" / "metrics.jsonl") as f:
        offline = [r["loss"] for r in map(json.loads, f) if "loss" in r]
    np.testing.assert_allclose(offline, online, atol=1e-3)
    assert summary["eval_kd_loss"] > 0

    # a run on another stream (seed) or longer than the cache is refused before training
    with pytest.raises(ValueError, match="another stream: data_fingerprint"):
        run_distill(distill_config("", **{"distill.cache": str(tmp_path / "cache"), "seed": 1}), str(tmp_path / "x"))
    with pytest.raises(ValueError, match="holds 3 steps"):
        run_distill(distill_config("", **{"distill.cache": str(tmp_path / "cache"), "train.steps": 4}),
                    str(tmp_path / "y"))


def test_a_different_vocabulary_is_a_clear_error(teacher_dir, tmp_path):
    other = train_sentencepiece(["ein anderes vokabular mit anderen wörtern"] * 50 + ["hello there"] * 50, 60,
                                str(tmp_path / "other"))
    config = distill_config(teacher_dir, **{"data.vocab": other.path})
    with pytest.raises(ValueError, match="vocabulary .* differ; set config.data.vocab="):
        run_distill(config, str(tmp_path / "run"), jax.devices()[:1])
    with pytest.raises(ValueError, match="config.kd.loss='kd'"):
        run_distill(distill_config(teacher_dir, **{"kd.loss": "kd"}), str(tmp_path / "run2"), jax.devices()[:1])
    with pytest.raises(FileNotFoundError, match="config.distill.teacher=.*no config.json"):
        run_distill(distill_config(str(tmp_path / "nowhere")), str(tmp_path / "run3"), jax.devices()[:1])


def test_replay_share_mixes_stage1_text_into_stage2():
    spec = sources.with_replay("massive_text", "mlm_text:0.7,xnli:0.3", 0.1)
    rates = sources.parse_task_rates(spec)
    assert rates == pytest.approx({"massive_text": 0.9, "mlm_text": 0.07, "xnli": 0.03})
    assert sources.with_replay("massive_text", "mlm_text", 0.0) == "massive_text"
    config = default_config("mlm")
    config.data.replay_share = 0.2
    with pytest.raises(ValueError, match="replay_share > 0 needs config.data.replay_tasks"):
        from atm.config import validate
        validate(config)


# ------------------------------------------------------------------ shared KD functions and several teachers
def test_distribution_kd_equals_the_logits_form_and_zero_targets_stay_finite():
    from atm.distill.kd import kl_to_student, multi_teacher_kd

    rng = np.random.default_rng(3)
    student, teacher = (jnp.asarray(rng.normal(size=(4, 7)), jnp.float32) for _ in range(2))
    with jax.numpy_rank_promotion("raise"):
        np.testing.assert_allclose(kl_to_student(jax.nn.softmax(teacher / 2.0), student, 2.0),
                                   kd_per_position(student, teacher, "kl", 2.0), rtol=1e-6, atol=1e-7)
        zero_padded = jnp.concatenate([jax.nn.softmax(teacher[:, :4]), jnp.zeros((4, 3))], -1)
        loss, grad = jax.value_and_grad(lambda s: kl_to_student(zero_padded, s, 1.0).sum())(student)
    assert np.isfinite(float(loss)) and np.isfinite(np.asarray(grad)).all()
    # several teachers: mean_probs is KL to the mean of their distributions; one teacher is kd_per_position
    teachers = jnp.asarray(rng.normal(size=(3, 4, 7)), jnp.float32)
    target = np.mean([np.asarray(jax.nn.softmax(t / 2.0)) for t in teachers], axis=0)
    log_q = np.asarray(jax.nn.log_softmax(student / 2.0))
    expected = 4.0 * np.sum(target * (np.log(target) - log_q), -1)
    np.testing.assert_allclose(multi_teacher_kd(student, teachers, "kl", 2.0, "mean_probs"), expected, rtol=1e-5)
    np.testing.assert_allclose(multi_teacher_kd(student, teachers, "kl", 2.0, "mean_logits"),
                               kd_per_position(student, teachers.mean(0), "kl", 2.0), rtol=1e-6)
    np.testing.assert_allclose(multi_teacher_kd(student, teachers[:1], "mse", 2.0, "mean_probs"),
                               kd_per_position(student, teachers[0], "mse", 2.0), rtol=1e-6)


def test_two_identical_teachers_equal_one_and_each_is_logged(teacher_dir, tmp_path):
    one, one_params = run_distill(distill_config(teacher_dir), str(tmp_path / "one"), jax.devices()[:1])
    config = distill_config(teacher_dir, **{"distill.teacher": f"a={teacher_dir},b={teacher_dir}"})
    built = train.build(config, str(tmp_path / "two"), devices=jax.devices()[:1])
    trainer, train_data = built.trainer, built.train_data
    assert sorted(trainer.frozen) == ["a", "b"]  # frozen holds {name: params}
    state, losses = trainer.init_state(), []
    for step in range(config.train.steps):
        state, metrics = trainer.train_step(state, trainer.global_batch(train_data.batch(step)))
        losses.append(float(metrics["loss"]))
        np.testing.assert_allclose(float(metrics["kd_loss_a"]), float(metrics["kd_loss"]), rtol=1e-6)
        np.testing.assert_allclose(float(metrics["kd_loss_b"]), float(metrics["kd_loss"]), rtol=1e-6)
    np.testing.assert_allclose(losses, one, rtol=1e-5)
    for x, y in zip(jax.tree_util.tree_leaves(one_params), jax.tree_util.tree_leaves(jax.device_get(state.params))):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)


def test_teachers_give_shapes_and_shardings_without_reading_weights(teacher_dir, tmp_path):
    from atm.distill.teacher import Teachers
    from atm.models.encoder import EncoderForMLM

    ids = jnp.zeros((1, 16), jnp.int32)
    teachers = Teachers(f"t={teacher_dir}", "config.distill.teacher", ("mlm",), "float32",
                        lambda cfg, det: EncoderForMLM(cfg, deterministic=det), (ids, ids, ids, None, ids[:, :3]))
    mesh = sharding.make_mesh(ml_collections.ConfigDict({"data": 2, "fsdp": 2, "tensor": 2}))
    abstract = teachers.abstract(mesh)
    assert teachers.steps == {}  # no checkpoint was read
    frozen = teachers.shard(mesh)
    assert teachers.steps == {"t": 2}
    for a, f in zip(jax.tree_util.tree_leaves(abstract), jax.tree_util.tree_leaves(frozen)):
        assert (a.shape, a.dtype, a.sharding) == (f.shape, f.dtype, f.sharding)


def test_old_kd_keys_name_the_new_ones(teacher_dir):
    config = distill_config(teacher_dir)
    with config.unlocked():
        config.distill.alpha = 0.3
    with pytest.raises(ValueError, match=r"config\.distill\.alpha is now config\.kd\.alpha"):
        atm_config.validate(config)


def test_teacher_dropout_passes_differ_and_repeat_from_the_rng(teacher_dir, tmp_path):
    """Monte-Carlo passes: with an rng the teacher runs with dropout (passes differ, each reproducible);
    without one it is deterministic."""
    import shutil

    from atm.distill.teacher import Teachers
    from atm.models.encoder import EncoderForMLM

    source, teacher_dir = teacher_dir, str(tmp_path / "with_dropout")  # the same weights, dropout 0.1
    shutil.copytree(source, teacher_dir)
    with open(f"{teacher_dir}/config.json") as f:
        saved = json.load(f)
    saved["model"]["hidden_dropout"] = 0.1
    with open(f"{teacher_dir}/config.json", "w") as f:
        json.dump(saved, f)

    ids = jnp.asarray(np.arange(2 * 16).reshape(2, 16) % 50 + 5, jnp.int32)
    ones, positions = jnp.ones_like(ids), jnp.broadcast_to(jnp.arange(16), (2, 16))
    teachers = Teachers(teacher_dir, "config.distill.teacher", ("mlm",), "float32",
                        lambda cfg, det: EncoderForMLM(cfg, deterministic=det), (ids, ids, ids, None, ids[:, :3]))
    frozen = teachers.shard(sharding.make_mesh(ml_collections.ConfigDict({"data": 1, "fsdp": 1, "tensor": 1}),
                                               jax.devices()[:1]))
    [name] = teachers.names

    def run(rng=None):
        return np.asarray(teachers.apply(frozen, name, ids, ones, positions, masked_positions_BxM=ids[:, :3] % 16,
                                         rng=rng))
    assert teachers.configs[name].hidden_dropout > 0
    np.testing.assert_array_equal(run(), run())
    a, b = run(jax.random.key(1)), run(jax.random.key(2))
    assert np.abs(a - b).max() > 1e-3
    np.testing.assert_array_equal(a, run(jax.random.key(1)))
