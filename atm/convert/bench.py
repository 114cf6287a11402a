"""Conversion time and equivalence at a real size: a random transformers BERT-base (no download).

    python -m atm.convert.bench [--dir=/tmp/atm_convert_bench] [--layers=12 --hidden=768 --heads=12 --ffn=3072]

Builds `BertForMaskedLM(BertConfig(...))` with random weights, saves it (model.safetensors), times
`python -m atm.convert import` and `export` as a user runs them (fresh interpreters, wall clock),
then checks hidden states and MLM logits of atm against transformers on a padded batch, before and
after the round trip. Prints one JSON line. Needs torch and transformers.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np


def _timed(args: list[str]) -> float:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    start = time.time()
    subprocess.run([sys.executable, "-m", "atm.convert", *args], check=True, env=env, capture_output=True)
    return time.time() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m atm.convert.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default="/tmp/atm_convert_bench")
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--ffn", type=int, default=3072)
    args = parser.parse_args(argv)

    import torch
    import transformers

    import atm

    shutil.rmtree(args.dir, ignore_errors=True)
    hf_dir, atm_dir, out_dir = (os.path.join(args.dir, n) for n in ("hf", "atm", "exported"))
    torch.manual_seed(0)
    config = transformers.BertConfig(num_hidden_layers=args.layers, hidden_size=args.hidden,
                                      num_attention_heads=args.heads, intermediate_size=args.ffn)
    model = transformers.BertForMaskedLM(config).eval()
    model.save_pretrained(hf_dir)
    import_s = _timed(["import", f"--hf_dir={hf_dir}", f"--out={atm_dir}"])
    export_s = _timed(["export", f"--workdir={atm_dir}", f"--out={out_dir}"])

    rng = np.random.default_rng(0)
    lengths = np.array([128, 77, 9, 40])
    ids = rng.integers(1000, config.vocab_size, size=(4, 128)).astype(np.int32)
    mask = (np.arange(128)[None] < lengths[:, None]).astype(np.int32)
    ids = np.where(mask > 0, ids, 0)
    pretrained = atm.from_pretrained(atm_dir)
    hidden, logits = pretrained.apply_encoder(ids, mask), pretrained.apply_head(ids, mask)
    report = {"params": sum(p.numel() for p in model.parameters()), "import_s": round(import_s, 2),
              "export_s": round(export_s, 2)}
    for name, reference in (("hf", model), ("exported", transformers.BertForMaskedLM.from_pretrained(out_dir).eval())):
        with torch.no_grad():
            out = reference(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask),
                            output_hidden_states=True)
        valid = mask > 0
        report[f"max_abs_hidden_vs_{name}"] = float(np.abs(hidden - out.hidden_states[-1].numpy())[valid].max())
        report[f"max_abs_logits_vs_{name}"] = float(np.abs(logits - out.logits.numpy())[valid].max())
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
