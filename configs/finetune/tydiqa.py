"""TyDi QA GoldP extractive QA (SQuAD format) with overlapping windows over long contexts.

The staged XTREME dev files carry no answers, so the labelled train file is split by the seeded
rule `atm.data.labelled.in_holdout` (20% of the questions held out for evaluation). Windows of
data.seq_len tokens start finetune.doc_stride context tokens apart; scores are the official SQuAD
v1.1 EM / F1 (finetune.squad_version=2 for SQuAD 2.0 files with unanswerable questions).

    python -m atm.main --config=configs/finetune/tydiqa.py:workdirs/stage1_mini --workdir=workdirs/tydiqa_en
    python -m atm.evaluate --workdir=workdirs/tydiqa_en --split=validation

The text after ":" is a pretrained run (shape, vocabulary, init_from; see configs/finetune/massive.py);
without it the `mini` encoder is trained from scratch. Other languages: --config.finetune.task=tydiqa_goldp_sw.
Expected (measured 2026-11-22 on 2 shared CPU cores from workdirs/stage1_mini of
configs/atm_stage1_public.py:mini, with --config.train.steps=400 --config.optimizer.warmup_steps=40):
763 held-out en questions, exact match 8.8%, F1 18.3%.
"""
from atm.config import default_config
from atm.convert.workdir import config_from_workdir
from atm.models import presets


def get_config(init_from: str = ""):
    c = default_config("finetune")
    c.model.update(presets.get("mini"))
    c.model.update(vocab_size=8000, max_positions=128, hidden_dropout=0.1)
    c.finetune.update(task="tydiqa_goldp_en", eval_split="validation", doc_stride=64, max_query_tokens=32)
    c.data.update(vocab_size=8000, seq_len=128)
    c.train.update(steps=1200, batch_size=32, log_every=100, eval_every=600, eval_batches=-1)
    c.optimizer.update(learning_rate=5e-4, warmup_steps=120)
    c.checkpoint.every = 600
    if init_from:
        c = config_from_workdir(c, init_from)
    return c
