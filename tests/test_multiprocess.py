"""2 processes × 4 CPU devices (gloo) train exactly like 1 process × 8 devices."""
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = ["--config=configs/tiny_mlm.py", "--config.train.steps=4", "--config.data.num_examples=2000",
        "--config.data.vocab_size=500", "--config.model.vocab_size=500", "--config.data.seq_len=32",
        "--config.train.batch_size=16", "--config.train.log_every=1", "--config.checkpoint.every=4",
        "--config.train.eval_every=4", "--config.train.eval_batches=1", "--config.optimizer.warmup_steps=0",
        "--config.mesh.data=4", "--config.mesh.fsdp=2"]


def losses(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return np.array([json.loads(line)["loss"] for line in f])


def test_two_processes_match_one(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, ATM_LOCAL_DEVICES="4")
    multi = subprocess.run(["bash", "launch/local.sh", "2", "--", *ARGS, f"--workdir={tmp_path / 'multi'}"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert multi.returncode == 0, multi.stdout[-2000:] + multi.stderr[-3000:]
    assert "[p0] atm: objective=mlm" in multi.stdout and "devices=8" in multi.stdout

    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    single = subprocess.run([sys.executable, "-m", "atm.main", *ARGS, f"--workdir={tmp_path / 'single'}"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]

    a, b = losses(tmp_path / "multi"), losses(tmp_path / "single")
    assert len(a) == len(b) == 4
    np.testing.assert_allclose(a, b, rtol=1e-5)
    assert a[-1] < a[0]


def test_a_lost_process_is_named_and_the_survivor_stops_within_the_grace(tmp_path):
    """SIGKILL one of two processes: the launcher names it, stops the other within ATM_STOP_GRACE
    seconds and exits non-zero; the checkpoints written before still restore."""
    import signal
    import time

    from atm.checkpoint import Checkpointer

    workdir = tmp_path / "lost"
    args = [a for a in ARGS if not a.startswith(("--config.train.steps", "--config.checkpoint.every"))]
    env = dict(os.environ, PYTHON=sys.executable, ATM_LOCAL_DEVICES="4", ATM_STOP_GRACE="5")
    launcher = subprocess.Popen(["bash", "launch/local.sh", "2", "--", *args, "--config.train.steps=100000",
                                 "--config.checkpoint.every=2", f"--workdir={workdir}"], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in launcher.stdout:  # wait until training runs (checkpoint at step 2 written)
            if "[p0] [step 4/" in line:
                break
        victim = next(int(pid) for pid in os.listdir("/proc") if pid.isdigit() and _is_rank(int(pid), workdir, 1))
        os.kill(victim, signal.SIGKILL)
        killed_at = time.time()
        _, stderr = launcher.communicate(timeout=120)
        elapsed = time.time() - killed_at
    finally:
        launcher.kill()
    assert launcher.returncode != 0
    assert "process 1 of 2 exited with code 137 (signal KILL); stopping the other processes" in stderr
    assert elapsed < 5 + 15, elapsed  # the grace, plus the time a process takes to die
    ckpt = Checkpointer(str(workdir / "checkpoints"), 3, False)
    step, params = ckpt.latest_intact_params("the lost run")
    assert step >= 2 and all(np.isfinite(x).all() for x in __import__("jax").tree_util.tree_leaves(params))


def _is_rank(pid: int, workdir, rank: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if f"--workdir={workdir}".encode() not in f.read():
                return False
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f"ATM_PROCESS_ID={rank}".encode() in f.read().split(b"\0")
    except OSError:
        return False
