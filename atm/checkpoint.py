"""Orbax checkpoints of the train state plus the data position, and how a run gets them back.

What a rerun does with the checkpoints it finds (newest first):
- a checkpoint that fails its checksums (`atm_checksums.json`, written once orbax has finished a
  save) or fails to restore is *damaged*: skipped with a warning naming its step;
- the newest intact one is restored, and the damaged ones newer than it are moved aside to
  `checkpoints_damaged/` (kept for inspection), so the run can save those steps again;
- when every checkpoint is damaged the run stops with `CheckpointsDamagedError` listing them and
  changes nothing (a silent restart from scratch would overwrite the run's records);
- a checkpoint whose tree, shapes or dtypes differ from the model (the config changed) stops the
  run with `CheckpointMismatchError` naming the first differing tensors, before anything is written.

Orbax writes to a temporary directory and renames it only when complete, so an interrupted save
never shadows a good one; the checksums catch what happens to a finished checkpoint afterwards
(truncated, deleted or flipped bytes), which a restore alone may not notice.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from typing import Any, Callable, Optional

import jax
import orbax.checkpoint as ocp
from etils import epath

CHECKSUMS = "atm_checksums.json"
DAMAGED_DIR = "checkpoints_damaged"  # beside checkpoints/: orbax never sees what is moved there


class CheckpointMismatchError(ValueError):
    """The checkpoint holds another model than the config builds."""


class CheckpointsDamagedError(ValueError):
    """Checkpoints exist but none of them restores."""


def file_digest(path: str, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, read in chunks (checkpoint shards can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _step_files(step_dir: str) -> list[str]:
    files = []
    for root, _, names in os.walk(step_dir):
        files += [os.path.relpath(os.path.join(root, n), step_dir) for n in names if n != CHECKSUMS]
    return sorted(files)


def write_checksums(step_dir: str):
    sums = {rel: [os.path.getsize(os.path.join(step_dir, rel)), file_digest(os.path.join(step_dir, rel))]
            for rel in _step_files(step_dir)}
    tmp = os.path.join(step_dir, CHECKSUMS + ".tmp")
    with open(tmp, "w") as f:
        json.dump(sums, f, indent=0, sort_keys=True)
    os.replace(tmp, os.path.join(step_dir, CHECKSUMS))


def checksum_problem(step_dir: str) -> Optional[str]:
    """Why the files of a checkpoint differ from its checksums; None when they match or were never
    recorded (a run killed between orbax's finish and the checksums is still restorable)."""
    path = os.path.join(step_dir, CHECKSUMS)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            expected = json.load(f)
    except (OSError, ValueError) as e:
        return f"its {CHECKSUMS} is unreadable ({e})"
    present = set(_step_files(step_dir))
    for rel, (size, digest) in sorted(expected.items()):
        full = os.path.join(step_dir, rel)
        if rel not in present:
            return f"{rel} is missing"
        if os.path.getsize(full) != size:
            return f"{rel} has {os.path.getsize(full)} bytes, {size} were written"
        if file_digest(full) != digest:
            return f"{rel} differs from what was written (checksum)"
    extra = sorted(present - set(expected))
    return f"{extra[0]} was not written by the save" if extra else None


def leaf_name(path) -> str:
    """'params.encoder.layers_0.attention.query.kernel' for a pytree key path of any container."""
    parts = []
    for key in path:
        for attr in ("key", "idx", "name"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    return ".".join(parts)


def shapes_by_name(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    return {leaf_name(p): (tuple(x.shape), str(x.dtype)) for p, x in jax.tree_util.tree_leaves_with_path(tree)}


def tree_differences(saved: dict, model: dict, limit: int = 5) -> list[str]:
    """The first `limit` tensors whose presence, shape or dtype differ, each as one readable line."""
    lines = []
    for name in sorted(set(saved) | set(model), key=lambda n: (not n.startswith("params."), n)):
        if name not in model:
            lines.append(f"{name}: in the checkpoint {saved[name][0]}, not in the model")
        elif name not in saved:
            lines.append(f"{name}: in the model {model[name][0]}, not in the checkpoint")
        elif saved[name] != model[name]:
            lines.append(f"{name}: checkpoint {saved[name][0]} {saved[name][1]}, model {model[name][0]} "
                         f"{model[name][1]}")
    more = len(lines) - limit
    return lines[:limit] + ([f"... and {more} more"] if more > 0 else [])


class Checkpointer:
    def __init__(self, directory: str, keep: int, async_save: bool, checksums: bool = True):
        self.directory = os.path.abspath(directory) if "://" not in directory else directory
        self.checksums = checksums and "://" not in directory  # local or mounted file systems only
        self._options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save,
                                                     create=True)
        self._unsealed: list[int] = []  # steps saved by this process whose checksums are not written yet
        self._open()

    def _open(self):
        self.manager = ocp.CheckpointManager(self.directory, options=self._options)

    def step_dir(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def save(self, step: int, state: Any, data_state: dict, force: bool = False):
        self._seal()
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                        data=ocp.args.JsonSave(data_state)), force=force)
        self._unsealed.append(step)

    def wait(self):
        """Block until every save is on disk, with its checksums."""
        self._seal()

    def _seal(self):
        self.manager.wait_until_finished()
        if self.checksums and jax.process_index() == 0:
            for step in self._unsealed:
                if os.path.isdir(self.step_dir(step)):  # max_to_keep may have deleted it already
                    write_checksums(self.step_dir(step))
        self._unsealed = []

    def steps(self) -> list[int]:
        """Every step directory, including ones orbax no longer recognises (a deleted marker file)."""
        found = set(self.manager.all_steps())
        if os.path.isdir(self.directory):
            found |= {int(n) for n in os.listdir(self.directory) if n.isdigit()}
        return sorted(found)

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
        return restored["state"], dict(restored["data"])

    def restore_params(self, step: int) -> Any:
        """The params of a checkpoint, without knowing its structure in advance, on one local device
        whatever mesh and process count saved it (init_from, teachers and export read any run)."""
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        target = jax.tree_util.tree_map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                                        self.state_metadata(step))
        restored = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
        return restored["state"]["params"]

    def state_metadata(self, step: int) -> Any:
        """The tree of a checkpoint's state with each tensor's shape and dtype, read from its metadata."""
        return ocp.StandardCheckpointHandler().metadata(epath.Path(self.step_dir(step)) / "state")

    def saved_shapes(self, step: int) -> dict[str, tuple[tuple[int, ...], str]]:
        """Name → (shape, dtype) of every tensor in a checkpoint's state, from its metadata only."""
        return shapes_by_name(self.state_metadata(step))

    def _walk(self, attempt: Callable[[int], Any]) -> tuple[Optional[int], Any, list[tuple[int, str]]]:
        """Newest first: (step, attempt(step)) of the first checkpoint that passes its checksums and
        `attempt`, plus the (step, reason) of every damaged one newer than it."""
        damaged = []
        for step in reversed(self.steps()):
            problem = checksum_problem(self.step_dir(step)) if self.checksums else None
            if problem is None:
                try:
                    return step, attempt(step), damaged
                except CheckpointMismatchError:
                    raise
                except Exception as e:  # noqa: BLE001  (any other failure means: this checkpoint is unusable)
                    problem = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
            damaged.append((step, problem))
            print(f"WARNING: checkpoint at step {step} in {self.directory} is damaged ({problem}); "
                  f"trying the previous one", flush=True)
        return None, None, damaged

    def restore_latest(self, abstract_state: Any, describe_config_change: Callable[[], str] = lambda: ""
                       ) -> tuple[int, Any, dict] | None:
        """(step, state, data_state) from the newest intact checkpoint, or None when there is none.

        Damaged checkpoints newer than it are moved aside; see the module docstring for the errors."""
        model_shapes = shapes_by_name(abstract_state)

        def attempt(step):
            try:
                saved = self.saved_shapes(step)
            except Exception as e:  # noqa: BLE001  unreadable metadata: damaged, not a different model
                raise RuntimeError(f"its metadata does not read ({type(e).__name__})") from e
            if saved != model_shapes:
                changed = describe_config_change()
                raise CheckpointMismatchError(
                    f"the checkpoint at step {step} in {self.directory} holds a different model than this config "
                    f"builds:\n  " + "\n  ".join(tree_differences(saved, model_shapes)) +
                    (f"\nconfig keys that differ from the run's config.json: {changed}" if changed else "") +
                    "\nNothing in the run directory was changed. Resume with the run's own config, or train this "
                    "model in a new --workdir.")
            return self.restore(step, abstract_state)

        step, restored, damaged = self._walk(attempt)
        if step is None and damaged:
            listing = "; ".join(f"step {s}: {why}" for s, why in damaged)
            raise CheckpointsDamagedError(
                f"every checkpoint in {self.directory} is damaged ({listing}). Nothing was changed. To start "
                f"afresh deliberately, move the run directory aside (or delete its checkpoints/ and "
                f"metrics.jsonl) or use a new --workdir.")
        if step is None:
            return None
        self._move_aside([s for s, _ in damaged])
        return step, *restored

    def latest_intact_params(self, what: str) -> tuple[int, Any]:
        """(step, params) of another run's newest intact checkpoint (`what` names the config key);
        a damaged newer one is skipped with a warning and left where it is (that run is not ours)."""
        step, params, damaged = self._walk(self.restore_params)
        if step is None:
            listing = "; ".join(f"step {s}: {why}" for s, why in damaged)
            raise FileNotFoundError(f"{what}: no intact checkpoint under {self.directory}"
                                    + (f" ({listing})" if damaged else ""))
        if damaged:
            print(f"WARNING: {what}: using step {step}; newer checkpoints {[s for s, _ in damaged]} are damaged",
                  flush=True)
        return step, params

    def _move_aside(self, steps: list[int]):
        if not steps:
            return
        if jax.process_index() == 0:
            target_root = os.path.join(os.path.dirname(self.directory), DAMAGED_DIR)
            os.makedirs(target_root, exist_ok=True)
            for step in steps:
                target, n = os.path.join(target_root, str(step)), 1
                while os.path.exists(target):
                    target, n = os.path.join(target_root, f"{step}.{n}"), n + 1
                shutil.move(self.step_dir(step), target)
                print(f"WARNING: moved the damaged checkpoint of step {step} to {target}; the run will save "
                      f"that step again", flush=True)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils
            multihost_utils.sync_global_devices("atm: damaged checkpoints moved aside")
        self.manager.close()
        self._open()  # the manager caches the step list

    def close(self):
        self._seal()
        self.manager.close()
