"""ATIS joint intent + slot filling from scratch (no pretraining), a small encoder on 2 CPU cores.

    python -m atm.main --config=configs/finetune/atis.py --workdir=workdirs/atis
    python -m atm.main --config=configs/finetune/atis.py --workdir=workdirs/atis_any \
        --config.finetune.bio_folder=/path/to/any/folder/in/the/BIO/layout

`config.finetune.bio_folder` (default: ATIS in the data directory) takes any folder in the
ATIS/SNIPS layout train|dev|test/{seq.in,seq.out,label}. Evaluates on test at the end.
Start from a pretrained run with --config.init_from=RUN_DIR --config.data.vocab=RUN_DIR/vocab.model
(the encoder shape must match).

Expected (measured on 2 CPU cores, 2026-11-22, the first command): test intent accuracy 95.7%,
slot F1 89.0%, frame exact match 74.0%, SemER 19.4%, about 6 minutes.
"""
import os

from atm.config import default_config
from atm.models import presets


def get_config():
    c = default_config("finetune")
    c.model.update(presets.get("tiny"))
    c.model.update(num_layers=4, hidden_size=128, num_heads=4, ffn_size=512, vocab_size=1000, max_positions=128,
                   hidden_dropout=0.1)
    data_dir = os.environ.get("ATM_DATA_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared",
                                                           "data"))
    c.finetune.bio_folder = os.path.abspath(os.path.join(data_dir, "atis"))
    c.finetune.eval_split = "test"
    # JointBERT's protocol: labels of dev/test unseen in train (ATIS test: 5 intents, 6 slot tags) are
    # scored as UNK; the run prints how many. A BIO folder without UNK in its lists: set "error".
    c.finetune.unknown_labels = "unk"
    c.data.vocab_size = 1000
    c.data.seq_len = 72  # the longest ATIS utterance is 67 pieces with [CLS]/[SEP]
    c.data.eval_fraction = 0.0
    c.train.steps = 1500
    c.train.batch_size = 32
    c.train.log_every = 100
    c.train.eval_every = 500
    c.train.eval_batches = -1  # the whole split
    c.optimizer.learning_rate = 1e-3
    c.optimizer.warmup_steps = 100
    c.optimizer.weight_decay = 0.01
    c.checkpoint.every = 500
    return c
