"""Tiny MLM on atm's generated multilingual assistant utterances: the demo config.

    python -m atm.main --config=configs/tiny_mlm.py --workdir=/tmp/tiny_mlm

Expected on 2 CPU cores (`make demo`, fresh clone, 2026-11-22): about 70-90 s for 600
steps; the MLM loss falls from ~7.6 (ln 2000) to ~1.9 (5.4 at the first log, step 50),
eval loss ~1.76 and eval masked-token accuracy ~65%. tests/test_demo.py holds it to: eval loss < 2.5 and a train-loss
drop of at least 2.5 from the first logged step.
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
    c.data.spoken_share = 0.7  # as ATM: 70% spoken form
    c.train.steps = 600
    c.train.batch_size = 32
    c.train.log_every = 50
    c.train.eval_every = 200
    c.optimizer.learning_rate = 3e-3
    c.optimizer.warmup_steps = 30
    c.checkpoint.every = 200
    return c
