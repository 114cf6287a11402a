"""Benchmark shape for accelerators: BERT-base (12 layers, hidden 768, 12 heads, FFN 3072, vocabulary
30522), MLM, bf16 compute with fp32 params, batch 32 × 128 tokens, dropout 0.

    python -m atm.bench --config=configs/bench/bert_base.py --mode=train
    python -m atm.bench --config=configs/bench/bert_base.py --mode=infer

mfu is reported against the device's dense bf16 peak (atm/metrics.py PEAK_FLOPS). Expected figures:
not measured yet (no accelerator was available when this config was written); on CPU it runs, slowly.
"""
from atm.config import default_config
from atm.models import presets


def get_config():
    c = default_config("mlm")
    c.model.update(presets.get("base"))
    c.model.update(dict(vocab_size=30522, max_positions=512, type_vocab_size=2, hidden_dropout=0.0,
                        attention_dropout=0.0, dtype="bfloat16", attention_impl="xla"))
    c.data.source = "synthetic"  # atm.bench draws random ids; no data or vocabulary is read
    c.data.vocab_size = 30522
    c.data.seq_len = 128
    c.train.batch_size = 32
    c.train.steps = 1000
    return c
