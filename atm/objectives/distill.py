"""Teacher-logit distillation on unlabelled text (ATM, arXiv 2206.07808; PAPERS.md §1).

Over the masked positions M of the MLM stream (the same dynamic masks as `mlm`):

    L = α·τ²·KL(σ(z_T/τ) ‖ σ(z_S/τ)) + (1−α)·L_MLM          distill.loss = "kl"
    L = α·mean_V (z_S − z_T)² + (1−α)·L_MLM                  distill.loss = "mse"
      + β·hidden-state MSE                                   distill.hidden_weight = β > 0

α, τ are [unverified] in the paper (defaults 0.5 and 2.0). The teacher is a finished atm run
(`distill.teacher`: an mlm or distill run, its own size and preset, the same vocabulary — a
different one is an error). Its params are the objective's `frozen_params`, sharded on the
student's mesh with the teacher's own logical axes; its forward runs inside the student's jitted
step in the student's compute dtype (`config.model.dtype`). A distill run is itself a teacher, so
ATM's two hops are two configs: stage-2 teacher → intermediate student → small student.

Hidden-state MSE: for each pair of `distill.layer_map` (student layer i ← teacher layer
map[i]; default "uniform", see atm/student_init.py for the forms) the mean over tokens and
features of (P·h_S − h_T)², where P is a learned projection (params `distill_projection`) when
the widths differ and the identity otherwise; averaged over pairs, each row weighted by its number
of masked slots so that it sums like the MLM loss (gradient accumulation stays exact).

Offline teacher logits (`distill.cache`, written by `python -m atm.distill.cache`): the teacher's
top-k logits per masked slot are read from the batch instead of running the teacher; the teacher's
distribution is the softmax over those k (k = vocabulary size reproduces the online loss).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from atm import config as atm_config
from atm.distill import teacher as teacher_lib
from atm.models.encoder import EncoderForMLM, EncoderLayer, zeros_init
from atm.objectives import register
from atm.objectives.mlm import MaskedLM, encoder_flops_per_token, masked_lm_sums

ABSENT = -1e9  # logit of a vocabulary entry the top-k cache does not hold: probability exactly 0
STUDENT_PARTS = ("encoder", "mlm_head")


def kd_per_position(student_xV: jax.Array, teacher_xV: jax.Array, kind: str, temperature: float,
                    present_xV: jax.Array | None = None) -> jax.Array:
    """Per-position distillation loss, fp32, for any leading shape.

    kl:  τ²·KL(σ(z_T/τ) ‖ σ(z_S/τ));  mse: mean over the present entries of (z_S − z_T)².
    `present_xV` (bool) marks the teacher entries known (top-k cache); None: all of them."""
    student = student_xV.astype(jnp.float32)
    teacher = teacher_xV.astype(jnp.float32)
    if kind == "kl":
        t = teacher / temperature
        if present_xV is not None:
            t = jnp.where(present_xV, t, ABSENT)
        log_p_teacher = jax.nn.log_softmax(t, axis=-1)
        p_teacher = jnp.exp(log_p_teacher)
        log_q_student = jax.nn.log_softmax(student / temperature, axis=-1)
        kl = jnp.sum(jnp.where(p_teacher > 0, p_teacher * (log_p_teacher - log_q_student), 0.0), axis=-1)
        return temperature ** 2 * kl
    if kind == "mse":
        squared = (student - teacher) ** 2
        if present_xV is None:
            return squared.mean(-1)
        return jnp.sum(jnp.where(present_xV, squared, 0.0), -1) / jnp.maximum(present_xV.sum(-1), 1)
    raise ValueError(f"unknown distillation loss {kind!r}: use kl or mse")


def dense_from_top_k(values_xK: jax.Array, ids_xK: jax.Array, vocab_size: int) -> tuple[jax.Array, jax.Array]:
    """(logits_xV with the k known entries, ABSENT elsewhere; present_xV) from top-k values and ids.

    A scatter into a (…, V) array: O(V + k) per position, where a one-hot compare would build
    (…, k, V). It is a constant of the loss (no gradient flows through it)."""
    lead = ids_xK.shape[:-1]
    index = tuple(jnp.broadcast_to(jnp.arange(n).reshape((-1,) + (1,) * (len(lead) - i)), ids_xK.shape)
                  for i, n in enumerate(lead)) + (ids_xK,)
    logits = jnp.full(lead + (vocab_size,), ABSENT, jnp.float32).at[index].set(values_xK.astype(jnp.float32))
    present = jnp.zeros(lead + (vocab_size,), bool).at[index].set(True)
    return logits, present


def layer_outputs(intermediates: dict, num_layers: int) -> list[jax.Array]:
    """Each encoder layer's output, from `capture_intermediates` of a non-scanned encoder."""
    encoder = intermediates["encoder"]
    return [encoder[f"layer_{i}"]["__call__"][0][0] for i in range(num_layers)]


def _is_layer(module, method_name):
    return isinstance(module, EncoderLayer) and method_name == "__call__"


class HiddenProjection(nn.Module):
    """Student width → teacher width, for hidden-state MSE between encoders of different widths."""
    width: int

    @nn.compact
    def __call__(self, h):
        return nn.Dense(self.width, kernel_init=nn.with_logical_partitioning(
            nn.initializers.lecun_normal(), ("embed", None)), bias_init=zeros_init((None,)), name="dense")(h)


@register
class Distill(MaskedLM):
    name = "distill"

    @staticmethod
    def default_sections():
        return {**MaskedLM.default_sections(), "distill": ml_collections.ConfigDict({
            "teacher": "",  # a finished mlm or distill run directory (its latest checkpoint)
            "cache": "",  # offline teacher logits from `python -m atm.distill.cache` (instead of running the teacher)
            "alpha": 0.5,  # weight of the distillation term; 1 − alpha weighs the MLM loss [unverified]
            "temperature": 2.0,  # τ for loss=kl [unverified]
            "loss": "kl",  # kl | mse (on logits)
            "hidden_weight": 0.0,  # > 0 adds hidden-state MSE (needs the online teacher)
            "layer_map": "uniform",  # hidden-state pairs: student layer i ← teacher layer map[i]
        })}

    @classmethod
    def build_data(cls, config, workdir):
        from atm.distill import cache as cache_lib

        dc = config.distill
        if not config.data.vocab:  # the teacher's vocabulary, unless one is given (then checked)
            if dc.cache:
                config.data.vocab = cache_lib.read_meta(dc.cache)["vocab"]
            elif dc.teacher:
                config.data.vocab = teacher_lib.load_run(dc.teacher, "config.distill.teacher",
                                                         ("mlm", "distill")).vocab_path
        vocab, train, evaluation, stats = super().build_data(config, workdir)
        if dc.cache:
            train, evaluation = cache_lib.attach(dc.cache, config, vocab, train, evaluation)
        return vocab, train, evaluation, stats

    @staticmethod
    def value_ranges():
        return {**MaskedLM.value_ranges(), "distill.alpha": atm_config.UNIT,
                "distill.temperature": atm_config.POSITIVE, "distill.hidden_weight": atm_config.NON_NEGATIVE}

    def __init__(self, config, vocab, train_data=None):
        super().__init__(config, vocab, train_data)
        from atm.distill import cache as cache_lib
        from atm.student_init import resolve_layer_map

        dc = config.distill
        if dc.loss not in ("kl", "mse"):
            raise ValueError(f"config.distill.loss={dc.loss!r}: use kl or mse")
        if not 0.0 <= dc.alpha <= 1.0:
            raise ValueError(f"config.distill.alpha={dc.alpha} must be within [0, 1]")
        if dc.temperature <= 0 or dc.hidden_weight < 0:
            raise ValueError(f"config.distill.temperature={dc.temperature} must be > 0 and "
                             f"config.distill.hidden_weight={dc.hidden_weight} >= 0")
        if not dc.teacher and not dc.cache:
            raise ValueError("the distill objective needs config.distill.teacher (a run directory) "
                             "or config.distill.cache (offline teacher logits)")
        self.cache = cache_lib.read_meta(dc.cache) if dc.cache else None
        self.teacher_run = self.teacher_model = self.projection = None
        self.layer_pairs: list[tuple[int, int]] = []
        if self.cache is not None:
            if dc.hidden_weight > 0:
                raise ValueError("config.distill.hidden_weight > 0 needs the online teacher (config.distill.teacher); "
                                 "the offline cache holds logits only")
            return
        run = teacher_lib.load_run(dc.teacher, "config.distill.teacher", ("mlm", "distill"))
        teacher_lib.check_same_vocabulary(run, vocab, "config.distill.teacher")
        self.teacher_cfg = run.model_config(self.model_cfg.dtype)
        if self.teacher_cfg.vocab_size != self.model_cfg.vocab_size:
            raise ValueError(f"config.model.vocab_size={self.model_cfg.vocab_size} but the teacher "
                             f"{run.directory} has {self.teacher_cfg.vocab_size}: distillation needs the same vocabulary")
        self.teacher_run, self.teacher_model = run, EncoderForMLM(self.teacher_cfg, deterministic=True)
        if dc.hidden_weight > 0:
            if self.model_cfg.scan_layers or self.teacher_cfg.scan_layers:
                raise ValueError("config.distill.hidden_weight > 0 reads each layer's output, which needs "
                                 "model.scan_layers=False in the student and the teacher")
            teacher_layers = resolve_layer_map(dc.layer_map, self.model_cfg.num_layers, self.teacher_cfg.num_layers,
                                               "config.distill.layer_map")
            self.layer_pairs = list(enumerate(teacher_layers))
            if self.teacher_cfg.hidden_size != self.model_cfg.hidden_size:
                self.projection = HiddenProjection(self.teacher_cfg.hidden_size)

    def example_batch(self, batch_size):
        batch = super().example_batch(batch_size)
        if self.cache is not None:
            shape = (batch_size, self.num_slots, self.cache["top_k"])
            batch["teacher_top_k_logits"] = jax.ShapeDtypeStruct(shape, jnp.float32)
            batch["teacher_top_k_ids"] = jax.ShapeDtypeStruct(shape, jnp.int32)
        return batch

    def init_params(self, rng, batch):
        encoder_rng, projection_rng = jax.random.split(rng)
        params = super().init_params(encoder_rng, batch)
        if self.projection is not None:
            h = jnp.zeros((1, self.model_cfg.hidden_size), jnp.float32)
            params = {**params, "distill_projection": self.projection.init(projection_rng, h)["params"]}
        return params

    def frozen_params(self, mesh):
        if self.teacher_model is None:
            return {}
        ids = jnp.zeros((1, self.seq_len), jnp.int32)
        example = (ids, ids, ids, None, jnp.zeros((1, self.num_slots), jnp.int32))
        frozen = teacher_lib.shard_params(self.teacher_model, self.teacher_run.params, example, mesh,
                                          "config.distill.teacher")
        self.teacher_run.params = None  # the host copy is no longer needed
        return frozen

    def _forward(self, model, params, batch, rng=None):
        """(logits at the masked slots, each layer's output or None)."""
        args = (batch["input_ids"], batch["segment_ids"], batch["positions"])
        kwargs = dict(masked_positions_BxM=batch["masked_positions"], rngs={"dropout": rng} if rng is not None else {})
        if not self.layer_pairs:
            return model.apply({"params": params}, *args, **kwargs), None
        logits, state = model.apply({"params": params}, *args, capture_intermediates=_is_layer, **kwargs)
        return logits, layer_outputs(state["intermediates"], model.cfg.num_layers)

    def teacher_logits(self, frozen, batch):
        """The teacher's logits at the masked slots (what the offline cache stores the top k of)."""
        return self._forward(self.teacher_model, frozen, batch)[0]

    def loss(self, params, frozen, batch, rng, train):
        dc = self.config.distill
        model = self.train_model if train else self.eval_model
        student_logits, student_layers = self._forward(model, {k: params[k] for k in STUDENT_PARTS}, batch, rng)
        if self.cache is not None:
            teacher_logits, present = dense_from_top_k(batch["teacher_top_k_logits"], batch["teacher_top_k_ids"],
                                                       self.model_cfg.vocab_size)
        else:
            teacher_logits, teacher_layers = self._forward(self.teacher_model, frozen, batch)
            present = None
        weights = batch["masked_weights"]
        mlm_sum, sums = masked_lm_sums(student_logits, batch["masked_targets"], weights)
        kd_sum = (kd_per_position(student_logits, teacher_logits, dc.loss, dc.temperature, present) * weights).sum()
        total = dc.alpha * kd_sum + (1.0 - dc.alpha) * mlm_sum
        sums.update(mlm_loss=mlm_sum, kd_loss=kd_sum)
        if self.layer_pairs:
            hidden_sum = self._hidden_sum(params, student_layers, teacher_layers, batch)
            total = total + dc.hidden_weight * hidden_sum
            sums["hidden_loss"] = hidden_sum
        return total, sums

    def _hidden_sum(self, params, student_layers, teacher_layers, batch):
        tokens_BxL = (batch["segment_ids"] > 0).astype(jnp.float32)
        row_weight_B = batch["masked_weights"].sum(-1)
        total = 0.0
        for s, t in self.layer_pairs:
            h = student_layers[s].astype(jnp.float32)
            if self.projection is not None:
                h = self.projection.apply({"params": params["distill_projection"]}, h)
            squared_BxL = jnp.mean((h - teacher_layers[t].astype(jnp.float32)) ** 2, axis=-1)
            per_row_B = (squared_BxL * tokens_BxL).sum(-1) / jnp.maximum(tokens_BxL.sum(-1), 1.0)
            total = total + (per_row_B * row_weight_B).sum()
        return total / len(self.layer_pairs)

    def flops_per_token(self):
        student = super().flops_per_token()
        if self.teacher_model is None:
            return student
        return student + encoder_flops_per_token(self.teacher_cfg, self.seq_len, self.num_slots / self.seq_len) / 3

