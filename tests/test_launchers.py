"""launch/tpu_pod.py against a fake gcloud (tests/fake_gcloud) whose workers are local processes, and
launch/slurm.sbatch with the environment srun gives each task: both train tiny MLM to the losses of one
process; a killed worker fails the launcher fast; a preemption is retried and resumes from the checkpoint."""
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from test_multiprocess import ARGS, losses

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKE = os.path.join(ROOT, "tests", "fake_gcloud")


@pytest.fixture(scope="module")
def single_losses(tmp_path_factory):
    """The reference: one process with 8 CPU devices."""
    workdir = tmp_path_factory.mktemp("single") / "run"
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    single = subprocess.run([sys.executable, "-m", "atm.main", *ARGS, f"--workdir={workdir}"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    return losses(workdir)


def pod_env(tmp_path, workers=2):
    root = tmp_path / "fake_slice"
    root.mkdir()
    return dict(os.environ, PATH=f"{FAKE}:{os.environ['PATH']}", FAKE_GCLOUD_ROOT=str(root),
                FAKE_GCLOUD_LOG=str(tmp_path / "gcloud_calls.jsonl"), FAKE_GCLOUD_WORKERS=str(workers),
                FAKE_GCLOUD_DEVICES="4", FAKE_GCLOUD_PORT=str(20000 + random.randrange(20000)))


def pod_command(tmp_path, workdir, *extra, run_args=ARGS):
    return [sys.executable, "launch/tpu_pod.py", "--name=atm-test", "--zone=us-test1-a", "--queued",
            "--accelerator=v5litepod-8", "--version=v2-test", "--poll_s=0.2", "--stop_grace=5",
            "--setup_command=true", f"--python={sys.executable}", f"--log_dir={tmp_path / 'logs'}",
            f"--workdir={workdir}", "--shared_fs", *extra, "--", *run_args]


def calls(tmp_path):
    with open(tmp_path / "gcloud_calls.jsonl") as f:
        return [json.loads(line) for line in f]


@pytest.mark.heavy
def test_two_worker_pod_trains_like_one_process(tmp_path, single_losses):
    env = pod_env(tmp_path)
    result = subprocess.run(pod_command(tmp_path, tmp_path / "pod"), cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    np.testing.assert_allclose(losses(tmp_path / "pod"), single_losses, rtol=1e-5)
    made = calls(tmp_path)
    verbs = [" ".join(w for w in c if not w.startswith("--"))[:60] for c in made]
    assert verbs[0].startswith("compute tpus queued-resources describe atm-test")
    assert any(v.startswith("compute tpus queued-resources create atm-test") for v in verbs)
    assert any(v.startswith("compute tpus tpu-vm scp") for v in verbs)
    runs = [c for c in made if any("-m atm.main" in w for w in c)]
    assert sorted(c[5] for c in runs) == ["--worker=0", "--worker=1"]
    assert all("--zone=us-test1-a" in c for c in made)
    for i in range(2):
        log = (tmp_path / "logs" / "attempt_0" / f"worker_{i}.log").read_text()
        assert "Summary" in log if i == 0 else "Traceback" not in log


@pytest.mark.heavy
def test_a_killed_worker_fails_the_launcher_fast(tmp_path):
    env = pod_env(tmp_path)
    args = [a for a in ARGS if not a.startswith(("--config.train.steps", "--config.checkpoint.every"))]
    launcher = subprocess.Popen(pod_command(tmp_path, tmp_path / "pod", run_args=[
        *args, "--config.train.steps=100000", "--config.checkpoint.every=2"]), cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        log = tmp_path / "logs" / "attempt_0" / "worker_0.log"
        _wait_for(lambda: log.exists() and "[step 4/" in log.read_text(), 600, launcher)
        pid = int((tmp_path / "fake_slice" / "worker_1" / "atm_run.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        killed_at = time.time()
        _, stderr = launcher.communicate(timeout=120)
        elapsed = time.time() - killed_at
    finally:
        launcher.kill()
    assert launcher.returncode == 137, stderr[-2000:]
    assert "worker 1 of 2 exited with code 137; stopping the other workers" in stderr
    assert "on a healthy slice: not retrying" in stderr
    assert elapsed < 5 + 20, elapsed  # --stop_grace, plus the time the survivor takes to stop
    from atm.checkpoint import Checkpointer  # no checkpoint is left half-written: the newest one restores
    step, params = Checkpointer(str(tmp_path / "pod" / "checkpoints"), 3, False).latest_intact_params("the pod run")
    assert step >= 2 and all(np.isfinite(x).all() for x in __import__("jax").tree_util.tree_leaves(params))


@pytest.mark.heavy
def test_a_preempted_slice_is_recreated_and_the_run_resumes(tmp_path):
    env = pod_env(tmp_path)
    args = [a for a in ARGS if not a.startswith(("--config.train.steps", "--config.checkpoint.every",
                                                 "--config.train.eval_every"))]
    args += ["--config.train.steps=12", "--config.checkpoint.every=100", "--config.train.eval_every=100"]
    launcher = subprocess.Popen(pod_command(tmp_path, tmp_path / "pod", run_args=args), cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def preempt():  # what a spot reclaim does: the slice goes away and every worker gets SIGTERM
        log = tmp_path / "logs" / "attempt_0" / "worker_0.log"
        _wait_for(lambda: log.exists() and "[step 3/" in log.read_text(), 600, launcher)
        state_path = tmp_path / "fake_slice" / "state.json"
        state = json.loads(state_path.read_text())
        state["qr"] = "SUSPENDED"
        state_path.write_text(json.dumps(state))
        for i in range(2):
            os.kill(int((tmp_path / "fake_slice" / f"worker_{i}" / "atm_run.pid").read_text()), signal.SIGTERM)

    thread = threading.Thread(target=preempt)
    thread.start()
    try:
        stdout, stderr = launcher.communicate(timeout=600)
    finally:
        launcher.kill()
        thread.join()
    assert launcher.returncode == 0, stdout[-2000:] + stderr[-3000:]
    assert "was preempted" in stderr and "retry 1 of 3" in stderr
    second = (tmp_path / "logs" / "attempt_1" / "worker_0.log").read_text()
    assert "Resumed from checkpoint at step" in second
    resumed_at = int(second.split("Resumed from checkpoint at step ")[1].split()[0])
    assert 3 <= resumed_at < 12
    with open(tmp_path / "pod" / "metrics.jsonl") as f:
        steps = [json.loads(line)["step"] for line in f]
    assert steps == list(range(1, 13))
    creates = [c for c in calls(tmp_path) if c[:4] == ["compute", "tpus", "queued-resources", "create"]]
    assert len(creates) == 2


@pytest.mark.parametrize("args, message", [
    (["--name=x", "--zone=z", "--", "--config=configs/tiny_mlm.py"], "--workdir is missing"),
    (["--name=x", "--zone=z", "--workdir=/tmp/local_run", "--", "--config=configs/tiny_mlm.py"],
     "is a local path, but a multi-worker slice needs"),
    (["--name=x", "--zone=z", "--queued", "--workdir=gs://b/r", "--", "--config=configs/tiny_mlm.py"],
     "--queued needs --accelerator"),
])
def test_launcher_bad_input_is_named_before_anything_is_created(tmp_path, args, message):
    env = pod_env(tmp_path)
    result = subprocess.run([sys.executable, "launch/tpu_pod.py", *args], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    made = calls(tmp_path) if (tmp_path / "gcloud_calls.jsonl").exists() else []
    assert not [c for c in made if "create" in c or "ssh" in c or "scp" in c]


def test_dry_run_prints_every_gcloud_command(tmp_path):
    env = pod_env(tmp_path)
    result = subprocess.run([sys.executable, "launch/tpu_pod.py", "--name=atm-700m", "--zone=us-east5-a",
                             "--queued", "--spot", "--accelerator=v5litepod-16", "--version=v2-alpha-tpuv5-lite",
                             "--workdir=gs://bucket/atm_700m", "--dry_run", "--",
                             "--config=configs/atm_teacher.py:700m"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == ("gcloud compute tpus queued-resources create atm-700m --node-id=atm-700m "
                        "--accelerator-type=v5litepod-16 --runtime-version=v2-alpha-tpuv5-lite --spot "
                        "--zone=us-east5-a")
    assert any(line.startswith("gcloud compute tpus tpu-vm scp ") and "--worker=all" in line for line in lines)
    assert any("ATM_DISTRIBUTED=1 exec" in line and "--workdir=gs://bucket/atm_700m" in line for line in lines)
    assert not (tmp_path / "gcloud_calls.jsonl").exists()  # nothing was run


def _wait_for(condition, timeout, process=None):
    """Until `condition()`; fails at once, with its output, when `process` ends first."""
    deadline = time.time() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"exited with {process.returncode} before the condition: "
                                 f"{(process.stderr.read() if process.stderr else '')[-3000:]}")
        if time.time() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.2)


SLURM = os.path.join(ROOT, "tests", "fake_slurm")


def slurm_env(tmp_path):
    return dict(os.environ, PATH=f"{SLURM}:{os.environ['PATH']}", PYTHON=sys.executable,
                SLURM_JOB_ID=str(1000 + random.randrange(3000)), SLURM_NTASKS="2", SLURM_JOB_NODELIST="localhost",
                FAKE_SLURM_LOG=str(tmp_path / "scontrol.log"), ATM_CPU_COLLECTIVES="gloo", JAX_PLATFORMS="cpu",
                XLA_FLAGS="--xla_force_host_platform_device_count=4")


@pytest.mark.heavy
def test_slurm_two_tasks_train_like_one_process(tmp_path, single_losses):
    """The batch script under a fake srun that sets what srun sets: jax.distributed's SLURM auto-detection
    joins the two tasks (coordinator localhost:port from the job id) and they train like 1 process."""
    env = slurm_env(tmp_path)
    result = subprocess.run(["bash", "launch/slurm.sbatch", *ARGS, f"--workdir={tmp_path / 'run'}"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=600)
    logs = {t: (tmp_path / "run" / "logs" / f"slurm-{env['SLURM_JOB_ID']}-task{t}.log") for t in range(2)}
    assert result.returncode == 0, result.stderr[-2000:] + logs[0].read_text()[-3000:]
    assert "devices=8" in logs[0].read_text() and "Summary" in logs[0].read_text()
    np.testing.assert_allclose(losses(tmp_path / "run"), single_losses, rtol=1e-5)
    assert not (tmp_path / "scontrol.log").exists()


@pytest.mark.heavy
def test_slurm_preemption_requeues_and_the_requeued_job_resumes(tmp_path):
    env = slurm_env(tmp_path)
    args = [a for a in ARGS if not a.startswith(("--config.train.steps", "--config.checkpoint.every",
                                                 "--config.train.eval_every"))]
    args += ["--config.train.steps=12", "--config.checkpoint.every=100", "--config.train.eval_every=100",
             f"--workdir={tmp_path / 'run'}"]
    job = subprocess.Popen(["bash", "launch/slurm.sbatch", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    log = tmp_path / "run" / "logs" / f"slurm-{env['SLURM_JOB_ID']}-task0.log"
    _wait_for(lambda: log.exists() and "[step 3/" in log.read_text(), 600, job)
    job.send_signal(signal.SIGTERM)  # what --signal=B:TERM sends the batch shell
    _, stderr = job.communicate(timeout=300)
    assert job.returncode == 143, stderr[-3000:]
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", env["SLURM_JOB_ID"]]
    again = subprocess.run(["bash", "launch/slurm.sbatch", *args], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=600)  # the requeued job: same command
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Resumed from checkpoint at step" in log.read_text()
    with open(tmp_path / "run" / "metrics.jsonl") as f:
        steps = [json.loads(line)["step"] for line in f]
    assert steps == list(range(1, 13))
