"""The one training loop. Objectives plug in through `atm.objectives`; this file never changes for them.

Flow: config → mesh → data → objective → sharded TrainState (restored when a
checkpoint exists) → jitted steps with explicit shardings and a donated state →
metrics, evaluation and checkpoints.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import filecmp
import functools
import json
import math
import os
import signal
import time
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from atm import checkpoint as atm_checkpoint
from atm import config as atm_config
from atm import metrics as atm_metrics
from atm import objectives, preemption, sharding

EVAL_RNG_SEED = 1_000_003  # eval masks are fixed across the run so eval losses compare


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    opt_state: Any


class NonFiniteLossError(FloatingPointError):
    pass


def learning_rate_schedule(opt: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    """Linear warmup to the peak, then linear or cosine decay to `end_learning_rate_fraction`·peak."""
    peak, warmup = opt.learning_rate, max(0, min(opt.warmup_steps, total_steps))
    end = peak * opt.end_learning_rate_fraction
    decay_steps = max(1, total_steps - warmup)
    if opt.schedule == "cosine":
        decay = optax.cosine_decay_schedule(peak, decay_steps, alpha=opt.end_learning_rate_fraction)
    elif opt.schedule == "linear":
        decay = optax.linear_schedule(peak, end, decay_steps)
    else:
        decay = optax.constant_schedule(peak)
    if warmup == 0:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), decay], [warmup])


def step_rngs(seed: int, step) -> tuple[jax.Array, jax.Array]:
    """(masking key, loss key) of train step `step`: the offline teacher cache
    (`atm.distill.cache`) redraws exactly the masks the training step will draw."""
    prepare_rng, loss_rng = jax.random.split(jax.random.fold_in(jax.random.key(seed), step))
    return prepare_rng, loss_rng


def weight_decay_mask(params: Any) -> Any:
    """Decay matrices only: no weight decay on LayerNorm scales/biases or any bias."""
    def decays(path, _):
        name = getattr(path[-1], "key", str(path[-1]))
        return name not in ("bias", "scale", "output_bias")
    return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(opt: ml_collections.ConfigDict, total_steps: int):
    schedule = learning_rate_schedule(opt, total_steps)
    tx = optax.chain(
        optax.clip_by_global_norm(opt.grad_clip_norm) if opt.grad_clip_norm > 0 else optax.identity(),
        optax.adamw(schedule, b1=opt.b1, b2=opt.b2, eps=opt.eps, weight_decay=opt.weight_decay,
                    mask=weight_decay_mask))
    return tx, schedule


def _split_microbatches(batch: dict, num: int) -> dict:
    """(B, ...) → (num, B/num, ...) taking rows i·num + a into micro-batch a, so each device's
    contiguous rows stay on that device."""
    def split(x):
        return jnp.swapaxes(x.reshape((x.shape[0] // num, num) + x.shape[1:]), 0, 1)
    return jax.tree_util.tree_map(split, batch)


class Trainer:
    """Jitted, sharded train and eval steps for one objective on one mesh."""

    def __init__(self, config: ml_collections.ConfigDict, objective: objectives.Objective, mesh: jax.sharding.Mesh):
        self.config, self.objective, self.mesh = config, objective, mesh
        self.tx, self.schedule = make_optimizer(config.optimizer, config.train.steps)
        batch = objective.example_batch(config.train.batch_size)
        self.batch_shardings = {k: sharding.batch_sharding(mesh, v.ndim) for k, v in batch.items()}
        shape_key = jax.random.key(0)  # made before the mesh is set: it must not land on a compile-only topology
        with self.activate():
            boxed = jax.eval_shape(self._init_boxed_state, shape_key)
        self.state_shardings = sharding.logical_sharding(mesh, nn.get_partition_spec(boxed))
        sharding.check_divisible(sharding.strip_boxes(boxed), self.state_shardings)
        for name, spec in batch.items():
            sharding.check_divisible({name: spec}, {name: self.batch_shardings[name]})
        self._train_step = jax.jit(
            self._train_step_fn, in_shardings=(self.state_shardings, self.batch_shardings, None),
            out_shardings=(self.state_shardings, sharding.replicated(mesh)), donate_argnums=(0,))
        self._eval_step = jax.jit(
            self._eval_step_fn, in_shardings=(self.state_shardings.params, self.batch_shardings, None),
            out_shardings=sharding.replicated(mesh))

    @functools.cached_property
    def frozen(self) -> Any:
        """The objective's frozen params (teachers) on the mesh, read on first use: `lower` needs only
        their shapes (`objective.frozen_abstract`)."""
        return self.objective.frozen_params(self.mesh)

    def activate(self):
        """Context in which logical axis names resolve against this mesh."""
        return sharding.MeshContext(self.mesh)

    # --- state ------------------------------------------------------------------------------
    def _init_boxed_state(self, rng):
        example = self.objective.example_batch(self.config.train.batch_size)
        params = self.objective.init_params(rng, {k: jnp.zeros(v.shape, v.dtype) for k, v in example.items()})
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=self.tx.init(params))

    def init_state(self) -> TrainState:
        init = jax.jit(lambda rng: nn.unbox(self._init_boxed_state(rng)), out_shardings=self.state_shardings)
        key = jax.random.key(self.config.seed)  # made before the mesh is set (see __init__)
        with self.activate():
            return init(key)

    def abstract_state(self) -> TrainState:
        """ShapeDtypeStructs with shardings: the restore target for orbax."""
        shape_key = jax.random.key(0)  # made before the mesh is set (see __init__)
        with self.activate():
            shapes = jax.eval_shape(lambda rng: nn.unbox(self._init_boxed_state(rng)), shape_key)
        return jax.tree_util.tree_map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                                      shapes, self.state_shardings)

    # --- steps ------------------------------------------------------------------------------
    def _train_step_fn(self, state: TrainState, batch: dict, frozen: Any):
        prepare_rng, loss_rng = step_rngs(self.config.seed, state.step)
        batch = self.objective.prepare(batch, prepare_rng)  # whole batch: masks ignore micro-batching

        def summed_loss(params, micro, r):
            loss_sum, sums = self.objective.loss(params, frozen, micro, r, True)
            return loss_sum, {**sums, "loss": loss_sum}

        grad_fn = jax.grad(summed_loss, has_aux=True)
        accum = self.config.train.grad_accum_steps
        if accum == 1:
            grads, sums = grad_fn(state.params, batch, loss_rng)
        else:
            def like_params(grads):  # the carried gradient sum is sharded as the params (else XLA may replicate it)
                return jax.lax.with_sharding_constraint(grads, self.state_shardings.params)

            def body(carry, inputs):
                micro, index = inputs
                g, s = grad_fn(state.params, micro, jax.random.fold_in(loss_rng, index))
                g_sum, s_sum = carry
                return (like_params(jax.tree_util.tree_map(jnp.add, g_sum, g)),
                        jax.tree_util.tree_map(jnp.add, s_sum, s)), None
            micro_batches = _split_microbatches(batch, accum)
            first = jax.tree_util.tree_map(lambda x: x[0], micro_batches)
            zeros = jax.tree_util.tree_map(jnp.zeros_like, jax.eval_shape(grad_fn, state.params, first, loss_rng))
            zeros = (like_params(zeros[0]), zeros[1])
            (grads, sums), _ = jax.lax.scan(body, zeros, (micro_batches, jnp.arange(accum)))
        weight = jnp.maximum(sums["weight"], 1.0)
        grads = jax.tree_util.tree_map(lambda g: g / weight, grads)
        updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
        new_params = optax.apply_updates(state.params, updates)
        metrics = {k: v / weight for k, v in sums.items() if k != "weight"}
        metrics.update(grad_norm=optax.tree.norm(grads), learning_rate=self.schedule(state.step),
                       weight=sums["weight"])
        # Non-finite losses are caught on the host, which checks every step's metrics before any
        # checkpoint is written, so a bad update never reaches disk.
        new_state = TrainState(step=state.step + 1, params=new_params, opt_state=opt_state)
        return new_state, metrics

    def _eval_step_fn(self, params, batch: dict, frozen: Any):
        rng = jax.random.key(EVAL_RNG_SEED)
        return self.objective.eval_outputs(params, frozen, self.objective.prepare(batch, rng), rng)

    def train_step(self, state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        with self.activate():
            return self._train_step(state, batch, self.frozen)

    def eval_outputs(self, params, batch: dict) -> dict:
        with self.activate():
            return self._eval_step(params, batch, self.frozen)

    def global_batch(self, local_batch: dict) -> dict:
        return sharding.global_batch_from_local(self.mesh, local_batch, self.config.train.batch_size)

    # --- ahead of time ----------------------------------------------------------------------
    def abstract_batch(self) -> dict:
        """ShapeDtypeStructs with shardings of one global training batch."""
        return {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=self.batch_shardings[k])
                for k, v in self.objective.example_batch(self.config.train.batch_size).items()}

    def lower(self, state: Any = None, batch: dict | None = None) -> jax.stages.Lowered:
        """The train step lowered with its real shardings and donation, from abstract (or concrete)
        inputs; default: `abstract_state()` and `abstract_batch()`. `.compile()` it to check memory
        and cost before a run (the frozen params enter as shapes: no teacher weight is read)."""
        frozen = self.objective.frozen_abstract(self.mesh)
        with self.activate():
            return self._train_step.lower(self.abstract_state() if state is None else state,
                                          self.abstract_batch() if batch is None else batch, frozen)


@dataclasses.dataclass
class Built:
    """Everything `build` assembles for one config: the run's pieces, before any state exists."""
    config: ml_collections.ConfigDict
    mesh: jax.sharding.Mesh
    vocab: Any
    train_data: Any  # a batcher; None when built on a given vocabulary
    eval_data: Any
    data_stats: dict
    objective: objectives.Objective
    trainer: Trainer


def build(config: ml_collections.ConfigDict, workdir: str, mesh: jax.sharding.Mesh | None = None,
          devices=None, vocab: Any = None, train_data: Any = None) -> Built:
    """config → mesh → data → objective → Trainer, the one place they are assembled (the loop,
    evaluation, the teacher cache, benchmarks, tests and reproduce scripts all call it).

    `mesh`: an existing mesh (else one from config.mesh over `devices`, default all). `vocab`: build
    the objective on this vocabulary (and `train_data`, when several configs share one load) without
    reading any data: restoring a run to infer, benchmarks on random ids. Else the objective's
    `build_data(config, workdir)` makes the vocabulary and batchers."""
    if mesh is None:
        mesh = sharding.make_mesh(config.mesh, devices)  # a wrong mesh fails here, before any data or compile
    objective_cls = objectives.get(config.objective)
    if vocab is None:
        vocab, train_data, eval_data, data_stats = objective_cls.build_data(config, workdir)
    else:
        eval_data, data_stats = None, {}
    objective = objective_cls(config, vocab, train_data)
    return Built(config, mesh, vocab, train_data, eval_data, data_stats, objective, Trainer(config, objective, mesh))


def evaluate(trainer: Trainer, params, eval_data, num_batches: int) -> dict:
    """Eval figures over `num_batches` batches (-1: one whole ordered pass), prefixed eval_."""
    if num_batches < 0:
        num_batches = eval_data.num_batches
    outputs, batches = [], []
    for i in range(num_batches):
        local = eval_data.batch(i)
        outputs.append(jax.device_get(trainer.eval_outputs(params, trainer.global_batch(local))))
        batches.append(local)
    return {f"eval_{k}": v for k, v in trainer.objective.summarize(outputs, batches, eval_data).items()}


def initialize_from(trainer: Trainer, state: TrainState, directory: str) -> TrainState:
    """Params from the newest intact checkpoint of another run (`config.init_from`); a fresh optimizer."""
    ckpt_dir = os.path.join(os.path.abspath(directory), "checkpoints")
    if not os.path.isdir(ckpt_dir):
        raise FileNotFoundError(f"config.init_from={directory!r}: no checkpoint under {ckpt_dir}")
    step, pretrained = atm_checkpoint.Checkpointer(ckpt_dir, 1, False).latest_intact_params(
        f"config.init_from={directory!r}")
    params, copied = trainer.objective.load_pretrained(jax.device_get(state.params), pretrained)
    if not copied:
        raise ValueError(f"config.init_from={directory!r}: no parameter path matches this model's")
    total = len(jax.tree_util.tree_leaves(params))
    print(f"Initialised {len(copied)} of {total} tensors from {ckpt_dir} step {step} (the rest are fresh)",
          flush=True)
    return state.replace(params=jax.device_put(params, trainer.state_shardings.params))


def inherit_vocab(config: ml_collections.ConfigDict):
    """A run started from `config.init_from` uses that run's vocabulary: its embedding rows are
    those pieces. Without config.data.vocab it is taken over (an atm run's vocab.model, an imported
    checkpoint's tokenizer/ folder); a different SentencePiece model is an error."""
    if not config.init_from:
        return
    source = os.path.abspath(config.init_from)
    kept = [p for p in (os.path.join(source, "vocab.model"), os.path.join(source, "tokenizer")) if os.path.exists(p)]
    if not kept:
        return  # a run from before vocabularies were kept in the run directory: config.data.vocab decides
    inherited = kept[0]
    if not config.data.vocab:
        config.data.vocab = inherited
    elif os.path.isfile(inherited) and os.path.isfile(config.data.vocab) and not filecmp.cmp(
            config.data.vocab, inherited, shallow=False):
        raise ValueError(f"config.data.vocab={config.data.vocab!r} is not the vocabulary of config.init_from="
                         f"{config.init_from!r} ({inherited}); its embeddings belong to that one")


# Keys a run fills in itself when the config leaves them empty (the vocabulary of init_from or the teacher).
RESOLVED_WHEN_EMPTY = ("data.vocab",)


def config_changes(config: ml_collections.ConfigDict, workdir: str, limit: int = 8) -> str:
    """'model.num_layers: 2 → 3, ...': where `config` differs from the run's saved config.json."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return ""
    with open(path) as f:
        saved = flatten(json.load(f))
    now = flatten(json.loads(config.to_json_best_effort()))
    # Keys the saved config lacks are settings added to atm since that run: not a change by the user.
    changed = [f"{k}: {saved[k]!r} → {now.get(k, '(absent)')!r}" for k in sorted(saved)
               if saved[k] != now.get(k, "(absent)") and not (k in RESOLVED_WHEN_EMPTY and now.get(k) == "")]
    return ", ".join(changed[:limit]) + (f" and {len(changed) - limit} more" if len(changed) > limit else "")


def flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def write_resolved_config(config: ml_collections.ConfigDict, workdir: str):
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2, sort_keys=True))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Train `config` in `workdir`, resuming from its latest checkpoint. Returns the final summary."""
    atm_config.validate(config)
    workdir = os.path.abspath(workdir)
    if os.path.exists(os.path.join(workdir, "hf_import.json")):  # its checkpoint holds params only: never resume it
        raise ValueError(f"{workdir} is an imported checkpoint (python -m atm.convert import); train in a new "
                         f"workdir with --config.init_from={workdir}")
    os.makedirs(workdir, exist_ok=True)
    mesh = sharding.make_mesh(config.mesh)  # a wrong mesh fails here, before any compile
    inherit_vocab(config)
    built = build(config, workdir, mesh)
    train_data, eval_data, data_stats = built.train_data, built.eval_data, built.data_stats
    objective, trainer = built.objective, built.trainer
    trainer.frozen  # noqa: B018  teachers are read and placed now: a bad one fails before anything is written
    ckpt = atm_checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), config.checkpoint.keep,
                                       config.checkpoint.async_save)
    restored = ckpt.restore_latest(trainer.abstract_state(), lambda: config_changes(config, workdir))
    if restored:
        step, state, data_state = restored
        train_data.check_state(data_state, f"checkpoint step {step} in {ckpt.directory}")
        step = data_state["next_step"]
        print(f"Resumed from checkpoint at step {step} ({ckpt.directory})", flush=True)
    else:
        step, state = 0, trainer.init_state()
        if config.init_from:
            state = initialize_from(trainer, state, config.init_from)
        elif config.student_init.mode != "random":
            from atm import student_init
            state = student_init.initialize(trainer, state, config.student_init)
    write_resolved_config(config, workdir)
    total = config.train.steps
    log = atm_metrics.MetricsLog(workdir, total, resume_step=step)
    tokens_per_step = config.train.batch_size * config.data.seq_len
    flops_per_token = objective.flops_per_token()
    if step == 0 and jax.process_index() == 0:
        n_params = sum(x.size for x in jax.tree_util.tree_leaves(state.params))
        print(f"atm: objective={config.objective} params={n_params:,} devices={jax.device_count()} "
              f"mesh={dict(mesh.shape)} steps={total} batch={config.train.batch_size}x{config.data.seq_len}",
              flush=True)

    pending: list[tuple[int, dict]] = []  # per-step metrics not yet fetched (fetching syncs)
    last: dict = {}
    window_start, window_step = time.time(), step
    prefetch = concurrent.futures.ThreadPoolExecutor(1)
    next_batch = prefetch.submit(train_data.batch, step)

    def check_and_fetch():
        nonlocal pending
        fetched = jax.device_get(pending)
        pending = []
        for s, m in fetched:
            if not (math.isfinite(m["loss"]) and math.isfinite(m["grad_norm"])):
                raise NonFiniteLossError(
                    f"non-finite loss ({m['loss']}) or gradient norm ({m['grad_norm']}) at step {s}; stopping. "
                    f"The last good checkpoint in {ckpt.directory} is intact (steps {ckpt.steps()})")
        return fetched

    watch = preemption.StopWatch()
    try:
        with watch:
            while step < total and not watch.should_stop(step):
                local = next_batch.result()
                if step + 1 < total:
                    next_batch = prefetch.submit(train_data.batch, step + 1)
                state, step_metrics = trainer.train_step(state, trainer.global_batch(local))
                step += 1
                pending.append((step, step_metrics))
                is_log = step % config.train.log_every == 0 or step == total
                is_ckpt = step % config.checkpoint.every == 0 or step == total
                is_eval = eval_data is not None and (step % config.train.eval_every == 0 or step == total)
                if is_log or is_ckpt or is_eval:
                    fetched = check_and_fetch()
                    now = time.time()
                    tokens_per_s = tokens_per_step * (step - window_step) / max(now - window_start, 1e-9)
                    window_start, window_step = now, step
                    scalars = {k: float(v) for k, v in fetched[-1][1].items() if k != "weight"}
                    if not last:  # the first record carries the data statistics (malformed rows skipped)
                        scalars.update(data_stats)
                    scalars.update(tokens_per_s=tokens_per_s,
                                   mfu=atm_metrics.mfu(flops_per_token, tokens_per_s, jax.device_count()))
                    if is_eval:
                        scalars.update(evaluate(trainer, state.params, eval_data, config.train.eval_batches))
                    last = scalars
                    if is_log or is_eval:
                        log.write(step, scalars)
                if is_ckpt:
                    ckpt.save(step, state, train_data.state(step), force=step == total)
                if step == config.train.kill_at_step:
                    kill = signal.Signals[config.train.kill_signal]
                    if kill == signal.SIGKILL:
                        ckpt.wait()
                    os.kill(os.getpid(), kill)
            if step < total:  # stopped by a signal: keep this step's work (never a NaN state: checked first)
                check_and_fetch()
                if step not in ckpt.steps():
                    ckpt.save(step, state, train_data.state(step), force=True)
                ckpt.wait()
                raise preemption.Preempted(watch.signum, step, ckpt.directory)
    finally:
        prefetch.shutdown(wait=False)
        ckpt.close()
        log.close()
    summary = {"step": step, **last, "workdir": workdir}
    if jax.process_index() == 0:
        print("Summary: " + json.dumps({k: (round(v, 5) if isinstance(v, float) else v)
                                        for k, v in summary.items()}), flush=True)
    return summary
