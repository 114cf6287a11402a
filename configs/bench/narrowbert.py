"""NarrowBERT vs atm BERT, timed in one run on the same batches (training steps and [CLS] inference).

    python -m atm.bench --config=configs/bench/narrowbert.py              # BERT-small shape (default)
    python -m atm.bench --config=configs/bench/narrowbert.py:base         # BERT-base shape
    (add --steps=N --warmup=N; on an accelerator e.g. --config.model.dtype=bfloat16
     --config.train.batch_size=32)

small: 4 layers, hidden 256, 4 heads, FFN 1024, vocabulary 32000, sequence 128, batch 32, fp32;
       arrangements 1sf:3sf, 2sf:2sf and ContextFirst 4s:4f.
base:  12 layers, hidden 768, 12 heads, FFN 3072, vocabulary 30522, sequence 512, batch 4 (so a CPU
       run takes minutes), fp32; arrangements 2sf:10sf, 1sf:11sf and ContextFirst 12s:12f.
MLM masks 15%: 19 slots per sequence at 128 tokens, 77 at 512 (the query set S in pretraining);
inference reads [CLS] only (S = [CLS]). The baseline BERT also computes its MLM head only at the
masked slots. Prints one JSON line per arrangement with speedup_train and speedup_infer (median step
times; *_best_step from the fastest steps) and flops_ratio_* (the analytic FLOP ratio).
Expected (2 quiet CPU cores, 2026-11-22, narrow attention folded; docs/benchmarks.md "NarrowBERT"):
small 1sf:3sf 1.68x train, 2.65x infer (FLOP bounds 1.82x / 3.89x; this CPU's inference cap for a
1sf:* arrangement, BERT-4 / BERT-1 from reproduce/narrowbert_depth_sweep.py, is 3.15x); base 2sf:10sf
2.93x train, 5.28x infer (bounds 2.38x / 5.88x).
"""
import ml_collections

from atm.config import default_config
from atm.models import presets

SHAPES = {
    "small": dict(model=dict(vocab_size=32000, num_layers=4, hidden_size=256, num_heads=4, ffn_size=1024),
                  seq_len=128, batch_size=32, arrangements="1sf:3sf,2sf:2sf,4s:4f"),
    "base": dict(model=dict(presets.get("base"), vocab_size=30522), seq_len=512, batch_size=4,
                 arrangements="2sf:10sf,1sf:11sf,12s:12f"),
}


def get_config(shape: str = "small"):
    if shape not in SHAPES:
        raise ValueError(f"configs/bench/narrowbert.py:{shape}: use one of {sorted(SHAPES)}")
    spec = SHAPES[shape]
    c = default_config("mlm")
    c.model.update(spec["model"])
    c.model.update(dict(max_positions=512, type_vocab_size=2, hidden_dropout=0.0, attention_dropout=0.0))
    c.data.source = "synthetic"  # atm.bench draws random ids; no data or vocabulary is read
    c.data.vocab_size = c.model.vocab_size
    c.data.seq_len = spec["seq_len"]
    c.train.batch_size = spec["batch_size"]
    c.bench = ml_collections.ConfigDict({"arrangements": spec["arrangements"]})  # read by atm.bench only
    return c
