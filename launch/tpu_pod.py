"""Run one `atm.main` command on every worker of a TPU slice, with retries after preemption.

    python launch/tpu_pod.py --name=atm-700m --zone=us-east5-a --accelerator=v5litepod-16 \\
        --version=v2-alpha-tpuv5-lite [--queued [--spot]] [--project=P] [--max_retries=5] [--dry_run] \\
        --workdir=gs://BUCKET/atm_700m -- --config=configs/atm_teacher.py:700m [--config.a.b=v ...]

1. With --queued: create a queued resource (`gcloud compute tpus queued-resources create`) unless it
   exists, and wait until it is ACTIVE; without: use the existing TPU VM --name (it must be READY).
2. Copy the code (the git-tracked files of this checkout, as a tarball) to every worker.
3. Set up the environment idempotently (--setup_command; default: a venv with `pip install -e .[tpu]`,
   skipped when the same setup.py/requirements.lock were installed before).
4. Stop stale holders of the TPU (processes holding /dev/accel* or /dev/vfio/*, and a previous run
   of this launcher recorded in ~/atm_run.pid).
5. Run `python -m atm.main ARGS --workdir=W` on every worker (ATM_DISTRIBUTED=1: jax.distributed
   finds the slice itself), one `gcloud ... ssh --worker=i` per worker, each worker's output in
   LOG_DIR/attempt_K/worker_i.log. When any worker fails, the others are stopped at once (SIGTERM
   through their pid file, then SIGKILL after --stop_grace seconds) and the launcher names it.
6. A failure while the slice is no longer healthy (queued resource not ACTIVE, TPU VM not READY:
   preempted) deletes and recreates it (--queued) or waits for it, and reruns the same command, which
   resumes from the latest checkpoint in the workdir (the run saved one at SIGTERM). At most
   --max_retries times. A failure on a healthy slice is the run's own: exit with its code.

--dry_run prints every gcloud command instead of running it (no state is assumed: it shows the path of a
first attempt). --workdir must be visible to every worker: gs://... or, with --shared_fs, a path on a
filesystem mounted on all of them; a local path for a multi-worker slice is an error before anything runs.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tarfile
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PID_FILE = "~/atm_run.pid"
STALE = ("for f in /dev/accel* /dev/vfio/[0-9]*; do [ -e \"$f\" ] && sudo fuser -k -9 \"$f\" 2>/dev/null; done; "
         f"if [ -f {PID_FILE} ]; then kill -9 $(cat {PID_FILE}) 2>/dev/null; rm -f {PID_FILE}; fi; "
         "if ls /dev/accel* /dev/vfio/[0-9]* >/dev/null 2>&1; then sudo rm -f /tmp/libtpu_lockfile; fi; true")
DEFAULT_SETUP = ("cd ~/atm && stamp=.venv/.installed_$(cat setup.py requirements.lock | sha256sum | cut -c1-16) && "
                 "if [ ! -f $stamp ]; then python3 -m venv .venv && .venv/bin/pip install -q -c requirements.lock "
                 "-e '.[tpu]' && touch $stamp; fi")


class LaunchError(ValueError):
    pass


def parse(argv):
    if "--" in argv:
        cut = argv.index("--")
        argv, run_args = argv[:cut], argv[cut + 1:]
    else:
        run_args = []
    p = argparse.ArgumentParser(prog="launch/tpu_pod.py", description=__doc__.split("\n")[0])
    p.add_argument("--name", required=True, help="TPU VM (node) name; also the queued resource's name")
    p.add_argument("--zone", required=True)
    p.add_argument("--project", default="")
    p.add_argument("--accelerator", default="", help="accelerator type, e.g. v5litepod-16 (needed with --queued)")
    p.add_argument("--version", default="", help="TPU runtime version (needed with --queued)")
    p.add_argument("--queued", action="store_true", help="create (and recreate) a queued resource")
    p.add_argument("--spot", action="store_true", help="spot capacity (preemptible) for the queued resource")
    p.add_argument("--workdir", default="", help="gs://... or, with --shared_fs, a path every worker sees")
    p.add_argument("--shared_fs", action="store_true", help="--workdir is on a filesystem shared by all workers")
    p.add_argument("--max_retries", type=int, default=3, help="recreations after preemption")
    p.add_argument("--poll_s", type=float, default=30.0, help="seconds between state polls")
    p.add_argument("--wait_active_s", type=float, default=3600.0, help="give up waiting for ACTIVE after this")
    p.add_argument("--stop_grace", type=float, default=30.0, help="SIGTERM → SIGKILL for the other workers")
    p.add_argument("--setup_command", default=DEFAULT_SETUP, help="run on every worker after the code copy")
    p.add_argument("--python", default="~/atm/.venv/bin/python", help="the workers' Python")
    p.add_argument("--log_dir", default="", help="per-worker logs (default: tpu_pod_logs/NAME)")
    p.add_argument("--dry_run", action="store_true", help="print the gcloud commands, run nothing")
    args = p.parse_args(argv)
    args.run_args = run_args
    if not args.workdir:
        raise LaunchError("--workdir is missing: give gs://BUCKET/DIR (or a shared path with --shared_fs)")
    if any(a.startswith("--workdir") for a in run_args):
        raise LaunchError("give the run directory as the launcher's --workdir, not after --")
    if not any(a.startswith("--config=") for a in run_args):
        raise LaunchError("the atm.main arguments after -- need --config=configs/X.py")
    if args.queued and not (args.accelerator and args.version):
        raise LaunchError("--queued needs --accelerator (e.g. v5litepod-16) and --version (the TPU runtime)")
    args.log_dir = args.log_dir or os.path.join("tpu_pod_logs", args.name)
    return args


class Pod:
    def __init__(self, args):
        self.args = args
        self.scope = [f"--zone={args.zone}"] + ([f"--project={args.project}"] if args.project else [])

    def gcloud(self, *words, capture=False, check=True):
        command = ["gcloud", *words, *self.scope]
        if self.args.dry_run:
            print(shlex.join(command), flush=True)
            return ""
        result = subprocess.run(command, capture_output=capture, text=True)
        if check and result.returncode:
            raise LaunchError(f"{shlex.join(command)} failed with code {result.returncode}: "
                              f"{(result.stderr or '')[-500:]}")
        return result.stdout if capture else ""

    # --- the slice ------------------------------------------------------------------------------
    def qr_state(self) -> str:
        out = self.gcloud("compute", "tpus", "queued-resources", "describe", self.args.name,
                          "--format=value(state.state)", capture=True, check=False)
        return out.strip() or "MISSING"

    def vm(self) -> dict:
        out = self.gcloud("compute", "tpus", "tpu-vm", "describe", self.args.name, "--format=json", capture=True,
                          check=False)
        return json.loads(out) if out.strip() else {}

    def healthy(self) -> bool:
        if self.args.queued:
            return self.qr_state() == "ACTIVE"
        return self.vm().get("state") == "READY"

    def create(self):
        a = self.args
        if not a.dry_run and self.qr_state() not in ("MISSING",):
            self.gcloud("compute", "tpus", "queued-resources", "delete", a.name, "--force", "--quiet")
        self.gcloud("compute", "tpus", "queued-resources", "create", a.name, f"--node-id={a.name}",
                    f"--accelerator-type={a.accelerator}", f"--runtime-version={a.version}",
                    *(["--spot"] if a.spot else []))

    def wait_ready(self):
        if self.args.dry_run:
            self.gcloud("compute", "tpus", "queued-resources" if self.args.queued else "tpu-vm", "describe",
                        self.args.name, "--format=value(state.state)" if self.args.queued else "--format=json")
            return
        deadline = time.time() + self.args.wait_active_s
        while not self.healthy():
            if time.time() > deadline:
                raise LaunchError(f"{self.args.name} did not become ACTIVE/READY within {self.args.wait_active_s} s")
            print(f"tpu_pod: waiting for {self.args.name} ({self.qr_state() if self.args.queued else 'TPU VM'})",
                  flush=True)
            time.sleep(self.args.poll_s)

    def num_workers(self) -> int:
        if self.args.dry_run:
            return 1
        return max(1, len(self.vm().get("networkEndpoints", [])))

    # --- the workers ---------------------------------------------------------------------------
    def ssh(self, worker, command, **kwargs):
        return self.gcloud("compute", "tpus", "tpu-vm", "ssh", self.args.name, f"--worker={worker}",
                           f"--command={command}", **kwargs)

    def copy_code(self):
        files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        tarball = os.path.join(tempfile.mkdtemp(prefix="tpu_pod_"), "atm.tar.gz")
        with tarfile.open(tarball, "w:gz") as tar:
            for name in filter(None, files.decode().split("\0")):
                if os.path.exists(os.path.join(ROOT, name)):
                    tar.add(os.path.join(ROOT, name), arcname=name)
        self.gcloud("compute", "tpus", "tpu-vm", "scp", tarball, f"{self.args.name}:~/atm.tar.gz", "--worker=all")
        self.ssh("all", "mkdir -p ~/atm && tar xzf ~/atm.tar.gz -C ~/atm")

    def run_command(self) -> str:
        a = self.args
        atm_args = shlex.join([*a.run_args, f"--workdir={a.workdir}"])
        return (f"cd ~/atm && echo $$ > {PID_FILE} && ATM_DISTRIBUTED=1 exec {a.python} -m atm.main {atm_args}")

    def run_all(self, attempt: int) -> tuple[int, int | None]:
        """(exit code, failing worker): one ssh per worker in parallel; the first failure stops the rest."""
        n = self.num_workers()
        if self.args.dry_run:
            self.ssh("all", self.run_command())
            return 0, None
        log_dir = os.path.join(self.args.log_dir, f"attempt_{attempt}")
        os.makedirs(log_dir, exist_ok=True)
        procs = []
        for i in range(n):
            log = open(os.path.join(log_dir, f"worker_{i}.log"), "w")
            command = ["gcloud", "compute", "tpus", "tpu-vm", "ssh", self.args.name, f"--worker={i}",
                       f"--command={self.run_command()}", *self.scope]
            procs.append((subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), log))
        print(f"tpu_pod: attempt {attempt}: {n} workers running; logs in {log_dir}", flush=True)
        status, failed = 0, None
        running = dict(enumerate(p for p, _ in procs))
        while running:
            for i, proc in list(running.items()):
                code = proc.poll()
                if code is None:
                    continue
                del running[i]
                if code and failed is None:
                    status, failed = code, i
                    print(f"tpu_pod: worker {i} of {n} exited with code {code}; stopping the other workers",
                          file=sys.stderr, flush=True)
                    self.stop_workers(running)
            time.sleep(0.2)
        for _, log in procs:
            log.close()
        return status, failed

    def stop_workers(self, running: dict):
        """SIGTERM the other workers' runs (they save a checkpoint), SIGKILL after the grace."""
        if not running:
            return
        kill = f"[ -f {PID_FILE} ] && kill -{{sig}} $(cat {PID_FILE}) 2>/dev/null; true"
        threads = [threading.Thread(target=self.ssh, args=(i, kill.format(sig="TERM")), kwargs={"check": False})
                   for i in running]
        for t in threads:
            t.start()
        deadline = time.time() + self.args.stop_grace
        while time.time() < deadline and any(p.poll() is None for p in running.values()):
            time.sleep(0.2)
        for i, p in running.items():
            if p.poll() is None:
                self.ssh(i, kill.format(sig="KILL"), check=False)
                p.kill()


def launch(args) -> int:
    pod = Pod(args)
    for attempt in range(args.max_retries + 1):
        if args.queued and (args.dry_run or attempt > 0 or pod.qr_state() != "ACTIVE"):
            pod.create()
        pod.wait_ready()
        pod.copy_code()
        pod.ssh("all", args.setup_command)
        pod.ssh("all", STALE)
        code, worker = pod.run_all(attempt)
        if code == 0:
            print(f"tpu_pod: done (attempt {attempt}); workdir {args.workdir}", flush=True)
            return 0
        if pod.healthy():
            print(f"tpu_pod: worker {worker} failed with code {code} on a healthy slice: not retrying "
                  f"(see {os.path.join(args.log_dir, f'attempt_{attempt}', f'worker_{worker}.log')})",
                  file=sys.stderr, flush=True)
            return code
        print(f"tpu_pod: {args.name} was preempted (worker {worker} exited with code {code}); "
              f"retry {attempt + 1} of {args.max_retries} resumes from the latest checkpoint", file=sys.stderr,
              flush=True)
        if not args.queued:
            continue  # an existing TPU VM: wait until it is READY again
    print(f"tpu_pod: gave up after {args.max_retries} retries", file=sys.stderr, flush=True)
    return 1


def main(argv=None):
    try:
        args = parse(sys.argv[1:] if argv is None else argv)
        workers = None
        if not args.workdir.startswith("gs://") and not args.shared_fs:
            workers = 1 if args.dry_run else Pod(args).num_workers() if not args.queued else None
            if workers != 1:
                raise LaunchError(f"--workdir={args.workdir!r} is a local path, but a multi-worker slice needs a "
                                  f"run directory every worker sees: gs://BUCKET/DIR, or --shared_fs when "
                                  f"{args.workdir} is on a filesystem mounted on every worker")
        return launch(args)
    except LaunchError as e:
        print(f"tpu_pod: error: {e}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
