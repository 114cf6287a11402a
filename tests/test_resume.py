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


def tree_digests(workdir):
    """relative path → sha256 of every file under a run directory."""
    from atm.checkpoint import file_digest
    return {os.path.relpath(os.path.join(r, n), workdir): file_digest(os.path.join(r, n))
            for r, _, names in os.walk(workdir) for n in names}


def test_damaged_latest_checkpoint_is_moved_aside_and_saved_again(straight, tmp_path):
    import shutil
    workdir = str(tmp_path / "corrupt")
    shutil.copytree(straight, workdir)
    state_dir = os.path.join(workdir, "checkpoints", "8", "state")
    shard = next(os.path.join(r, n) for r, _, names in sorted(os.walk(state_dir)) for n in names if r.endswith("d"))
    with open(shard, "r+b") as f:  # a truncated array file: orbax alone may or may not notice
        f.truncate(os.path.getsize(shard) // 2)
    result = train(workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "checkpoint at step 8 in " in result.stdout and "is damaged" in result.stdout
    assert "Resumed from checkpoint at step 4" in result.stdout
    assert os.path.isdir(os.path.join(workdir, "checkpoints_damaged", "8"))  # kept for inspection
    assert Checkpointer(os.path.join(workdir, "checkpoints"), 3, False).steps() == [4, 8]  # step 8 saved again
    assert [m["loss"] for m in metrics(workdir)] == [m["loss"] for m in metrics(straight)]
    for x, y in zip(jax.tree_util.tree_leaves(final_params(straight, 8)),
                    jax.tree_util.tree_leaves(final_params(workdir, 8))):
        np.testing.assert_array_equal(x, y)


def test_every_checkpoint_damaged_is_an_error_that_changes_nothing(straight, tmp_path):
    import shutil
    workdir = str(tmp_path / "all_damaged")
    shutil.copytree(straight, workdir)
    for step in ("4", "8"):
        os.remove(os.path.join(workdir, "checkpoints", step, "state", "_METADATA"))
    before = tree_digests(workdir)
    result = train(workdir)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "every checkpoint" in result.stderr and "step 8: " in result.stderr and "step 4: " in result.stderr
    assert "new --workdir" in result.stderr and "Traceback" not in result.stderr
    assert tree_digests(workdir) == before


def test_changed_model_on_resume_stops_and_changes_nothing(straight, tmp_path):
    import shutil
    workdir = str(tmp_path / "changed")
    shutil.copytree(straight, workdir)
    before = tree_digests(workdir)
    result = train(workdir, "--config.model.num_layers=3")
    assert result.returncode == 1, result.stderr[-3000:]
    assert "holds a different model" in result.stderr
    assert "params.encoder.layer_2." in result.stderr and "not in the checkpoint" in result.stderr
    assert "model.num_layers: 2 → 3" in result.stderr
    assert tree_digests(workdir) == before  # config.json, metrics.jsonl, checkpoints: untouched


def test_init_from_a_run_whose_latest_checkpoint_is_damaged_uses_the_previous_one(straight, tmp_path):
    import shutil
    source = str(tmp_path / "source")
    shutil.copytree(straight, source)
    os.remove(os.path.join(source, "checkpoints", "8", "state", "_METADATA"))
    result = train(str(tmp_path / "child"), f"--config.init_from={source}", steps=1)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "using step 4; newer checkpoints [8] are damaged" in result.stdout
    assert "from " in result.stdout and "step 4 (the rest are fresh)" in result.stdout
    assert os.path.isdir(os.path.join(source, "checkpoints", "8"))  # another run's files are not moved


@pytest.mark.parametrize("signame,code,seed", [("SIGTERM", 143, 0), ("SIGINT", 130, 1)])
def test_sigterm_and_sigint_save_the_current_step_and_resume_bit_identical(straight, tmp_path, signame, code, seed):
    import random
    stop = random.Random(seed).choice([s for s in range(1, 8) if s != 4])  # not a periodic checkpoint step
    workdir = str(tmp_path / signame)
    stopped = train(workdir, f"--config.train.kill_at_step={stop}", f"--config.train.kill_signal={signame}")
    assert stopped.returncode == code, stopped.stderr[-3000:]
    assert f"stopped by {signame} after step {stop}; saved a checkpoint at step {stop}" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    assert stop in Checkpointer(os.path.join(workdir, "checkpoints"), 3, False).steps()
    resumed = train(workdir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resumed from checkpoint at step {stop}" in resumed.stdout  # no step is trained twice
    assert [m["loss"] for m in metrics(workdir)] == [m["loss"] for m in metrics(straight)]
    for x, y in zip(jax.tree_util.tree_leaves(final_params(straight, 8)),
                    jax.tree_util.tree_leaves(final_params(workdir, 8))):
        np.testing.assert_array_equal(x, y)


def test_checkpoint_fault_injection_sample(tmp_path_factory):
    """A seeded sample of `python -m reproduce.fault_injection` (the full count is in its closing note)."""
    from reproduce import fault_injection

    root = str(tmp_path_factory.mktemp("faults"))
    reference = fault_injection.reference_run(root)
    outcomes = [fault_injection.trial(reference, root, seed) for seed in (2, 3, 10, 16)]
    assert all(o["result"] in ("resumed", "clear error") for o in outcomes), outcomes
    assert not any(o["silent_restart"] or o["records_overwritten"] or o["config_overwritten"] for o in outcomes)
    assert {o["result"] for o in outcomes} == {"resumed", "clear error"}, outcomes


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
