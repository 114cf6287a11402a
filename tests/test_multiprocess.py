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
