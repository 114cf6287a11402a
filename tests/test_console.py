"""A quiet console: a CLI run prints atm's progress, not TensorFlow's or libtpu's start-up lines."""
import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What TensorFlow's shared libraries print when they load (absl C++ logging before InitializeLog).
TF_STARTUP = ("oneDNN custom operations", "cudart_stub", "Could not find cuda drivers", "absl::InitializeLog",
              "This TensorFlow binary is optimized", "Unable to register cu", "TF-TRT Warning",
              "computation placer already registered",
              # libtpu (the tpu_aot extra) on a machine without TPU chips, when jax tries its TPU backend
              "TPU_ACCELERATOR_TYPE", "TPU_WORKER_HOSTNAMES", "libtpu")


def test_main_cli_has_no_tensorflow_startup_lines(tmp_path):
    env = dict(os.environ)
    for name in ("XLA_FLAGS", "TF_CPP_MIN_LOG_LEVEL", "ATM_VERBOSE", "JAX_PLATFORMS"):  # as a user's shell has it
        env.pop(name, None)
    result = subprocess.run(
        [sys.executable, "-m", "atm.main", "--config=configs/tiny_mlm.py", f"--workdir={tmp_path}",
         "--config.train.steps=2", "--config.train.log_every=1", "--config.train.eval_every=2",
         "--config.train.eval_batches=1", "--config.data.num_examples=200", "--config.data.vocab_size=500",
         "--config.model.vocab_size=500", "--config.data.seq_len=32", "--config.train.batch_size=8"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert glob.glob(str(tmp_path / "tensorboard" / "*tfevents*")), "TensorFlow was not loaded: nothing was tested"
    assert "[step 2/2 100%]" in result.stdout  # atm's own progress stays
    noisy = [line for line in result.stderr.splitlines() if any(marker in line for marker in TF_STARTUP)]
    assert not noisy, "\n".join(noisy)


def test_importing_atm_keeps_libtpu_quiet_on_a_machine_without_tpu_chips():
    """`make install` brings libtpu (the tpu_aot extra); on a CPU machine jax would try its TPU backend at the
    first `jax.devices()` and libtpu would print metadata-server warnings (atm/__init__.py)."""
    import importlib.util

    if importlib.util.find_spec("libtpu") is None:
        pytest.skip("libtpu is not installed: nothing to keep quiet")
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_PLATFORMS", "XLA_FLAGS")}
    env["ALLOW_MULTIPLE_LIBTPU_LOAD"] = "1"  # else libtpu gives up silently while another process holds its lock
    code = "import atm, jax; print(jax.devices()[0].platform)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0 and result.stdout.strip() in ("cpu", "gpu", "tpu"), result.stderr[-3000:]
    noisy = [line for line in result.stderr.splitlines() if any(marker in line for marker in TF_STARTUP)]
    assert not noisy, "\n".join(noisy)
