"""Tiny MLM on atm's generated multilingual assistant utterances: the demo config.

    python -m atm.main --config=configs/tiny_mlm.py --workdir=/tmp/tiny_mlm

Expected on 2 CPU cores: ~1-2 minutes for 300 steps; MLM loss falls from ~7.6
(ln 2000) to below 4 and masked-token accuracy rises above 30%.
"""
from atm.config import default_config
from atm.models import presets


def get_config():
    c = default_config("mlm")
    c.model.update(presets.get("tiny"))
    c.data.source = "synthetic"
    c.data.vocab_size = 2000
    c.data.seq_len = 64
    c.data.num_examples = 20000
    c.train.steps = 300
    c.train.batch_size = 32
    c.train.log_every = 25
    c.train.eval_every = 100
    c.optimizer.learning_rate = 3e-3
    c.optimizer.warmup_steps = 30
    c.checkpoint.every = 100
    return c
