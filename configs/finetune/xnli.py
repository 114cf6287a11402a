"""XNLI cross-lingual zero-shot: fine-tune on one language, evaluate all 15.

The shared data has only XNLI dev (2490 rows per language, parallel across languages). It is
split by the seeded rule `atm.data.labelled.in_holdout` (config.finetune.holdout_fraction=0.2,
holdout_seed=0): the same row indices are held out in every language, so the en training part
never contains a translation of an evaluated row. Train on the en part, then score every
language's held-out part (about 500 rows each):

    python -m atm.main --config=configs/finetune/xnli.py:workdirs/stage1_mini --workdir=workdirs/xnli_en
    python -m atm.evaluate --workdir=workdirs/xnli_en --task=xnli --split=validation

The text after ":" is a pretrained run (its shape, vocabulary and init_from are taken over; see
configs/finetune/massive.py for the stage-1 `mini` commands). Without it the encoder is the
`mini` preset trained from scratch on a vocabulary of the en training part.
Expected (measured 2026-11-22 on 2 shared CPU cores, the commands above from workdirs/stage1_mini of
configs/atm_stage1_public.py:mini): accuracy 32.4-34.9% in every language, mean 33.8% -- chance: that
weak encoder (masked-token accuracy 9.9%) memorises the 1971 en pairs and transfers nothing.
"""
from atm.config import default_config
from atm.convert.workdir import config_from_workdir
from atm.models import presets


def get_config(init_from: str = ""):
    c = default_config("finetune")
    c.model.update(presets.get("mini"))
    c.model.update(vocab_size=8000, max_positions=128, hidden_dropout=0.1)
    c.finetune.update(task="xnli_en", eval_split="validation")
    c.data.update(vocab_size=8000, seq_len=128)
    c.train.update(steps=600, batch_size=32, log_every=100, eval_every=300, eval_batches=-1)
    c.optimizer.update(learning_rate=5e-4, warmup_steps=60)
    c.checkpoint.every = 300
    if init_from:
        c = config_from_workdir(c, init_from)
    return c
