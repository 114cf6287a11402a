"""Task-level distillation in fine-tuning: the loss mixes gold CE and KD per head; KD is 0 for a copy of the teacher."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from atm import student_init, train
from test_finetune import finetune_config, write_bio_folder


@pytest.fixture(scope="module")
def finetuned_teacher(tmp_path_factory):
    root = tmp_path_factory.mktemp("task_kd")
    folder = write_bio_folder(root / "mini_atis", n_train=40, n_eval=16)
    train.train_and_evaluate(finetune_config(folder, **{"train.steps": 2, "checkpoint.every": 2,
                                                        "train.eval_every": 2}), str(root / "teacher"))
    return folder, str(root / "teacher")


def eval_figures(config, workdir, copy_teacher=True):
    """Eval outputs of the first eval batch for a student initialised as a copy of the teacher."""
    built = train.build(config, workdir, devices=jax.devices()[:1])
    trainer, eval_data = built.trainer, built.eval_data
    state = trainer.init_state()
    if copy_teacher:
        state = student_init.initialize(trainer, state, config.student_init)
    out = jax.device_get(trainer.eval_outputs(state.params, trainer.global_batch(eval_data.batch(0))))
    return {k: float(v) / float(out["weight"]) for k, v in out.items() if k in ("loss", "kd_loss")}


@pytest.mark.parametrize("kd_loss", ["kl", "mse"])
def test_task_kd_is_zero_for_a_copy_and_mixes_with_gold_ce(finetuned_teacher, tmp_path, kd_loss):
    folder, teacher = finetuned_teacher
    common = {"data.vocab": f"{teacher}/vocab.model", "student_init.mode": "finetuned",
              "student_init.teacher": teacher, "student_init.layer_map": "first_k"}
    plain = eval_figures(finetune_config(folder, **common), str(tmp_path / "plain"))
    with_kd = eval_figures(finetune_config(folder, **common, **{
        "finetune.teacher": teacher, "kd.alpha": 0.3, "kd.loss": kd_loss}), str(tmp_path / "kd"))
    # student == teacher (every head copied): KD is 0 and the loss is (1 − α)·CE
    assert with_kd["kd_loss"] < 1e-5
    np.testing.assert_allclose(with_kd["loss"], 0.7 * plain["loss"], rtol=1e-5)


def test_task_kd_against_a_different_student_and_head_errors(finetuned_teacher, tmp_path):
    folder, teacher = finetuned_teacher
    config = finetune_config(folder, **{"data.vocab": f"{teacher}/vocab.model", "finetune.teacher": teacher,
                                        "kd.alpha": 1.0})
    config.model.num_layers = 1  # a smaller, random student: KD is positive and is the whole loss at α = 1
    figures = eval_figures(config, str(tmp_path / "small"), copy_teacher=False)
    assert figures["kd_loss"] > 1e-3
    np.testing.assert_allclose(figures["loss"], figures["kd_loss"], rtol=1e-5)
    config.kd.loss = "kld"
    with pytest.raises(ValueError, match="config.kd.loss='kld'"):
        eval_figures(config, str(tmp_path / "bad"), copy_teacher=False)


def test_task_kd_covers_every_head_kind_with_the_reference_formula():
    """Sequence (intent / classification), token (slots / NER) and span (QA start, end) heads, on given logits."""
    from atm.config import default_config
    from atm.distill.kd import kd_per_position
    from atm.objectives.finetune import head_losses

    rng = np.random.default_rng(0)
    B, L = 3, 6
    kd_config = default_config("finetune").kd
    kd_config.update(alpha=0.25, temperature=2.0, loss="kl")
    heads = (("intent", "sequence", 4), ("slots", "token", 5), ("answer", "span", 2))
    segment_ids = np.array([[1] * 6, [1] * 4 + [0] * 2, [1] * 5 + [0]], np.int32)
    token_labels = np.where(rng.random((B, L)) < 0.6, rng.integers(0, 5, (B, L)), -100).astype(np.int32)
    token_labels[:, 0] = 1
    batch = {"example_weight": np.ones(B, np.float32), "label": np.array([0, 3, 1], np.int32),
             "token_labels": token_labels, "segment_ids": segment_ids,
             "start_position": np.array([1, 2, 0], np.int32), "end_position": np.array([2, 3, 4], np.int32)}

    def head_logits():
        span = rng.normal(size=(B, L, 2)).astype(np.float32)
        span = np.where((segment_ids > 0)[..., None], span, -1e4)  # as FineTune.head_logits masks padding
        return {"intent": rng.normal(size=(B, 4)).astype(np.float32),
                "slots": rng.normal(size=(B, L, 5)).astype(np.float32), "answer": span}
    student, teacher = head_logits(), head_logits()
    gold_sum, _ = head_losses(heads, student, batch)

    def stacked(logits):  # one teacher: the teachers' axis has size 1
        return {k: v[None] for k, v in logits.items()}
    total, sums = head_losses(heads, student, batch, 1.0, kd_config, stacked(teacher), ("t",))

    def kd(s, t):
        return np.asarray(kd_per_position(jnp.asarray(s), jnp.asarray(t), "kl", 2.0))
    valid = token_labels != -100
    expected_kd = (kd(student["intent"], teacher["intent"])
                   + (kd(student["slots"], teacher["slots"]) * valid).sum(-1) / valid.sum(-1)
                   + 0.5 * sum(kd(student["answer"][..., i], teacher["answer"][..., i]) for i in (0, 1))).sum()
    np.testing.assert_allclose(float(sums["kd_loss"]), expected_kd, rtol=1e-5)
    np.testing.assert_allclose(float(total), 0.75 * float(gold_sum) + 0.25 * expected_kd, rtol=1e-5)
    _, same = head_losses(heads, student, batch, 1.0, kd_config, stacked(student), ("t",))
    assert abs(float(same["kd_loss"])) < 1e-4
