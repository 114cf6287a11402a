"""Knowledge-distillation losses, shared by every objective that learns from teachers.

    kl_to_student(q, z_S, τ)        = τ²·Σ_v q_v·(log q_v − log σ(z_S/τ)_v)     q: any target distribution
    kd_per_position(z_S, z_T, kl)   = kl_to_student(σ(z_T/τ), z_S, τ)
    kd_per_position(z_S, z_T, mse)  = mean_v (z_S − z_T)²
    multi_teacher_kd(z_S, z_T1..Tk) = the same against the teachers combined (`kd.combine`):
        mean_probs:  q = mean_t σ(z_t/τ)       mean_logits: z_T = mean_t z_t

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
COMBINES = ("mean_probs", "mean_logits")


def kd_section() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({
        "alpha": 0.5,  # weight of the KD term; 1 − alpha weighs the gold / MLM loss [unverified]
        "temperature": 2.0,  # τ of loss=kl [unverified]
        "loss": "kl",  # kl (τ²·KL to the teachers' distribution) | mse (on logits)
        "combine": "mean_probs",  # several teachers: mean_probs | mean_logits
    })


def check_settings(kd: ml_collections.ConfigDict, num_teachers: int):
    """Errors naming the config key, before anything is built (ranges: config.validate)."""
    if kd.loss not in LOSSES:
        raise ValueError(f"config.kd.loss={kd.loss!r}: use one of {LOSSES}")
    if kd.combine not in COMBINES:
        raise ValueError(f"config.kd.combine={kd.combine!r}: use one of {COMBINES}")
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


def multi_teacher_kd(student_xV: jax.Array, teachers_TxV: jax.Array, kind: str, temperature: float,
                     combine: str, present_xV: jax.Array | None = None) -> jax.Array:
    """KD against T teachers stacked on a leading axis, combined per `combine` (one teacher: exactly
    `kd_per_position`)."""
    if teachers_TxV.shape[0] == 1:
        return kd_per_position(student_xV, teachers_TxV[0], kind, temperature, present_xV)
    if combine == "mean_logits" or kind == "mse":
        return kd_per_position(student_xV, teachers_TxV.astype(jnp.float32).mean(0), kind, temperature, present_xV)
    target = jax.vmap(lambda t: teacher_distribution(t, temperature, present_xV))(teachers_TxV).mean(0)
    return kl_to_student(target, student_xV, temperature)
