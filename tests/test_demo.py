"""`make demo` (python -m atm.demo) trains and the loss goes down by the stated margin."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_demo_loss_goes_down(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)  # the demo runs on the machine's real single CPU device
    result = subprocess.run([sys.executable, "-m", "atm.demo", f"--workdir={tmp_path}"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "=== Demo summary ===" in result.stdout and "fill-mask" in result.stdout
    with open(tmp_path / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    assert records[-1]["step"] == 600
    assert records[0]["loss"] - records[-1]["loss"] >= 2.5, (records[0]["loss"], records[-1]["loss"])
    assert records[-1]["eval_loss"] < 2.5
