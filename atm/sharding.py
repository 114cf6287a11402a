"""Device mesh and THE logical-axis rules table.

Every parameter and large activation in atm carries logical axis names (see
`atm/models/encoder.py`); this file alone maps them to the mesh axes
`data`, `fsdp` and `tensor`. Changing how a model is sharded is a config change
(`config.mesh`), never a code change.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")

# Parameters use plain names; activations use `act_*` names so that e.g. the
# embed dimension of a weight can be FSDP-sharded while activations are not.
LOGICAL_AXIS_RULES: tuple[tuple[str, Any], ...] = (
    # parameters
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv", None),
    ("layers", None),
    ("positions", None),
    ("types", None),
    ("classes", None),
    # activations
    ("act_batch", ("data", "fsdp")),
    ("act_length", None),
    ("act_embed", None),
    ("act_heads", "tensor"),
    ("act_kv", None),
    ("act_mlp", "tensor"),
    ("act_vocab", "tensor"),
)


class MeshError(ValueError):
    pass


DCN_AXES = tuple(f"dcn_{axis}" for axis in MESH_AXES)  # across slices (multi-slice TPU): config.mesh.dcn_data, ...


def resolve_mesh_shape(mesh_config: dict, num_devices: int) -> tuple[int, ...]:
    """Turn {'data': -1, 'fsdp': 2, 'tensor': 1} into concrete sizes.

    At most one axis may be -1 ("the rest"). Raises MeshError naming the
    config keys when the sizes do not multiply to the device count. `dcn_*`
    keys are ignored here (see `resolve_hybrid_mesh_shape`).
    """
    unknown = sorted(set(mesh_config) - set(MESH_AXES) - set(DCN_AXES))
    if unknown:
        raise MeshError(f"config.mesh has unknown axes {unknown}; valid axes are {list(MESH_AXES + DCN_AXES)}")
    sizes = [int(mesh_config.get(axis, 1)) for axis in MESH_AXES]
    rest = [i for i, s in enumerate(sizes) if s == -1]
    if len(rest) > 1:
        raise MeshError(f"config.mesh: only one axis may be -1, got {dict(zip(MESH_AXES, sizes))}")
    if any(s == 0 or s < -1 for s in sizes):
        raise MeshError(f"config.mesh sizes must be positive or -1, got {dict(zip(MESH_AXES, sizes))}")
    known = math.prod(s for s in sizes if s != -1)
    if rest:
        if num_devices % known:
            raise MeshError(
                f"config.mesh {dict(zip(MESH_AXES, sizes))}: {num_devices} devices are not divisible "
                f"by the fixed axes' product {known}")
        sizes[rest[0]] = num_devices // known
    if math.prod(sizes) != num_devices:
        raise MeshError(
            f"config.mesh {dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} devices but "
            f"{num_devices} are available; set one axis to -1 to use the rest")
    return tuple(sizes)


def num_slices(devices: Sequence[jax.Device]) -> int:
    """How many slices (TPU pods joined over the data-centre network) `devices` span; 1 without slices."""
    return len({getattr(d, "slice_index", 0) for d in devices})


def resolve_hybrid_mesh_shape(mesh_config: dict, devices: Sequence[jax.Device]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(per-slice ICI sizes, across-slice DCN sizes) of config.mesh over `devices`.

    `data`/`fsdp`/`tensor` are sizes inside one slice (-1: the rest of a slice); `dcn_data`/`dcn_fsdp`/
    `dcn_tensor` multiply them across slices, as MaxText's ici_* and dcn_* knobs. Their product must be
    the number of slices the devices span."""
    dcn = [int(mesh_config.get(axis, 1)) for axis in DCN_AXES]
    if any(s < 1 for s in dcn):
        raise MeshError(f"config.mesh DCN sizes must be >= 1, got {dict(zip(DCN_AXES, dcn))}")
    slices, set_dcn = num_slices(devices), {a: s for a, s in zip(DCN_AXES, dcn) if s > 1}
    if slices == 1 and set_dcn:
        raise MeshError(f"config.mesh sets DCN axes {set_dcn} but the {len(devices)} devices form one slice; "
                        f"DCN axes need a multi-slice topology (atm.aot --num_slices={math.prod(dcn)}), "
                        f"else leave config.mesh.dcn_* at 1")
    if math.prod(dcn) != slices:
        raise MeshError(f"the devices span {slices} slices but config.mesh DCN axes {dict(zip(DCN_AXES, dcn))} "
                        f"multiply to {math.prod(dcn)}; set e.g. config.mesh.dcn_data={slices}")
    return resolve_mesh_shape(mesh_config, len(devices) // slices), tuple(dcn)


def make_mesh(mesh_config: dict, devices: Sequence[jax.Device] | None = None) -> Mesh:
    devices = list(devices if devices is not None else jax.devices())
    ici, dcn = resolve_hybrid_mesh_shape(dict(mesh_config), devices)
    if math.prod(dcn) > 1:
        device_array = mesh_utils.create_hybrid_device_mesh(ici, dcn, devices)
        return Mesh(device_array, MESH_AXES)
    try:
        device_array = mesh_utils.create_device_mesh(ici, devices)
    except Exception:  # non-TPU topologies without a physical layout
        device_array = np.asarray(devices).reshape(ici)
    return Mesh(device_array, MESH_AXES)


def logical_sharding(mesh: Mesh, logical_specs: Any) -> Any:
    """Map a pytree of logical PartitionSpecs to NamedShardings on `mesh`."""
    return nn.logical_to_mesh_sharding(logical_specs, mesh, LOGICAL_AXIS_RULES)


def strip_boxes(boxed_tree: Any) -> Any:
    """The values inside flax's partitioning boxes, with no sharding constraint applied.

    `nn.unbox` constrains each value when a mesh is set (`jax.set_mesh`), which fails on the
    ShapeDtypeStructs of `jax.eval_shape` and on arrays outside a trace; this reads the boxes only."""
    is_box = lambda x: isinstance(x, nn.Partitioned)  # noqa: E731  (LogicallyPartitioned is one)
    return jax.tree_util.tree_map(lambda x: x.unbox(apply_constraint=False) if is_box(x) else x, boxed_tree,
                                  is_leaf=is_box)


def check_divisible(abstract_tree: Any, shardings: Any):
    """Fail before compiling when a sharded dimension does not divide by its mesh axes."""
    for (path, leaf), sh in zip(jax.tree_util.tree_leaves_with_path(abstract_tree), jax.tree_util.tree_leaves(
            shardings, is_leaf=lambda x: isinstance(x, NamedSharding))):
        for dim, axes in zip(leaf.shape, sh.spec):
            axes = (axes,) if isinstance(axes, str) else (axes or ())
            parts = math.prod(sh.mesh.shape[a] for a in axes)
            if dim % parts:
                raise MeshError(
                    f"{jax.tree_util.keystr(path)} has shape {leaf.shape}: dimension {dim} is sharded over mesh "
                    f"axes {axes} ({parts} ways) and does not divide; change config.mesh "
                    f"{dict(sh.mesh.shape)} or the model size")


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
    """Batch-major arrays: the leading axis over data×fsdp, the rest replicated."""
    return NamedSharding(mesh, P(("data", "fsdp"), *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def global_batch_from_local(mesh: Mesh, local_batch: dict, global_batch_size: int) -> dict:
    """Assemble each process's rows into one globally sharded jax.Array per feature."""
    out = {}
    for name, local in local_batch.items():
        global_shape = (global_batch_size,) + local.shape[1:]
        out[name] = jax.make_array_from_process_local_data(
            batch_sharding(mesh, local.ndim), local, global_shape)
    return out


class MeshContext:
    """Context in which flax's logical axis names resolve against `mesh` (the loop, teachers, the cache).

    The mesh is set with `jax.set_mesh` (the `with mesh:` form is deprecated), so raw PartitionSpecs and
    flax's logical constraints resolve against it; re-entering an instance nests."""

    def __init__(self, mesh: Mesh):
        self.mesh, self.rules = mesh, nn.logical_axis_rules(LOGICAL_AXIS_RULES)
        self._set_meshes = []

    def __enter__(self):
        self._set_meshes.append(jax.set_mesh(self.mesh))  # set_mesh takes effect when constructed
        self.rules.__enter__()

    def __exit__(self, *exc):
        self.rules.__exit__(*exc)
        self._set_meshes.pop().__exit__(*exc)
