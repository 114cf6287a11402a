"""Stop requests: SIGTERM (what TPU spot VMs and SLURM send on preemption) and SIGINT (Ctrl-C).

The loop asks `StopWatch.should_stop(step)` after every step; when it says yes the loop saves a
checkpoint at that step (with the data position) and raises `Preempted`, and `atm.main` exits with
128 + the signal's number (143 for SIGTERM, 130 for SIGINT), the code a shell reports for a
process the signal ended. Rerunning the same command resumes from that step, bit for bit.

One process: a Python handler records the signal; a second Ctrl-C stops at once. Several
processes must stop at the same step or their collectives would mismatch, so there JAX's
preemption service (started by `jax.distributed.initialize`) owns SIGTERM and agrees on the step
(`reached_preemption_sync_point`); SIGINT is forwarded to it as a SIGTERM.
"""
from __future__ import annotations

import os
import signal
import threading

import jax

class Preempted(Exception):
    """The run stopped at a signal after saving its checkpoint; rerun to resume."""

    def __init__(self, signum: int, step: int, directory: str):
        self.signum, self.step, self.exit_code = signum, step, 128 + signum  # what a shell reports
        super().__init__(f"stopped by {signal.Signals(signum).name} after step {step}; saved a checkpoint at step "
                         f"{step} in {directory}. Rerun the same command to resume.")


def _multi_process_sync() -> bool:
    """jax.distributed started its preemption service (on by default) for this multi-process run."""
    return jax.process_count() > 1 and bool(jax.config.jax_enable_preemption_service)


class StopWatch:
    """Context manager: installs the handlers on entry and puts the previous ones back on exit."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, object] = {}
        self._synced = False

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self  # signals reach only the main thread: nothing to watch from here
        self._synced = _multi_process_sync()
        if self._synced:
            self._install(signal.SIGINT, self._forward_to_sigterm)
        else:
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._install(signum, self._record)
        return self

    def _install(self, signum, handler):
        self._previous[signum] = signal.signal(signum, handler)

    def _record(self, signum, frame):
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, without the checkpoint
        self.signum = signum
        print(f"\natm: {signal.Signals(signum).name} received: finishing this step and saving a checkpoint "
              f"(Ctrl-C again to stop at once)", flush=True)

    def _forward_to_sigterm(self, signum, frame):
        self.signum = signal.SIGINT
        os.kill(os.getpid(), signal.SIGTERM)

    def should_stop(self, step: int) -> bool:
        if self._synced:
            from jax.experimental import multihost_utils
            if multihost_utils.reached_preemption_sync_point(step):
                self.signum = self.signum or signal.SIGTERM
                return True
            return False
        return self.signum is not None

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
