"""Orbax checkpoints of the train state plus the data position.

`Checkpointer.restore_latest` walks back from the newest step: a checkpoint that
fails to restore (corrupt or half-written) is skipped with a warning naming its
step, and the previous one is used. Orbax writes to a temporary directory and
renames it only when complete, so an interrupted save never shadows a good one.
"""
from __future__ import annotations

import os
from typing import Any

import orbax.checkpoint as ocp
from absl import logging


class Checkpointer:
    def __init__(self, directory: str, keep: int, async_save: bool):
        self.directory = os.path.abspath(directory)
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save,
                                               create=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def save(self, step: int, state: Any, data_state: dict, force: bool = False):
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                        data=ocp.args.JsonSave(data_state)), force=force)

    def wait(self):
        self.manager.wait_until_finished()

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
        return restored["state"], dict(restored["data"])

    def restore_params(self, step: int) -> Any:
        """The params of a checkpoint as host arrays, without knowing its structure in advance."""
        restored = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
        return restored["state"]["params"]

    def restore_latest(self, abstract_state: Any) -> tuple[int, Any, dict] | None:
        """(step, state, data_state) from the newest checkpoint that restores, or None."""
        for step in reversed(self.steps()):
            try:
                state, data_state = self.restore(step, abstract_state)
                return step, state, data_state
            except Exception as e:  # noqa: BLE001  (any failure means: this checkpoint is unusable)
                logging.warning("checkpoint at step %d in %s cannot be restored (%s: %s); "
                                "falling back to the previous one", step, self.directory, type(e).__name__,
                                str(e).splitlines()[0][:300] if str(e) else "")
                print(f"WARNING: checkpoint at step {step} is corrupt or incomplete "
                      f"({type(e).__name__}); trying the previous one", flush=True)
        return None

    def close(self):
        self.manager.wait_until_finished()
        self.manager.close()
