"""Student initialisation from a teacher (Privileged Students): layer maps, exact copies, clear errors."""
import jax
import numpy as np
import pytest

from atm import student_init, train
from atm.models.encoder import EncoderForMLM
from atm.student_init import resolve_layer_map
from helpers import apply_overrides, tiny_config
from test_finetune import finetune_config, write_bio_folder


@pytest.fixture(scope="module")
def mlm_teacher(tmp_path_factory):
    """A 4-layer tiny MLM teacher run."""
    workdir = tmp_path_factory.mktemp("mlm_teacher")
    config = tiny_config(**{"train.steps": 1, "checkpoint.every": 1, "train.eval_every": 1})
    config.model.num_layers = 4
    train.train_and_evaluate(config, str(workdir))
    return str(workdir), config


def student_trainer(config, workdir):
    built = train.build(config, workdir, devices=jax.devices()[:1])
    return built.trainer, built.train_data


def mlm_student(teacher_dir, teacher_config, layers, layer_map, tmp_path):
    config = apply_overrides(tiny_config(), {"data.vocab": f"{teacher_dir}/vocab.model", "student_init.mode": "pretrained",
                                             "student_init.teacher": teacher_dir,
                                             "student_init.layer_map": layer_map})
    config.model.update(teacher_config.model.to_dict())
    config.model.num_layers = layers
    trainer, data = student_trainer(config, str(tmp_path))
    state = student_init.initialize(trainer, trainer.init_state(), config.student_init)
    return config, jax.device_get(state.params), data


def teacher_params(teacher_dir):
    from atm.distill.teacher import load_run
    return load_run(teacher_dir, "test", ("mlm", "finetune")).read_params()[1]


def test_layer_maps():
    assert resolve_layer_map("every_other", 3, 6, "k") == [0, 2, 4]
    assert resolve_layer_map("first_k", 2, 6, "k") == [0, 1]
    assert resolve_layer_map("last_k", 2, 6, "k") == [4, 5]
    assert resolve_layer_map("uniform", 3, 6, "k") == [1, 3, 5]
    assert resolve_layer_map("0, 3,5", 3, 6, "k") == [0, 3, 5]
    with pytest.raises(ValueError, match="teacher has 4 layers"):
        resolve_layer_map("every_other", 3, 4, "config.student_init.layer_map")
    with pytest.raises(ValueError, match="names 2 teacher layers but the student has 3"):
        resolve_layer_map("0,1", 3, 4, "k")
    with pytest.raises(ValueError, match="use one of"):
        resolve_layer_map("every_second", 2, 4, "k")


def test_full_layer_list_reproduces_the_teacher_exactly(mlm_teacher, tmp_path, capsys):
    teacher_dir, teacher_config = mlm_teacher
    config, params, data = mlm_student(teacher_dir, teacher_config, 4, "0,1,2,3", tmp_path)
    assert "encoder/layer_3" in capsys.readouterr().out
    reference = teacher_params(teacher_dir)
    batch = data.batch(0)
    model = EncoderForMLM(train.atm_config.model_config(config))
    args = (batch["input_ids"], batch["segment_ids"], batch["positions"])
    np.testing.assert_array_equal(np.asarray(model.apply({"params": params}, *args)),
                                  np.asarray(model.apply({"params": reference}, *args)))


def test_every_other_layer_copies_are_bit_identical(mlm_teacher, tmp_path):
    teacher_dir, teacher_config = mlm_teacher
    _, params, _ = mlm_student(teacher_dir, teacher_config, 2, "every_other", tmp_path)
    reference = teacher_params(teacher_dir)
    pairs = [(params["encoder"]["embeddings"], reference["encoder"]["embeddings"]),
             (params["encoder"]["layer_0"], reference["encoder"]["layer_0"]),
             (params["encoder"]["layer_1"], reference["encoder"]["layer_2"]),
             (params["mlm_head"], reference["mlm_head"])]
    for student, teacher in pairs:
        for a, b in zip(jax.tree_util.tree_leaves(student), jax.tree_util.tree_leaves(teacher)):
            assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


def test_copying_across_widths_is_a_clear_error(mlm_teacher, tmp_path):
    teacher_dir, teacher_config = mlm_teacher
    config = apply_overrides(tiny_config(), {"data.vocab": f"{teacher_dir}/vocab.model", "student_init.mode": "pretrained",
                                             "student_init.teacher": teacher_dir})
    config.model.update(num_layers=2, hidden_size=32, ffn_size=64)
    trainer, _ = student_trainer(config, str(tmp_path))
    with pytest.raises(ValueError, match=r"encoder/embeddings/layer_norm/bias has shape \(64,\) but the student's has \(32,\)"):
        student_init.initialize(trainer, trainer.init_state(), config.student_init)
    config.student_init.mode = "finetuned"  # an MLM run is no fine-tuned teacher
    with pytest.raises(ValueError, match="is a 'mlm' run; this needs one of \\['finetune'\\]"):
        student_init.initialize(trainer, trainer.init_state(), config.student_init)


def test_copy_from_the_finetuned_teacher_takes_its_task_heads(tmp_path, capsys):
    folder = write_bio_folder(tmp_path / "mini_atis", n_train=40, n_eval=16)
    teacher = finetune_config(folder, **{"train.steps": 2, "checkpoint.every": 2, "train.eval_every": 2})
    train.train_and_evaluate(teacher, str(tmp_path / "teacher"))
    # the student run copies at start; with a zero learning rate its checkpoint holds the copy
    student = finetune_config(folder, **{"train.steps": 1, "checkpoint.every": 1, "train.eval_every": 1,
                                         "optimizer.learning_rate": 0.0, "student_init.mode": "finetuned",
                                         "student_init.teacher": str(tmp_path / "teacher"),
                                         "data.vocab": str(tmp_path / "teacher" / "vocab.model")})
    student.model.num_layers = 1
    train.train_and_evaluate(student, str(tmp_path / "student"))
    out = capsys.readouterr().out
    assert "intent" in out and "<- teacher intent" in out and "encoder/layer_0" in out
    reference, params = teacher_params(str(tmp_path / "teacher")), teacher_params(str(tmp_path / "student"))
    for part in ("intent", "slots"):
        for a, b in zip(jax.tree_util.tree_leaves(params[part]), jax.tree_util.tree_leaves(reference[part])):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(params["encoder"]["layer_0"]["ffn"]["wi"]["kernel"],
                                  reference["encoder"]["layer_0"]["ffn"]["wi"]["kernel"])
