"""Training on 8 fake devices equals one device, for data, FSDP and mixed meshes."""
import jax
import numpy as np
import pytest

from atm import sharding
from helpers import run_steps, tiny_config

STEPS = 4


def relative_difference(params_a, params_b) -> float:
    """‖a − b‖ / ‖b‖ over all parameters (per-leaf ratios blow up on leaves that stay ~0)."""
    diff = sum(float(np.sum((a - b) ** 2)) for a, b in zip(jax.tree_util.tree_leaves(params_a),
                                                            jax.tree_util.tree_leaves(params_b)))
    norm = sum(float(np.sum(b ** 2)) for b in jax.tree_util.tree_leaves(params_b))
    return (diff / norm) ** 0.5


@pytest.fixture(scope="module")
def single_device(tmp_path_factory):
    config = tiny_config(**{"train.steps": STEPS, "model.hidden_dropout": 0.1})
    return run_steps(config, str(tmp_path_factory.mktemp("one")), jax.devices()[:1])


@pytest.mark.parametrize("mesh", [dict(data=8), dict(data=1, fsdp=8), dict(data=2, fsdp=2, tensor=2)],
                         ids=["data8", "fsdp8", "data2_fsdp2_tensor2"])
def test_mesh_matches_single_device(mesh, single_device, tmp_path):
    config = tiny_config(**{"train.steps": STEPS, "model.hidden_dropout": 0.1})
    config.mesh.update(mesh)
    losses, params = run_steps(config, str(tmp_path))
    ref_losses, ref_params = single_device
    assert np.all(np.abs(losses - ref_losses) <= 1e-5 * np.abs(ref_losses)), (losses, ref_losses)
    assert relative_difference(params, ref_params) < 1e-5
    assert losses[-1] < losses[0]  # it did train


def test_gradient_accumulation_matches_one_big_batch(single_device, tmp_path):
    # Masks are drawn for the whole batch before micro-batching, so only dropout differs: turn it off.
    plain = run_steps(tiny_config(**{"train.steps": 3}), str(tmp_path / "a"), jax.devices()[:1])
    accum = run_steps(tiny_config(**{"train.steps": 3, "train.grad_accum_steps": 4}), str(tmp_path / "b"),
                      jax.devices()[:1])
    np.testing.assert_allclose(accum[0], plain[0], rtol=1e-5)
    assert relative_difference(accum[1], plain[1]) < 1e-5


def test_mesh_errors_name_the_problem():
    assert sharding.resolve_mesh_shape({"data": -1, "fsdp": 2, "tensor": 1}, 8) == (4, 2, 1)
    with pytest.raises(sharding.MeshError, match="needs 16 devices but 8"):
        sharding.resolve_mesh_shape({"data": 4, "fsdp": 4, "tensor": 1}, 8)
    with pytest.raises(sharding.MeshError, match="not divisible"):
        sharding.resolve_mesh_shape({"data": -1, "fsdp": 3}, 8)
    with pytest.raises(sharding.MeshError, match="unknown axes"):
        sharding.resolve_mesh_shape({"model": 2}, 8)


def test_indivisible_parameter_fails_before_compile(tmp_path):
    config = tiny_config()
    config.mesh.update(dict(data=1, tensor=8))  # vocab 500 does not split 8 ways
    with pytest.raises(sharding.MeshError, match=r"word_embeddings.*500.*tensor"):
        run_steps(config, str(tmp_path))


def test_lowered_train_step_compiles_ahead_of_time_and_equals_the_jitted_step(tmp_path):
    """`Trainer.lower()` from abstract inputs with the real FSDP shardings: memory and cost before any
    state exists, and the compiled step gives the jitted step's loss on the same state and batch."""
    from atm import train

    config = tiny_config()
    config.mesh.update(dict(data=2, fsdp=4))
    built = train.build(config, str(tmp_path))
    trainer = built.trainer
    lowered = trainer.lower()
    assert isinstance(lowered, jax.stages.Lowered)
    compiled = lowered.compile()
    memory = compiled.memory_analysis()
    n_params = sum(int(np.prod(s.shape)) for s in jax.tree_util.tree_leaves(trainer.abstract_state().params))
    # Arguments per device: params and two Adam moments, FSDP-sharded 8 ways, plus this device's batch rows.
    assert 3 * 4 * n_params / 8 <= memory.argument_size_in_bytes < 3 * 4 * n_params
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    assert cost["flops"] > 0
    batch = trainer.global_batch(built.train_data.batch(0))
    _, jitted = trainer.train_step(trainer.init_state(), batch)
    with trainer.activate():
        _, aot = compiled(trainer.init_state(), batch, trainer.frozen)
    assert float(aot["loss"]) == float(jitted["loss"])
