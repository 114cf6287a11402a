"""`make bench-gpu`: the prepared accelerator check, one table in docs/benchmarks.md.

    python -m atm.bench_gpu [--out=docs/benchmarks.md] [--steps=10] [--cpu_tiny]

On a GPU (meant: one H200, Python 3.12, jax 0.11 with its CUDA plugin, no TensorFlow / seqio / clu; under
8 minutes), each row is one `atm.bench` measurement:

  bert_base_mlm   BERT-base MLM training step, bf16, batch 32×128, attention through
                  jax.nn.dot_product_attention on cuDNN (attention_impl="cudnn"), MFU vs the dense bf16 peak
  narrowbert_base NarrowBERT 2sf:10sf vs BERT at the base shape (configs/bench/narrowbert.py:base), bf16
  distill_2p3b_170m  the 170M student's distillation step with the 2.3B teacher in it
                  (configs/distill/atm_2p3b_to_170m.py, teacher weights random: `shapes:` teacher), batch 64×64
  electra         the ELECTRA step (configs/electra.py:base, bf16, batch 32×128) when atm has the objective,
                  else a row saying so

Without a GPU it says so on stderr and in the table, and runs the same rows at tiny sizes on the CPU
(so the script itself is checked anywhere); those figures are not GPU figures. A row that fails is
written with its error and the others still run: the script runs unattended.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys
import time
import traceback

START, END = "<!-- bench-gpu:start -->", "<!-- bench-gpu:end -->"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(spec: str, **overrides):
    from atm import config as atm_config

    config = atm_config.load_config_file(os.path.join(ROOT, spec))
    for key, value in overrides.items():
        section, _, name = key.rpartition(".")
        target = config
        for part in filter(None, section.split(".")):
            target = target[part]
        target[name] = value
    return config


def cases(on_gpu: bool) -> list[tuple[str, callable]]:
    """(row name, a function returning the record) for each benchmark; tiny shapes off the GPU."""
    from atm import bench

    def bert_base(steps):
        if on_gpu:
            config = _config("configs/bench/bert_base.py", **{"model.attention_impl": "cudnn"})
        else:
            config = _config("configs/bench/bert_base.py", **{
                "model.num_layers": 2, "model.hidden_size": 64, "model.num_heads": 4, "model.ffn_size": 256,
                "model.vocab_size": 1000, "data.vocab_size": 1000, "train.batch_size": 8, "data.seq_len": 32})
        return bench.benchmark(config, "train", steps, 2)

    def narrow(steps):
        config = _config("configs/bench/narrowbert.py:base")
        if on_gpu:
            config.model.dtype, config.train.batch_size = "bfloat16", 32
            config.bench.arrangements = "2sf:10sf"
        else:
            config.model.update(num_layers=4, hidden_size=64, num_heads=4, ffn_size=256, vocab_size=1000)
            config.data.update(vocab_size=1000, seq_len=32)
            config.bench.arrangements = "1sf:3sf"
        return bench.compare_arrangements(config, steps, 2)[0]

    def distill(steps):
        teacher = "shapes:configs/atm_teacher.py:2p3b" if on_gpu else "shapes:configs/tiny_mlm.py"
        config = _config("configs/distill/atm_2p3b_to_170m.py", **{
            "distill.teacher": teacher, "train.batch_size": 64, "mesh.fsdp": 1, "mesh.data": -1})
        if not on_gpu:
            config.model.update(num_layers=2, hidden_size=64, num_heads=4, ffn_size=256, vocab_size=2000,
                                dtype="float32")
            config.data.update(vocab_size=2000, seq_len=32)
            config.train.batch_size = 8
        return bench.benchmark(config, "train", steps, 2)

    def electra(steps):
        from atm import objectives
        if "electra" not in objectives.names():
            return {"skipped": "atm has no ELECTRA objective yet (atm/models/electra.py holds the model only)"}
        if on_gpu:  # configs/electra.py (on main since this was written): base shape, bf16, a short batch
            config = _config("configs/electra.py:base", **{"model.dtype": "bfloat16", "train.batch_size": 32,
                                                           "data.seq_len": 128, "data.source": "synthetic"})
        else:
            config = _config("configs/electra.py:tiny", **{"train.batch_size": 8, "data.seq_len": 32})
        return bench.benchmark(config, "train", steps, 2)

    return [("bert_base_mlm", bert_base), ("narrowbert_base", narrow), ("distill_2p3b_170m", distill),
            ("electra", electra)]


def summary(name: str, record: dict) -> str:
    """One markdown table row."""
    if "skipped" in record or "error" in record:
        return f"| {name} | {record.get('skipped') or record.get('error')} | | | | |"
    if "speedup_train" in record:  # NarrowBERT: the narrow model's figures, speedups vs BERT
        train = record["train"]["narrow"]
        return (f"| {name} {record['arrangement']} | {train['batch']}×{train['seq_len']} | {train['step_s']:.4g} | "
                f"{train['tokens_per_s']:.4g} | {train['mfu'] if train['mfu'] is not None else 'n/a'} | "
                f"train {record['speedup_train']}× / infer {record['speedup_infer']}× vs BERT |")
    if "electra_over_mlm" in record:  # ELECTRA: its own step's figures, the ratio to the MLM step of the same encoder
        step = record["electra"]
        return (f"| {name} | {step['batch']}×{step['seq_len']} | {step['step_s']:.4g} | {step['tokens_per_s']:.4g} | "
                f"{step['mfu'] if step['mfu'] is not None else 'n/a'} | {record['electra_over_mlm']}× the MLM step "
                f"of the same discriminator (target ≤ {record['target']}×) |")
    return (f"| {name} | {record['batch']}×{record['seq_len']} | {record['step_s']:.4g} | {record['tokens_per_s']:.4g} | "
            f"{record['mfu'] if record['mfu'] is not None else 'n/a'} | {record.get('dtype', '')} "
            f"{record.get('attention_impl', '')}, {record['params']:,} params |")


def write_table(path: str, header: str, rows: list[str]):
    table = "\n".join([START, header, "",
                       "| benchmark | batch | step s (median) | tokens/s | MFU | notes |",
                       "|---|---|---|---|---|---|", *rows, END])
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    if START in text and END in text:
        text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: table, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n## `make bench-gpu`\n\n" + table + "\n"
    with open(path, "w") as f:
        f.write(text)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m atm.bench_gpu", description=__doc__.split("\n")[0])
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--cpu_tiny", action="store_true", help="force the CPU fallback (tiny shapes)")
    args = p.parse_args(argv)
    import jax

    platform = jax.devices()[0].platform
    on_gpu = platform == "gpu" and not args.cpu_tiny
    if not on_gpu:
        print(f"atm.bench_gpu: NOTE: no GPU (jax backend {platform!r}): running every row at tiny sizes on the "
              f"CPU to check the script; these are NOT GPU figures", file=sys.stderr, flush=True)
    device = jax.devices()[0]
    started = time.time()
    rows, records = [], {}
    for name, run in cases(on_gpu):
        t0 = time.time()
        try:
            record = run(args.steps)
        except Exception as e:  # noqa: BLE001  (unattended: one failing row must not lose the others)
            traceback.print_exc()
            record = {"error": f"failed: {type(e).__name__}: {' '.join(str(e).split())[:300]}"}
        record["wall_s"] = round(time.time() - t0, 1)
        records[name] = record
        rows.append(summary(name, record))
        print(json.dumps({"benchmark": name, **record}), flush=True)
    header = (f"{datetime.date.today()}: {device.device_kind} ({platform}), jax {jax.__version__}, Python "
              f"{sys.version.split()[0]}, {time.time() - started:.0f} s in all, load average "
              f"{os.getloadavg()[0]:.2f}." + ("" if on_gpu else " **No GPU: CPU fallback at tiny sizes — not GPU "
                                                                  "figures; the script check only.**"))
    write_table(args.out, header, rows)
    print(f"atm.bench_gpu: wrote {args.out}", file=sys.stderr, flush=True)
    return 1 if any("error" in r for r in records.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
