"""Metrics: metrics.jsonl + TensorBoard (clu writers), a progress line, tokens/s and MFU."""
from __future__ import annotations

import json
import os
import sys
import time

import jax

from atm import import_tensorflow

# Dense bf16 peak FLOP/s per device (vendor datasheets; H100/H200 SXM without sparsity).
PEAK_FLOPS = {
    "H100": 989e12,
    "H200": 989e12,
    "A100": 312e12,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,  # v5e
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v5": 459e12,
}


def device_peak_flops(device: jax.Device | None = None) -> float | None:
    """Peak FLOP/s of `device` from the table above, None when unknown (e.g. CPU)."""
    kind = (device or jax.devices()[0]).device_kind
    for name in sorted(PEAK_FLOPS, key=len, reverse=True):
        if name.lower() in kind.lower():
            return PEAK_FLOPS[name]
    return None


def mfu(flops_per_token: float, tokens_per_s: float, num_devices: int) -> float | None:
    peak = device_peak_flops()
    return None if peak is None else flops_per_token * tokens_per_s / (peak * num_devices)


class MetricsLog:
    """Writes metrics.jsonl and TensorBoard events (process 0 only) and prints a progress line.

    On resume, lines beyond the restored step are dropped so the file equals an
    uninterrupted run's.
    """

    def __init__(self, workdir: str, total_steps: int, resume_step: int = 0):
        self.enabled = jax.process_index() == 0
        self.total_steps = total_steps
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._t0, self._step0 = time.time(), resume_step
        if not self.enabled:
            return
        self._truncate_after(resume_step)
        import_tensorflow()  # clu pulls in TensorFlow: imported here, quietly
        from clu import metric_writers
        self.writer = metric_writers.SummaryWriter(os.path.join(workdir, "tensorboard"))

    def _truncate_after(self, step: int):
        if not os.path.exists(self.path):
            return
        with open(self.path) as f:
            kept = [line for line in f if line.strip() and json.loads(line).get("step", 0) <= step]
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(kept)
        os.replace(tmp, self.path)

    def write(self, step: int, scalars: dict, progress: bool = True):
        if not self.enabled:
            return
        record = {"step": int(step), **{k: (None if v is None else float(v)) for k, v in scalars.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.writer.write_scalars(step, {k: v for k, v in record.items() if k != "step" and v is not None})
        if progress:
            self._progress(step, record)

    def _progress(self, step: int, record: dict):
        elapsed = time.time() - self._t0
        done = step - self._step0
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total_steps - step) / rate if rate > 0 else float("nan")
        shown = " ".join(f"{k}={record[k]:.4g}" for k in ("loss", "eval_loss", "accuracy", "learning_rate",
                                                              "tokens_per_s", "mfu") if record.get(k) is not None)
        print(f"[step {step}/{self.total_steps} {100 * step / max(1, self.total_steps):3.0f}%] {rate:.2f} steps/s "
              f"ETA {eta:.0f}s {shown}", file=sys.stdout, flush=True)

    def close(self):
        if self.enabled:
            self.writer.flush()
            self.writer.close()
