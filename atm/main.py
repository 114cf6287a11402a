"""The one entry point: `python -m atm.main --config=configs/X.py --workdir=DIR [--config.a.b=v ...]`.

Multi-process runs (launch/local.sh, TPU pods, SLURM) set ATM_COORDINATOR,
ATM_NUM_PROCESSES and ATM_PROCESS_ID, or rely on jax.distributed's own
auto-detection on TPU/SLURM with ATM_DISTRIBUTED=1.
"""
from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from atm import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to an ml_collections config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory: metrics, checkpoints, resolved config.")
flags.mark_flags_as_required(["config", "workdir"])


def initialize_distributed():
    """jax.distributed.initialize when this run has several processes (before any other JAX call)."""
    import jax

    if os.environ.get("ATM_CPU_COLLECTIVES"):
        jax.config.update("jax_cpu_collectives_implementation", os.environ["ATM_CPU_COLLECTIVES"])
    if "ATM_NUM_PROCESSES" in os.environ and int(os.environ["ATM_NUM_PROCESSES"]) > 1:
        jax.distributed.initialize(coordinator_address=os.environ["ATM_COORDINATOR"],
                                   num_processes=int(os.environ["ATM_NUM_PROCESSES"]),
                                   process_id=int(os.environ["ATM_PROCESS_ID"]))
    elif os.environ.get("ATM_DISTRIBUTED") == "1":
        jax.distributed.initialize()  # TPU pod / SLURM auto-detection


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not os.environ.get("ATM_VERBOSE"):
        logging.set_verbosity(logging.WARNING)  # orbax is chatty at INFO
    initialize_distributed()
    try:
        run_training()
    except BaseException as e:  # noqa: BLE001
        import jax
        if jax.process_count() == 1:
            raise
        # Several processes: exit NOW with this code. At a normal exit jax.distributed's shutdown barrier
        # waits for the peers, so a failed process (a lost peer, a gloo timeout, a bad value) would hang
        # there instead of ending, and its launcher would never see the failure.
        code = e.code if isinstance(e, SystemExit) and isinstance(e.code, int) else 1
        if not isinstance(e, SystemExit):
            import traceback
            traceback.print_exc()
        print(f"atm: process {jax.process_index()} of {jax.process_count()} exits with code {code}", file=sys.stderr,
              flush=True)
        sys.stdout.flush()
        os._exit(code)


def run_training():
    """train_and_evaluate with its errors as one line and an exit code (128 + signal after a preemption)."""
    from atm import preemption, train

    config = load_config_or_exit()
    try:
        train.train_and_evaluate(config, _WORKDIR.value)
    except (ValueError, FileNotFoundError, train.NonFiniteLossError) as e:
        print(f"atm: error: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    except KeyError as e:  # a bad value found while building (an unknown task name, ...): its message says which
        print(f"atm: error: {e.args[0] if e.args else e}", file=sys.stderr, flush=True)
        sys.exit(1)
    except preemption.Preempted as e:
        print(f"atm: {e}", file=sys.stderr, flush=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:  # a second Ctrl-C, or one before training started
        print("atm: interrupted; nothing was saved since the last checkpoint", file=sys.stderr, flush=True)
        sys.exit(130)


def load_config_or_exit():
    """The --config file's ConfigDict; a file that is missing or fails to load exits 2 with one line."""
    return cli.load_config_or_exit("atm")


def run():
    cli.run(main, "atm")


if __name__ == "__main__":
    run()
