"""Checkpoints: SIGKILL + rerun is bit-identical; a corrupt latest checkpoint falls back; NaN stops cleanly."""
import json
import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from atm.checkpoint import Checkpointer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--config.data.num_examples=2000", "--config.data.vocab_size=500", "--config.model.vocab_size=500",
         "--config.data.seq_len=32", "--config.train.batch_size=16", "--config.train.log_every=1",
         "--config.checkpoint.every=4", "--config.train.eval_every=4", "--config.train.eval_batches=1",
         "--config.optimizer.warmup_steps=2", "--config.model.hidden_dropout=0.1"]


def train(workdir, *extra, steps=8, devices=8):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
    cmd = [sys.executable, "-m", "atm.main", "--config=configs/tiny_mlm.py", f"--workdir={workdir}",
           f"--config.train.steps={steps}", *SMALL, *extra]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def metrics(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def final_params(workdir, step):
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep=3, async_save=False)
    import orbax.checkpoint as ocp
    restored = ckpt.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    return jax.device_get(restored["state"]["params"])


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("straight"))
    result = train(workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def test_sigkill_and_rerun_is_bit_identical(straight, tmp_path):
    workdir = str(tmp_path / "killed")
    killed = train(workdir, "--config.train.kill_at_step=4")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert [m["step"] for m in metrics(workdir)][-1] == 4
    resumed = train(workdir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resumed from checkpoint at step 4" in resumed.stdout

    a, b = metrics(straight), metrics(workdir)
    assert [m["step"] for m in a] == [m["step"] for m in b] == list(range(1, 9))
    assert [m["loss"] for m in a] == [m["loss"] for m in b]  # bit for bit
    assert [m.get("eval_loss") for m in a] == [m.get("eval_loss") for m in b]
    for x, y in zip(jax.tree_util.tree_leaves(final_params(straight, 8)),
                    jax.tree_util.tree_leaves(final_params(workdir, 8))):
        np.testing.assert_array_equal(x, y)


def test_run_writes_its_outputs(straight):
    records = metrics(straight)
    assert {"step", "loss", "learning_rate", "tokens_per_s", "grad_norm", "accuracy"} <= set(records[0])
    assert "eval_loss" in records[3]
    assert os.path.exists(os.path.join(straight, "config.json"))
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(os.path.join(straight, "tensorboard")))
    assert sorted(Checkpointer(os.path.join(straight, "checkpoints"), 3, False).steps()) == [4, 8]


def test_corrupt_latest_checkpoint_falls_back_to_previous(straight, tmp_path, capsys):
    import shutil
    workdir = str(tmp_path / "corrupt")
    shutil.copytree(straight, workdir)
    state_dir = os.path.join(workdir, "checkpoints", "8", "state")
    for root, _, files in os.walk(state_dir):  # truncate every array file of the latest step
        for name in files:
            if "manifest" in name or name.endswith(".ocdbt") or "d" == os.path.basename(root):
                with open(os.path.join(root, name), "wb") as f:
                    f.write(b"garbage")
    result = train(workdir, steps=9)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "checkpoint at step 8 in " in result.stdout and "is damaged" in result.stdout
    assert "Resumed from checkpoint at step 4" in result.stdout


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path):
    workdir = str(tmp_path / "nan")
    result = train(workdir, "--config.optimizer.learning_rate=1e38", "--config.optimizer.grad_clip_norm=0",
                   "--config.optimizer.warmup_steps=0", "--config.checkpoint.every=1", steps=6)
    assert result.returncode == 1
    assert "non-finite loss" in result.stderr and "at step" in result.stderr
    bad_step = int(result.stderr.split("at step ")[1].split(";")[0])
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), 3, False)
    assert ckpt.steps() and max(ckpt.steps()) < bad_step
    params = final_params(workdir, max(ckpt.steps()))
    assert all(np.isfinite(x).all() for x in jax.tree_util.tree_leaves(params))


def test_unknown_config_key_names_the_nearest(tmp_path):
    result = train(str(tmp_path / "typo"), "--config.train.stepz=3")
    assert result.returncode != 0
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--config.train.stepz" in result.stderr and "Did you mean \"steps\"" in result.stderr


def test_unknown_key_in_a_config_file_names_the_nearest():
    from atm import config as atm_config
    import configs.tiny_mlm as tiny

    c = tiny.get_config()
    with c.unlocked():
        c.optimizer.learnin_rate = 1.0
    with pytest.raises(ValueError, match=r"config\.optimizer\.learnin_rate.*config\.optimizer\.learning_rate"):
        atm_config.validate(c)
