"""atm.bench prints one JSON line of positive figures, alone and against HF transformers (tiny shapes)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from atm import bench

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = {"tokens_per_s", "step_s", "params", "flops_per_token", "mfu", "mode", "batch", "seq_len", "device"}
TINY = {"train.batch_size": 8, "data.seq_len": 16, "model.vocab_size": 300, "data.vocab_size": 300,
        "model.num_layers": 1}


def tiny_config():
    import configs.tiny_mlm as tiny

    c = tiny.get_config()
    for key, value in TINY.items():
        section, leaf = key.split(".")
        c[section][leaf] = value
    return c


def check_record(record: dict, mode: str):
    assert KEYS <= set(record), sorted(KEYS - set(record))
    assert record["mode"] == mode and (record["batch"], record["seq_len"]) == (8, 16)
    for key in ("tokens_per_s", "step_s", "params", "flops_per_token"):
        assert record[key] > 0, (key, record[key])
    assert record["tokens_per_s"] == pytest.approx(8 * 16 / record["step_s"], rel=1e-3)
    assert record["mfu"] is None or record["mfu"] > 0  # None on CPU: no known peak


def training_flops_per_token():
    from atm.objectives.mlm import MaskedLM

    config = tiny_config()
    return MaskedLM(config, bench.BenchVocabulary(config.model.vocab_size)).flops_per_token()


def test_bench_infer_in_process():
    """Inference, also against HF with its head on the same masked slots (like-for-like FLOPs)."""
    result = bench.benchmark(tiny_config(), mode="infer", steps=2, warmup=1, peer="hf", hf_head="masked")
    infer, hf = result["atm"], result["hf"]
    check_record(infer, "infer")
    check_record(hf, "infer")
    assert infer["params"] == hf["params"]  # the same shape in both frameworks
    assert infer["flops_per_token"] == pytest.approx(training_flops_per_token() / 3)  # forward only
    assert hf["flops_per_token"] == pytest.approx(infer["flops_per_token"])
    assert "like-for-like" in result["note"]


def test_bench_cli_against_hf():
    """The command line: config overrides, --peer=hf, and exactly one JSON line on stdout."""
    overrides = [f"--config.{k}={v}" for k, v in TINY.items()]
    proc = subprocess.run(
        [sys.executable, "-m", "atm.bench", "--config=configs/tiny_mlm.py", "--mode=train", "--peer=hf",
         "--steps=2", "--warmup=0", *overrides],
        cwd=ROOT, capture_output=True, text=True, timeout=240, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout
    result = json.loads(lines[0])
    check_record(result["atm"], "train")
    check_record(result["hf"], "train")
    assert result["hf"]["params"] == result["atm"]["params"]
    assert result["atm"]["flops_per_token"] == pytest.approx(training_flops_per_token())
    assert result["hf"]["flops_per_token"] > result["atm"]["flops_per_token"]  # HF's head at every position
    assert result["speedup_vs_hf"] == pytest.approx(
        result["atm"]["tokens_per_s"] / result["hf"]["tokens_per_s"], rel=1e-2)
    assert "every position" in result["note"]


def test_bench_rejects_bad_mode():
    with pytest.raises(ValueError, match="--mode"):
        bench.benchmark(tiny_config(), mode="serve")


def tiny_electra_config():
    import configs.electra as electra_configs

    c = electra_configs.get_config("tiny")
    for key, value in TINY.items():
        section, leaf = key.split(".")
        c[section][leaf] = value
    return c


def test_bench_electra_is_timed_in_training_only():
    # The ELECTRA/MLM timing itself is a figure (configs/electra.py), not a test: two compiles, ~33 CPU seconds.
    with pytest.raises(ValueError, match=r"--mode=infer .*ELECTRA config is timed in training"):
        bench.benchmark(tiny_electra_config(), mode="infer")
