"""Student initialisation from a teacher's weights (The Privileged Students, arXiv 2406.16524).

`config.student_init.mode`:
  random      the student's own fresh initialisation (the default)
  pretrained  copy from a pretrained teacher run (mlm or distill): the embeddings, the layers chosen by
              the layer map, the final LayerNorm (pre-LN) and, for an MLM student, the MLM head
  finetuned   copy from a fine-tuned teacher run (finetune): the same plus every task head
              (pooler and classifier of intent, slots, ...), which must have the same label inventory

Layer maps (`config.student_init.layer_map`; the paper's choice is [unverified], every_other is
the default): which teacher layer (0-based) each student layer starts from —
  every_other  0, 2, 4, ...            first_k  0 .. k−1            last_k  L−k .. L−1
  uniform      round((i+1)·L/k) − 1 (the last student layer ← the last teacher layer)
  "0,3,5"      an explicit list, one teacher layer per student layer
Copying needs the same width and vocabulary: any shape difference is an error naming the tensor.
The student's optimizer starts fresh; what was copied from where is printed.
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np

LAYER_MAPS = ("every_other", "first_k", "last_k", "uniform")


def resolve_layer_map(spec: str, student_layers: int, teacher_layers: int, key: str) -> list[int]:
    """The teacher layer each student layer maps to (0-based)."""
    k, n = student_layers, teacher_layers
    if spec == "every_other":
        layers = list(range(0, 2 * k, 2))
    elif spec == "first_k":
        layers = list(range(k))
    elif spec == "last_k":
        layers = list(range(n - k, n))
    elif spec == "uniform":
        layers = [round((i + 1) * n / k) - 1 for i in range(k)]
    else:
        try:
            layers = [int(x) for x in spec.split(",") if x.strip()]
        except ValueError:
            raise ValueError(f"{key}={spec!r}: use one of {list(LAYER_MAPS)} or a comma-separated list of "
                             "teacher layers such as '0,2,5'") from None
        if len(layers) != k:
            raise ValueError(f"{key}={spec!r} names {len(layers)} teacher layers but the student has {k}")
    if k > n or min(layers) < 0 or max(layers) >= n:
        raise ValueError(f"{key}={spec!r} maps the student's {k} layers to teacher layers {layers}, but the "
                         f"teacher has {n} layers (0..{n - 1})")
    return layers


def encoder_layers(encoder: dict) -> list[Any]:
    """Per-layer param trees of an encoder, scanned (`layers`, stacked) or not (`layer_0`, ...)."""
    if "layers" in encoder:
        count = jax.tree_util.tree_leaves(encoder["layers"])[0].shape[0]
        return [jax.tree_util.tree_map(lambda x, i=i: np.asarray(x)[i], encoder["layers"]) for i in range(count)]
    count = sum(1 for name in encoder if name.startswith("layer_"))
    return [encoder[f"layer_{i}"] for i in range(count)]


def _with_layers(encoder: dict, layers: list[Any]) -> dict:
    encoder = dict(encoder)
    if "layers" in encoder:
        encoder["layers"] = jax.tree_util.tree_map(lambda *xs: np.stack(xs), *layers)
    else:
        encoder.update({f"layer_{i}": layer for i, layer in enumerate(layers)})
    return encoder


def _copy_tree(student: Any, teacher: Any, where: str, key: str) -> Any:
    """`teacher`'s tensors in `student`'s structure and dtypes; a missing tensor or any shape difference is an error."""
    def slash(path):
        return "/" + "/".join(str(getattr(k, "key", k)) for k in path)
    flat_teacher = {slash(p): v for p, v in jax.tree_util.tree_leaves_with_path(teacher)}

    def take(path, mine):
        name = slash(path)
        if name not in flat_teacher:
            raise ValueError(f"{key}: the teacher has no tensor {where}{name} (the student needs it); "
                             "its architecture differs (config.model)")
        theirs = flat_teacher[name]
        if theirs.shape != mine.shape:
            raise ValueError(f"{key}: teacher tensor {where}{name} has shape {theirs.shape} but the student's has "
                             f"{mine.shape}; copying weights needs the same width, heads, vocabulary and labels")
        return np.asarray(theirs, dtype=mine.dtype)
    return jax.tree_util.tree_map_with_path(take, student)


def copy_from_teacher(student: dict, teacher: dict, layer_map: list[int], task_heads: bool, key: str,
                      source: str) -> tuple[dict, list[str]]:
    """(student params with the teacher's tensors copied in, one report line per copied part)."""
    out, report = dict(student), []
    s_enc, t_enc = student["encoder"], teacher["encoder"]
    encoder = dict(s_enc)
    for part in ("embeddings", "final_layer_norm"):
        if part in s_enc:
            encoder[part] = _copy_tree(s_enc[part], t_enc.get(part, {}), f"encoder/{part}", key)
            report.append(f"  encoder/{part:<20} <- {source} encoder/{part}")
    t_layers = encoder_layers(t_enc)
    copied = [_copy_tree(mine, t_layers[j], f"encoder/layer_{j}", key)
              for mine, j in zip(encoder_layers(s_enc), layer_map)]
    encoder = _with_layers(encoder, copied)
    report += [f"  encoder/layer_{i:<14} <- {source} encoder/layer_{j}" for i, j in enumerate(layer_map)]
    out["encoder"] = encoder
    for head in sorted(set(student) - {"encoder"}):
        if head not in teacher:
            report.append(f"  {head:<26} fresh (the teacher has no such head)")
            continue
        if head != "mlm_head" and not task_heads:
            report.append(f"  {head:<26} fresh (mode=pretrained copies no task head)")
            continue
        out[head] = _copy_tree(student[head], teacher[head], f"{head}", key)
        report.append(f"  {head:<26} <- {source} {head}")
    return out, report


def initialize(trainer, state, init_config) -> Any:
    """The train state with params copied from `init_config.teacher` per `init_config` (config.student_init)."""
    from atm.distill import teacher as teacher_lib

    key = "config.student_init.teacher"
    finetuned = init_config.mode == "finetuned"
    run = teacher_lib.load_run(init_config.teacher, key, ("finetune",) if finetuned else ("mlm", "distill"))
    teacher_lib.check_same_vocabulary(run, trainer.objective.vocab, key)
    step, teacher = run.read_params()
    student = jax.device_get(state.params)
    layer_map = resolve_layer_map(init_config.layer_map, len(encoder_layers(student["encoder"])),
                                  len(encoder_layers(teacher["encoder"])), "config.student_init.layer_map")
    params, report = copy_from_teacher(student, teacher, layer_map, finetuned, key, "teacher")
    print(f"Student initialised from {init_config.mode} teacher {run.directory} (step {step}), layer map "
          f"{init_config.layer_map!r} = {layer_map}:\n" + "\n".join(report), flush=True)
    return state.replace(params=jax.device_put(params, trainer.state_shardings.params))
