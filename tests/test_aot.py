"""python -m atm.aot: the ATM 700M teacher compiled for a TPU v5e 4x4 slice on this CPU (libtpu from
the tpu_aot extra), a batch that cannot fit, argument bytes on a fake CPU mesh against the sharding
arithmetic, and bad input failing before any compile."""
import json
import math
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def aot(*args, timeout=900):
    result = subprocess.run([sys.executable, "-m", "atm.aot", *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=timeout)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    return result, (json.loads(lines[-1]) if lines else None)


@pytest.mark.heavy
def test_700m_teacher_fits_a_v5e_4x4_slice():
    result, record = aot("--config=configs/atm_teacher.py:700m", "--topology=v5e:4x4")
    assert result.returncode == 0, result.stderr[-3000:]
    assert record["devices"] == record["chips"] == 16 and record["device_kind"] == "TPU v5 lite"
    assert record["mesh"] == {"data": 1, "fsdp": 16, "tensor": 1}
    assert 1.0e9 < record["params"] < 1.2e9  # 700M non-embedding + 250,002 x 1536 embeddings
    per_chip = record["per_chip_bytes"]
    # the state (fp32 params and AdamW's two moments) FSDP-sharded over 16 chips, plus 1/16 of the batch;
    # TPU layouts pad the head size 96 to 128 lanes (measured: 888.1 MB against 821.8 MB unpadded)
    assert per_chip["argument"] == pytest.approx(record["params"] * 12 / 16, rel=0.1)
    assert per_chip["alias"] == pytest.approx(per_chip["output"], rel=0.01)
    assert record["per_chip_total_bytes"] == (per_chip["argument"] + per_chip["output"] + per_chip["temp"]
                                              - per_chip["alias"])
    assert record["fits"] is True and 0 < record["per_chip_total_bytes"] <= record["chip_hbm_bytes"] == 15.75 * 2**30
    assert record["compile_s"] > 0 and record["flops_per_step_xla"] > 0
    assert record["step_s_at_40pct_peak"] == pytest.approx(record["step_s_at_100pct_peak"] / 0.4, rel=0.01)


def test_an_absurd_batch_does_not_fit_and_exits_non_zero():
    result, record = aot("--config=configs/atm_teacher.py:700m", "--topology=v5e:4x4",
                         "--config.train.batch_size=4096", "--config.train.grad_accum_steps=1")
    assert result.returncode == 1, result.stderr[-3000:]
    assert record["fits"] is False and record["per_chip_total_bytes"] > record["chip_hbm_bytes"]
    for knob in ("config.mesh.fsdp", "config.model.remat_policy", "config.train.batch_size",
                 "config.train.grad_accum_steps"):
        assert knob in result.stderr


def test_cpu_mesh_argument_bytes_are_the_sharding_arithmetic():
    """8 fake CPU devices (conftest), mesh data=2 fsdp=2 tensor=2: each device holds every state leaf
    divided by the mesh axes its spec names, and 1/4 of each batch row block."""
    from atm import aot as atm_aot
    from atm import sharding, train
    from atm.bench import BenchVocabulary
    from configs import tiny_mlm

    config = tiny_mlm.get_config()
    config.mesh.update(data=2, fsdp=2, tensor=2)
    config.train.batch_size = 16
    record = atm_aot.check(config, jax.devices()[:8], None)
    assert record["mesh"] == {"data": 2, "fsdp": 2, "tensor": 2} and record["fits"] is None

    mesh = sharding.make_mesh(config.mesh, jax.devices()[:8])
    trainer = train.build(config, "", mesh=mesh, vocab=BenchVocabulary(config.model.vocab_size)).trainer
    expected = 0
    for leaf in jax.tree_util.tree_leaves(trainer.abstract_state()) + list(trainer.abstract_batch().values()):
        parts = 1
        for axes in leaf.sharding.spec:
            for axis in (axes,) if isinstance(axes, str) else (axes or ()):
                parts *= dict(mesh.shape)[axis]
        expected += math.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize // parts
    assert record["per_chip_bytes"]["argument"] == expected
    # the embedding table (2000 x 64 fp32) is split over tensor (vocab) and fsdp (embed): a quarter each
    assert any(leaf.shape == (2000, 64) and leaf.sharding.shard_shape(leaf.shape) == (1000, 32)
               for leaf in jax.tree_util.tree_leaves(trainer.abstract_state().params))


def test_multi_slice_mesh_puts_dcn_data_across_slices():
    from atm import aot as atm_aot
    from atm import sharding

    devices, chip, per_chip = atm_aot.topology_devices("v5e:2x2", num_slices=2)
    assert len(devices) == 8 and per_chip == 1 and chip.device_kind == "TPU v5 lite"
    mesh = sharding.make_mesh({"data": 1, "fsdp": -1, "tensor": 1, "dcn_data": 2}, devices)
    assert dict(mesh.shape) == {"data": 2, "fsdp": 4, "tensor": 1}
    slices = np.vectorize(lambda d: d.slice_index)(mesh.devices)
    assert (slices[0] == 0).all() and (slices[1] == 1).all()  # data index = slice: only data crosses DCN
    with pytest.raises(sharding.MeshError, match="span 2 slices"):
        sharding.make_mesh({"data": 1, "fsdp": -1, "tensor": 1}, devices)


@pytest.mark.parametrize("args, message", [
    (["--topology=v5x:4x4"], "not a known TPU topology; use CHIP:AxB[xC] with CHIP one of ['v4', 'v5e', 'v5p', 'v6e']"),
    (["--topology=v5e:4x4", "--config.mesh.data=3", "--config.mesh.fsdp=1"],
     "needs 3 devices but 16 are available"),
    (["--cpu_devices=8", "--config.mesh.dcn_data=2"], "DCN axes need a multi-slice topology"),
    (["--cpu_devices=8", "--topology=v5e:4x4"], "give exactly one of --topology"),
    (["--cpu_devices=8", "--config.mesh.dta=2"], "unknown config key"),
])
def test_bad_input_is_named_before_compiling(args, message):
    result, record = aot("--config=configs/tiny_mlm.py", *args, timeout=120)
    assert result.returncode == 2 and record is None, result.stderr[-2000:]
    assert message in result.stderr, result.stderr[-2000:]
