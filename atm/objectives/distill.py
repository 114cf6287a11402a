"""Teacher-logit distillation on unlabelled text (ATM, arXiv 2206.07808; PAPERS.md §1).

Over the masked positions M of the MLM stream (the same dynamic masks as `mlm`):

    L = α·τ²·KL(σ(z_T/τ) ‖ σ(z_S/τ)) + (1−α)·L_MLM          kd.loss = "kl"
    L = α·mean_V (z_S − z_T)² + (1−α)·L_MLM                  kd.loss = "mse"
      + β·hidden-state MSE                                   distill.hidden_weight = β > 0

α = kd.alpha, τ = kd.temperature are [unverified] in the paper (defaults 0.5 and 2.0); the losses
are `atm/distill/kd.py`'s. The teacher is a finished atm run (`distill.teacher`: an mlm or distill
run, its own size and preset, the same vocabulary — a different one is an error); several
(`RUN1,RUN2` or `a=RUN1,b=RUN2`) are combined per `kd.combine` and each one's KD loss is logged as
`kd_loss_{name}`. They are `atm.distill.teacher.Teachers`: sharded on the student's mesh with
their own logical axes, run inside the student's jitted step in the student's compute dtype
(`config.model.dtype`). A distill run is itself a teacher, so ATM's two hops are two configs:
stage-2 teacher → intermediate student → small student.

Hidden-state MSE (one teacher): for each pair of `distill.layer_map` (student layer i ← teacher layer
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
from atm.distill import kd as kd_lib
from atm.distill import teacher as teacher_lib
from atm.distill.kd import ABSENT
from atm.models.encoder import EncoderForMLM, EncoderLayer, zeros_init
from atm.objectives import register
from atm.objectives.mlm import MaskedLM, encoder_flops_per_token, masked_lm_sums

STUDENT_PARTS = ("encoder", "mlm_head")


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


def layer_outputs(intermediates: dict) -> list[jax.Array]:
    """Each encoder layer's output, in order, from `capture_intermediates` of a non-scanned encoder."""
    encoder = intermediates["encoder"]
    count = sum(1 for key in encoder if key.startswith("layer_"))
    return [encoder[f"layer_{i}"]["__call__"][0][0] for i in range(count)]


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
        return {**MaskedLM.default_sections(), "kd": kd_lib.kd_section(), "distill": ml_collections.ConfigDict({
            "teacher": "",  # finished mlm or distill run(s): RUN, RUN1,RUN2 or a=RUN1,b=RUN2 (newest checkpoints)
            "cache": "",  # offline teacher logits from `python -m atm.distill.cache` (instead of running the teacher)
            "hidden_weight": 0.0,  # > 0 adds hidden-state MSE (needs one online teacher)
            "layer_map": "uniform",  # hidden-state pairs: student layer i ← teacher layer map[i]
        })}

    @staticmethod
    def value_ranges():
        return {**MaskedLM.value_ranges(), "kd.alpha": atm_config.UNIT, "kd.temperature": atm_config.POSITIVE,
                "kd.wrong_weight": atm_config.UNIT,
                "distill.hidden_weight": atm_config.NON_NEGATIVE}

    @classmethod
    def build_data(cls, config, workdir):
        from atm.distill import cache as cache_lib

        dc = config.distill
        if not config.data.vocab:  # the (first) teacher's vocabulary, unless one is given (then checked)
            if dc.cache:
                config.data.vocab = cache_lib.read_meta(dc.cache)["vocab"]
            elif dc.teacher:
                _, first = teacher_lib.parse_teachers(dc.teacher, "config.distill.teacher")[0]
                config.data.vocab = teacher_lib.load_run(first, "config.distill.teacher", ("mlm", "distill")).vocab_path
        vocab, train, evaluation, stats = super().build_data(config, workdir)
        if dc.cache:
            train, evaluation = cache_lib.attach(dc.cache, config, vocab, train, evaluation)
        return vocab, train, evaluation, stats

    def __init__(self, config, vocab, train_data=None):
        super().__init__(config, vocab, train_data)
        from atm.distill import cache as cache_lib
        from atm.student_init import resolve_layer_map

        dc = config.distill
        if not dc.teacher and not dc.cache:
            raise ValueError("the distill objective needs config.distill.teacher (a run directory) "
                             "or config.distill.cache (offline teacher logits)")
        self.cache = cache_lib.read_meta(dc.cache) if dc.cache else None
        self.teachers, self.projection = None, None
        self.layer_pairs: list[tuple[int, int]] = []
        if self.cache is not None:
            kd_lib.check_settings(config.kd, 1)
            if dc.hidden_weight > 0:
                raise ValueError("config.distill.hidden_weight > 0 needs the online teacher (config.distill.teacher); "
                                 "the offline cache holds logits only")
            return
        ids = jnp.zeros((1, self.seq_len), jnp.int32)
        self.teachers = teacher_lib.Teachers(
            dc.teacher, "config.distill.teacher", ("mlm", "distill"), self.model_cfg.dtype,
            lambda cfg, deterministic: EncoderForMLM(cfg, deterministic=deterministic),
            (ids, ids, ids, None, jnp.zeros((1, self.num_slots), jnp.int32)))
        kd_lib.check_settings(config.kd, len(self.teachers))
        self.teachers.check_vocabulary(vocab)
        for name, cfg in self.teachers.configs.items():
            if cfg.vocab_size != self.model_cfg.vocab_size:
                raise ValueError(f"config.model.vocab_size={self.model_cfg.vocab_size} but the teacher {name} "
                                 f"({self.teachers.runs[name].directory}) has {cfg.vocab_size}: distillation "
                                 "needs the same vocabulary")
        if dc.hidden_weight > 0:
            if len(self.teachers) > 1:
                raise ValueError("config.distill.hidden_weight > 0 matches layers of one teacher; "
                                 f"config.distill.teacher names {len(self.teachers)}")
            teacher_cfg = next(iter(self.teachers.configs.values()))
            if self.model_cfg.scan_layers or teacher_cfg.scan_layers:
                raise ValueError("config.distill.hidden_weight > 0 reads each layer's output, which needs "
                                 "model.scan_layers=False in the student and the teacher")
            teacher_layers = resolve_layer_map(dc.layer_map, self.model_cfg.num_layers, teacher_cfg.num_layers,
                                               "config.distill.layer_map")
            self.layer_pairs = list(enumerate(teacher_layers))
            if teacher_cfg.hidden_size != self.model_cfg.hidden_size:
                self.projection = HiddenProjection(teacher_cfg.hidden_size)

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
        return {} if self.teachers is None else self.teachers.shard(mesh)

    def frozen_abstract(self, mesh):
        return {} if self.teachers is None else self.teachers.abstract(mesh)

    def forward(self, apply, batch, with_layers: bool):
        """(logits at the masked slots, each layer's output or None) of `apply(*args, **kwargs)`, a
        student's or a teacher's `model.apply` with its params bound."""
        args = (batch["input_ids"], batch["segment_ids"], batch["positions"])
        if not with_layers:
            return apply(*args, masked_positions_BxM=batch["masked_positions"]), None
        logits, state = apply(*args, masked_positions_BxM=batch["masked_positions"], capture_intermediates=_is_layer)
        return logits, layer_outputs(state["intermediates"])

    def teacher_logits(self, frozen, batch):
        """The teachers' logits at the masked slots, stacked (T, B, M, V): what the offline cache stores
        the top k of (one teacher)."""
        return jnp.stack([self.forward(lambda *a, n=name, **k: self.teachers.apply(frozen, n, *a, **k), batch,
                                       False)[0] for name in self.teachers.names])

    def loss(self, params, frozen, batch, rng, train):
        kd = self.config.kd
        model = self.train_model if train else self.eval_model
        student = {k: params[k] for k in STUDENT_PARTS}

        def apply_student(*args, **kwargs):
            return model.apply({"params": student}, *args, rngs={"dropout": rng} if rng is not None else {}, **kwargs)
        student_logits, student_layers = self.forward(apply_student, batch, bool(self.layer_pairs))
        weights = batch["masked_weights"]
        mlm_sum, sums = masked_lm_sums(student_logits, batch["masked_targets"], weights)
        if self.cache is not None:
            dense, present = dense_from_top_k(batch["teacher_top_k_logits"], batch["teacher_top_k_ids"],
                                              self.model_cfg.vocab_size)
            teachers_T, teacher_layers = dense[None], None
        else:
            name = self.teachers.names[0]
            if self.layer_pairs:  # one teacher, its layers too
                logits, teacher_layers = self.forward(
                    lambda *a, **k: self.teachers.apply(frozen, name, *a, **k), batch, True)
                teachers_T = logits[None]
            else:
                teachers_T, teacher_layers = self.teacher_logits(frozen, batch), None
            present = None
        kd_per_slot = kd_lib.multi_teacher_kd(student_logits, teachers_T, kd.loss, kd.temperature, kd.combine, present)
        kd_sum = (kd_per_slot * weights).sum()
        total = kd.alpha * kd_sum + (1.0 - kd.alpha) * mlm_sum
        sums.update(mlm_loss=mlm_sum, kd_loss=kd_sum)
        if teachers_T.shape[0] > 1:  # each teacher's own KD, for the log (big_vision's distill_loss_{name})
            for name, teacher in zip(self.teachers.names, teachers_T):
                own = kd_lib.kd_per_position(student_logits, teacher, kd.loss, kd.temperature)
                sums[f"kd_loss_{name}"] = (own * weights).sum()
        if self.layer_pairs:
            hidden_sum = self._hidden_sum(params, student_layers, teacher_layers, batch)
            total = total + self.config.distill.hidden_weight * hidden_sum
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
        if self.teachers is None:
            return student
        return student + self.teachers.flops_per_token(
            lambda cfg: encoder_flops_per_token(cfg, self.seq_len, self.num_slots / self.seq_len) / 3)

