"""Knowledge-distillation losses, shared by every objective that learns from teachers.

    kl_to_student(q, z_S, τ)        = τ²·Σ_v q_v·(log q_v − log σ(z_S/τ)_v)     q: any target distribution
    kd_per_position(z_S, z_T, kl)   = kl_to_student(σ(z_T/τ), z_S, τ)
    kd_per_position(z_S, z_T, mse)  = mean_v (z_S − z_T)²
    multi_teacher_kd(z_S, z_T1..Tk) = the same against the teachers combined (`kd.combine`):
        mean_probs:  q = mean_t σ(z_t/τ)       mean_logits: z_T = mean_t z_t
        weighted (ROaD, needs the gold label y): per example, with M teachers of which n_c predict y
            (argmax z_t = y) and n_w = M − n_c do not, a wrong teacher weighs W = kd.wrong_weight (0.75)
            and a right one Ŵ = (M − n_w·W)/n_c, so Σ_t w_t = M;  z_T = Σ_t w_t·z_t / M,  q = σ(z_T/τ);
            no teacher right (n_c = 0): q = one-hot(y)
        confidence (needs y): w_t = σ(z_t)_y / Σ_s σ(z_s)_y,  q = Σ_t w_t·σ(z_t/τ)   (a mixture of the
            teachers' distributions; combining probabilities rather than logits is atm's choice [unverified])
    One teacher: every combine mode is exactly single-teacher KD (`kd_per_position`); the weighted
    modes start at two teachers (a lone wrong teacher is not replaced by the gold one-hot).

A target distribution may hold exact zeros (a top-k cache, a zero-padded amalgamated target): the
q·log q term is `xlogy`, so a zero contributes 0, never NaN, to the loss and its gradient. All
losses are per position in fp32, for any leading shape (`_xV`: a last axis over classes).

The settings live in one config section, `config.kd` (`kd_section()`), read by every objective.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

ABSENT = -1e9  # logit of a class a teacher's top-k cache does not hold: probability exactly 0
LOSSES = ("kl", "mse")
COMBINES = ("mean_probs", "mean_logits", "weighted", "confidence")
GOLD_COMBINES = ("weighted", "confidence")  # these read the gold label of each position


def kd_section() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({
        "alpha": 0.5,  # weight of the KD term; 1 − alpha weighs the gold / MLM loss [unverified]
        "temperature": 2.0,  # τ of loss=kl [unverified]
        "loss": "kl",  # kl (τ²·KL to the teachers' distribution) | mse (on logits)
        "combine": "mean_probs",  # several teachers: mean_probs | mean_logits | weighted (ROaD) | confidence
        "wrong_weight": 0.75,  # combine=weighted: W, the weight of a teacher that mispredicts the gold [unverified]
    })


def check_settings(kd: ml_collections.ConfigDict, num_teachers: int):
    """Errors naming the config key, before anything is built (ranges: config.validate)."""
    if kd.loss not in LOSSES:
        raise ValueError(f"config.kd.loss={kd.loss!r}: use one of {LOSSES}")
    if kd.combine not in COMBINES:
        raise ValueError(f"config.kd.combine={kd.combine!r}: use one of {COMBINES}")
    if not 0.0 <= kd.wrong_weight <= 1.0:
        raise ValueError(f"config.kd.wrong_weight={kd.wrong_weight!r} must be in [0, 1] (ROaD: 0.75)")
    if num_teachers > 1 and kd.loss == "mse" and kd.combine != "mean_logits":
        raise ValueError("config.kd.loss='mse' compares logits: with several teachers set config.kd.combine="
                         "'mean_logits'")


def kl_to_student(target_xV: jax.Array, student_xV: jax.Array, temperature: float) -> jax.Array:
    """τ²·KL(target ‖ σ(z_S/τ)) per position; `target_xV` is a distribution (rows sum to 1), constant."""
    target = jax.lax.stop_gradient(target_xV.astype(jnp.float32))
    log_q_student = jax.nn.log_softmax(student_xV.astype(jnp.float32) / temperature, axis=-1)
    kl = jnp.sum(jax.scipy.special.xlogy(target, target) - target * log_q_student, axis=-1)
    return temperature ** 2 * kl


def teacher_distribution(teacher_xV: jax.Array, temperature: float, present_xV: jax.Array | None = None):
    """σ(z_T/τ), with exact zeros where `present_xV` (bool) is False (classes a top-k cache lacks)."""
    t = teacher_xV.astype(jnp.float32) / temperature
    if present_xV is not None:
        t = jnp.where(present_xV, t, ABSENT)
    return jax.nn.softmax(t, axis=-1)


def kd_per_position(student_xV: jax.Array, teacher_xV: jax.Array, kind: str, temperature: float,
                    present_xV: jax.Array | None = None) -> jax.Array:
    """One teacher's logits: kl = τ²·KL(σ(z_T/τ) ‖ σ(z_S/τ)); mse = mean over the present entries of
    (z_S − z_T)². `present_xV` marks the teacher entries known (top-k cache); None: all of them."""
    if kind == "kl":
        return kl_to_student(teacher_distribution(teacher_xV, temperature, present_xV), student_xV, temperature)
    if kind == "mse":
        squared = (student_xV.astype(jnp.float32) - jax.lax.stop_gradient(teacher_xV.astype(jnp.float32))) ** 2
        if present_xV is None:
            return squared.mean(-1)
        return jnp.sum(jnp.where(present_xV, squared, 0.0), -1) / jnp.maximum(present_xV.sum(-1), 1)
    raise ValueError(f"unknown distillation loss {kind!r}: use kl or mse")


def weighted_teacher_logits(teachers_TxV: jax.Array, gold_x: jax.Array, wrong_weight: float = 0.75,
                            present_xV: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """ROaD's weighted combination: (Σ_t w_t·z_t / M, any_right_x). A teacher is right where its argmax
    (over the present classes) is `gold_x`; right ones share Ŵ = (M − n_wrong·W)/n_right, wrong ones W."""
    z = teachers_TxV.astype(jnp.float32)
    masked = z if present_xV is None else jnp.where(present_xV, z, ABSENT)
    right_Tx = (jnp.argmax(masked, -1) == gold_x[None]).astype(jnp.float32)
    m = float(teachers_TxV.shape[0])
    n_right_x = right_Tx.sum(0)
    right_weight_x = (m - (m - n_right_x) * wrong_weight) / jnp.maximum(n_right_x, 1.0)
    w_Tx = jnp.where(right_Tx > 0, right_weight_x[None], wrong_weight)
    return jnp.einsum("t...,t...v->...v", w_Tx, z) / m, n_right_x > 0


def weighted_target(teachers_TxV: jax.Array, gold_x: jax.Array, temperature: float, wrong_weight: float = 0.75,
                    present_xV: jax.Array | None = None) -> jax.Array:
    """The weighted-KD target distribution: σ(combined logits/τ), or one-hot(gold) where no teacher is right."""
    combined_xV, any_right_x = weighted_teacher_logits(teachers_TxV, gold_x, wrong_weight, present_xV)
    one_hot = jax.nn.one_hot(gold_x, teachers_TxV.shape[-1], dtype=jnp.float32)
    return jnp.where(any_right_x[..., None], teacher_distribution(combined_xV, temperature, present_xV), one_hot)


def confidence_target(teachers_TxV: jax.Array, gold_x: jax.Array, temperature: float,
                      present_xV: jax.Array | None = None) -> jax.Array:
    """Σ_t w_t·σ(z_t/τ) with w_t ∝ σ(z_t)_gold (each teacher's probability of the gold class at τ = 1)."""
    gold_prob_Tx = jax.vmap(lambda t: jnp.take_along_axis(
        teacher_distribution(t, 1.0, present_xV), gold_x[..., None], -1)[..., 0])(teachers_TxV)
    w_Tx = gold_prob_Tx / jnp.maximum(gold_prob_Tx.sum(0, keepdims=True), 1e-30)
    probs_TxV = jax.vmap(lambda t: teacher_distribution(t, temperature, present_xV))(teachers_TxV)
    return jnp.einsum("t...,t...v->...v", w_Tx, probs_TxV)


def multi_teacher_kd(student_xV: jax.Array, teachers_TxV: jax.Array, kind: str, temperature: float,
                     combine: str, present_xV: jax.Array | None = None, gold_x: jax.Array | None = None,
                     wrong_weight: float = 0.75) -> jax.Array:
    """KD against T teachers stacked on a leading axis, combined per `combine` (one teacher: exactly
    `kd_per_position`). `gold_x` (int class per position; any value where unscored) is needed by the
    weighted and confidence modes."""
    if teachers_TxV.shape[0] == 1:
        return kd_per_position(student_xV, teachers_TxV[0], kind, temperature, present_xV)
    if combine in GOLD_COMBINES:
        if gold_x is None:
            raise ValueError(f"config.kd.combine={combine!r} weighs teachers by the gold label; this objective "
                             f"has none: use mean_probs or mean_logits")
        gold_x = jnp.maximum(gold_x, 0)  # IGNORE (-100) positions: any class; they are masked by the caller
        if combine == "weighted":
            target = weighted_target(teachers_TxV, gold_x, temperature, wrong_weight, present_xV)
        else:
            target = confidence_target(teachers_TxV, gold_x, temperature, present_xV)
        return kl_to_student(target, student_xV, temperature)
    if combine == "mean_logits" or kind == "mse":
        return kd_per_position(student_xV, teachers_TxV.astype(jnp.float32).mean(0), kind, temperature, present_xV)
    target = jax.vmap(lambda t: teacher_distribution(t, temperature, present_xV))(teachers_TxV).mean(0)
    return kl_to_student(target, student_xV, temperature)
