"""Where NarrowBERT's [CLS] inference time goes: BERT with 1..L layers vs the narrow arrangements.

    python -m reproduce.narrowbert_depth_sweep [--shape=small] [--steps=25] [--arrangements=1sf:3sf]

Times atm.bench's [CLS] sequence-classification forward (same batch, steps interleaved) for plain BERT
with 1, 2, ..., L layers and for each arrangement, and prints one JSON line with the median and best
step times in ms. BERT-1 is what a `1sf:*` arrangement costs with free narrow layers, so
BERT-L / BERT-1 is the inference speed-up this machine allows, whatever the FLOP ratio says.
"""
from __future__ import annotations

import argparse
import copy
import json


def main(argv=None):
    import configs.bench.narrowbert as narrowbert_config
    from atm import bench

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", default="small", choices=sorted(narrowbert_config.SHAPES))
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--arrangements", default="1sf:3sf", help="arrangements of the shape's layer count")
    args = parser.parse_args(argv)
    base, _ = bench.split_bench_section(narrowbert_config.get_config(args.shape))
    variants = {f"bert_{n}_layers": ("", n) for n in range(1, base.model.num_layers + 1)}
    variants.update({a: (a, base.model.num_layers) for a in args.arrangements.split(",") if a})
    runners = {}
    for name, (arrangement, layers) in variants.items():
        c = copy.deepcopy(base)
        c.model.update(arrangement=arrangement, num_layers=layers)
        runners[name] = bench.classify_runner(c)
    timings = bench.time_runners(list(runners.values()), args.steps, warmup=3)
    line = {"shape": args.shape, "batch": base.train.batch_size, "seq_len": base.data.seq_len}
    for name, timing in zip(runners, timings):
        record = runners[name].record(timing)
        line[name] = {"ms": round(1000 * record["step_s"], 1), "best_ms": round(1000 * record["step_s_min"], 1)}
    full = line[f"bert_{base.model.num_layers}_layers"]["ms"]
    line["bert_over_bert_1_layer"] = round(full / line["bert_1_layers"]["ms"], 2)
    print(json.dumps(line), flush=True)
    return line


if __name__ == "__main__":
    main()
