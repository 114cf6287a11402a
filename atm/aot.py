"""Ahead-of-time check: does a config's train step fit a TPU topology? Compiled on a CPU, no TPU needed.

    python -m atm.aot --config=configs/X.py --topology=v5e:16x16 [--num_slices=2] [--config.a.b=v ...]
    python -m atm.aot --config=configs/X.py --cpu_devices=8        (a fake CPU mesh of 8 devices)

The same config and overrides as `atm.main`. The state is built with `jax.eval_shape` (nothing is
materialised, no data or teacher weight is read), the jitted train step is lowered with its real
shardings and donation (`Trainer.lower`, the one `atm.train` runs) for the topology's devices
(`jax.experimental.topologies`, which needs the TPU plugin: `pip install -e .[tpu_aot]`), compiled,
and one JSON line is printed:

    params, per-chip argument / output / temporary / alias bytes (XLA's memory_analysis), per-chip total
    (arguments + outputs + temporaries − the donated aliases), the chip's HBM, fits (total ≤ HBM,
    compared here: XLA's own verdict is not enough), compile seconds, FLOPs per step (XLA's
    cost_analysis of the per-chip program × chips, and the objective's analytic count), and the step time
    at 100% and 40% of the chip's bf16 peak.

Exit 0 when the step fits, 1 when it does not (the knobs to turn are named on stderr), 2 on bad input
(an unknown topology lists the known ones; a mesh whose product is not the device count, or DCN axes
without slices, are errors before anything compiles).

XLA's cost analysis counts what the chip executes (rematerialised forward passes included); the analytic
count is the MFU convention (6·params + attention per token). Where XLA counts a scanned layer's loop
body once, its figure falls below the analytic one: the step time uses the larger of the two.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import sys
import time

from absl import app, flags
from ml_collections import config_flags

GiB = 1024 ** 3


@dataclasses.dataclass(frozen=True)
class Chip:
    device_kind: str
    hbm_bytes: int  # per chip, what a program may use
    peak_flops: float  # dense bf16 FLOP/s per chip
    note: str


# Per-chip HBM and bf16 peak (vendor datasheets). v5e: 15.75 GiB is what JAX reports as a chip's
# bytes_limit (of 16 GiB); the other limits are the datasheet capacity [unverified as usable bytes].
CHIPS = {
    "v4": Chip("TPU v4", 32 * GiB, 275e12, "32 GiB HBM2 (datasheet)"),
    "v5e": Chip("TPU v5 lite", int(15.75 * GiB), 197e12, "15.75 GiB usable of 16 GiB HBM2"),
    "v5p": Chip("TPU v5", 95 * GiB, 459e12, "95 GiB HBM2e (datasheet)"),
    "v6e": Chip("TPU v6 lite", 32 * GiB, 918e12, "32 GiB HBM (datasheet)"),
}
TOPOLOGY_EXAMPLES = "v4:2x2x2, v5e:4x4, v5e:16x16, v5p:4x4x4, v6e:8x8"


class AotError(ValueError):
    """Bad input to atm.aot: exit 2 with this message."""


def parse_topology(name: str) -> tuple[str, tuple[int, ...]]:
    """'v5e:4x4' → ('v5e', (4, 4)), or AotError listing the known chips."""
    match = re.fullmatch(r"(v\d+[a-z]*):(\d+(?:x\d+){1,2})", name or "")
    if not match or match.group(1) not in CHIPS:
        raise AotError(f"--topology={name!r} is not a known TPU topology; use CHIP:AxB[xC] with CHIP one of "
                       f"{sorted(CHIPS)} (e.g. {TOPOLOGY_EXAMPLES})")
    return match.group(1), tuple(int(n) for n in match.group(2).split("x"))


def topology_devices(name: str, num_slices: int = 1) -> tuple[list, Chip, int]:
    """(the topology's devices, its chip, devices per chip), from the TPU plugin; no TPU needed."""
    family, dims = parse_topology(name)
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")  # another process may hold libtpu's lock file
    try:
        from jax.experimental import topologies
        topology = topologies.get_topology_desc(name, "tpu", num_slices=num_slices)
    except ImportError as e:
        raise AotError(f"--topology={name!r} needs the TPU plugin: pip install -e '.[tpu_aot]' ({e})") from e
    except Exception as e:  # noqa: BLE001  (libtpu's errors are runtime errors with long texts)
        message = " ".join(str(e).split())[:400]
        if "libtpu" in message.lower() and "not" in message.lower() and "found" in message.lower():
            raise AotError(f"--topology={name!r} needs the TPU plugin: pip install -e '.[tpu_aot]' ({message})") from e
        raise AotError(f"--topology={name!r} (--num_slices={num_slices}) was refused by the TPU plugin: {message}; "
                       f"known chips {sorted(CHIPS)}, e.g. {TOPOLOGY_EXAMPLES}") from e
    devices = list(topology.devices)
    chips = math.prod(dims) * num_slices
    return devices, CHIPS[family], max(1, len(devices) // chips)


def cpu_devices(count: int) -> list:
    import jax

    devices = jax.devices("cpu")
    if count > len(devices):
        raise AotError(f"--cpu_devices={count} but this process has {len(devices)} CPU devices; run atm.aot as its "
                       f"own process (it sets --xla_force_host_platform_device_count) or set XLA_FLAGS")
    return devices[:count]


def _first(analysis):
    """cost_analysis()/memory_analysis() are a dict or a one-element list, depending on the backend."""
    return analysis[0] if isinstance(analysis, (list, tuple)) else analysis


def out_of_memory(message: str) -> float | None:
    """GiB of temporaries from XLA:TPU's 'Ran out of memory on HBM' refusal, None for any other error."""
    match = re.search(r"RESOURCE_EXHAUSTED.*?required for HLO temporaries \(([\d.]+)([GMK])", message, re.S)
    if not match:
        return None
    return float(match.group(1)) * {"G": 1.0, "M": 1 / 1024, "K": 1 / 1024 ** 2}[match.group(2)]


def check(config, devices, chip: Chip | None, devices_per_chip: int = 1, topology: str = "") -> dict:
    """Compile `config`'s train step on `devices` and return the record (see the module docstring).
    `chip` None (a CPU mesh): no HBM, fits and step times are null."""
    import jax

    from atm import config as atm_config
    from atm import sharding, train
    from atm.bench import BenchVocabulary

    atm_config.validate(config)
    try:
        mesh = sharding.make_mesh(config.mesh, devices)
    except sharding.MeshError as e:
        raise AotError(f"{e} (the topology has {len(devices)} devices)") from e
    built = train.build(config, "", mesh=mesh, vocab=BenchVocabulary(size=config.model.vocab_size))
    trainer = built.trainer
    abstract = trainer.abstract_state()
    params = sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(abstract.params))
    frozen = sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(built.objective.frozen_abstract(mesh)))
    lowered = trainer.lower(abstract, trainer.abstract_batch())
    start = time.perf_counter()
    refusal = None
    try:
        compiled = lowered.compile()
        memory = compiled.memory_analysis()
        cost = _first(compiled.cost_analysis()) or {}
        per_device = {
            "argument": int(memory.argument_size_in_bytes), "output": int(memory.output_size_in_bytes),
            "temp": int(memory.temp_size_in_bytes), "alias": int(memory.alias_size_in_bytes),
            "code": int(getattr(memory, "generated_code_size_in_bytes", 0)),
        }
    except Exception as e:  # noqa: BLE001  (XLA:TPU refuses a program far over its HBM with RESOURCE_EXHAUSTED)
        refusal = out_of_memory(str(e))
        if refusal is None:
            raise
        cost, per_device = {}, {"argument": 0, "output": 0, "temp": int(refusal * GiB), "alias": 0, "code": 0}
    compile_s = time.perf_counter() - start
    total_device = per_device["argument"] + per_device["output"] + per_device["temp"] - per_device["alias"]
    num_devices = len(devices)
    chips = num_devices // devices_per_chip
    tokens = config.train.batch_size * config.data.seq_len
    flops_xla = float(cost.get("flops", 0.0)) * num_devices
    flops_analytic = built.objective.flops_per_token() * tokens
    record = {
        "config": config.objective, "topology": topology or f"cpu:{num_devices}",
        "device_kind": devices[0].device_kind, "devices": num_devices, "chips": chips,
        "mesh": {k: int(v) for k, v in mesh.shape.items()},
        "batch": config.train.batch_size, "seq_len": config.data.seq_len,
        "grad_accum_steps": config.train.grad_accum_steps, "remat_policy": config.model.remat_policy,
        "params": int(params), "frozen_params": int(frozen),  # frozen: teachers inside the step
        "per_chip_bytes": {k: v * devices_per_chip for k, v in per_device.items()},
        "per_chip_total_bytes": total_device * devices_per_chip,
        "per_chip_total_gib": round(total_device * devices_per_chip / GiB, 3),
        "chip_hbm_bytes": None, "chip_hbm_gib": None, "fits": None,
        "compile_s": round(compile_s, 2),
        "flops_per_step_xla": flops_xla, "flops_per_step_analytic": flops_analytic,
        "step_s_at_100pct_peak": None, "step_s_at_40pct_peak": None,
    }
    if refusal is not None:  # only the temporaries are known: XLA stopped before the rest
        record["xla_refused"] = f"RESOURCE_EXHAUSTED: HLO temporaries need {refusal} GiB per device"
    if chip is not None:
        flops_per_chip = max(flops_xla, flops_analytic) / chips
        record.update(chip_hbm_bytes=chip.hbm_bytes, chip_hbm_gib=round(chip.hbm_bytes / GiB, 3),
                      fits=total_device * devices_per_chip <= chip.hbm_bytes, chip_note=chip.note,
                      step_s_at_100pct_peak=round(flops_per_chip / chip.peak_flops, 4),
                      step_s_at_40pct_peak=round(flops_per_chip / (0.4 * chip.peak_flops), 4))
    return record


def knobs(config, record: dict) -> str:
    """What to turn when a step does not fit, with the current values."""
    return (f"the train step needs {record['per_chip_total_gib']} GiB per chip but a {record['topology']} chip has "
            f"{record['chip_hbm_gib']} GiB; turn: config.mesh.fsdp (shard params and optimizer state over more "
            f"chips; mesh now {record['mesh']}), config.model.remat_policy (now {config.model.remat_policy!r}; "
            f"'full' keeps the fewest activations), config.train.batch_size (now {config.train.batch_size}) or "
            f"config.train.grad_accum_steps (micro-batches; now {config.train.grad_accum_steps}), or a larger "
            f"topology")


def _define_flags():
    """Defined only when run as a program (as atm.bench), so importing atm.aot next to atm.main is safe."""
    flags.DEFINE_string("topology", "", f"TPU topology CHIP:AxB[xC], e.g. {TOPOLOGY_EXAMPLES}.")
    flags.DEFINE_integer("num_slices", 1, "Slices of --topology joined over DCN (config.mesh.dcn_*).")
    flags.DEFINE_integer("cpu_devices", 0, "Compile for a fake mesh of N CPU devices instead.")
    config_flags.DEFINE_config_file("config", None, "Path to an ml_collections config file (as atm.main).")
    flags.mark_flags_as_required(["config"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from absl import logging
    logging.set_verbosity(logging.WARNING)
    f = flags.FLAGS
    topology, num_slices, num_cpu = f.topology, f.num_slices, f.cpu_devices
    try:
        if bool(topology) == bool(num_cpu):
            raise AotError("give exactly one of --topology=CHIP:AxB (e.g. v5e:4x4) or --cpu_devices=N")
        if num_slices < 1 or (num_slices > 1 and not topology):
            raise AotError(f"--num_slices={num_slices}: must be >= 1, and > 1 only with --topology")
        if num_cpu < 0:
            raise AotError(f"--cpu_devices={num_cpu} must be >= 1")
        import jax
        if num_cpu:
            os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                       f" --xla_force_host_platform_device_count={num_cpu}").strip()
        jax.config.update("jax_platforms", "cpu")  # the host's own backend; a TPU topology needs no TPU
        from atm import cli
        config = cli.load_config_or_exit("atm.aot")
        if topology:
            devices, chip, per_chip = topology_devices(topology, num_slices)
        else:
            devices, chip, per_chip = cpu_devices(num_cpu), None, 1
        record = check(config, devices, chip, per_chip, topology +
                       (f" x{num_slices} slices" if num_slices > 1 else ""))
    except (AotError, ValueError, FileNotFoundError, KeyError) as e:
        print(f"atm.aot: error: {e.args[0] if isinstance(e, KeyError) and e.args else e}", file=sys.stderr, flush=True)
        sys.exit(2)
    print(json.dumps(record), flush=True)
    if record["fits"] is False:
        print(f"atm.aot: does not fit: {knobs(config, record)}", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    from atm import cli

    _define_flags()
    cli.run(main, "atm.aot")
