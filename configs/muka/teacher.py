"""A MUKA teacher: fine-tune on part of a label space (`config.finetune.label_subset`).

Any classification or intent task (a registered task, or any BIO folder via `finetune.bio_folder`)
keeps only the rows whose sequence label (the intent, or the class label) is in the subset, and its
head covers those labels only (|C_j| classes, in the inventory's order). Its evaluation split is cut
the same way, so its accuracy is on its own part. Three spellings:

    scenario:alarm,calendar,...   MASSIVE intents by scenario (the part of the intent before the first "_")
    part:k/n                      the k-th (1-based) of n contiguous, near-equal parts of the sorted labels
    alarm_set,weather_query       an explicit list

An unknown scenario or label, a bad part, or a task without a sequence label (NER, QA) is an error
naming config.finetune.label_subset. Two teachers on the two halves of MASSIVE en-US intents, then
one student over both (configs/muka/amalgamate.py):

    python -m atm.main --config=configs/muka/teacher.py --workdir=workdirs/muka/t1 \
        --config.finetune.label_subset=part:1/2
    python -m atm.main --config=configs/muka/teacher.py --workdir=workdirs/muka/t2 \
        --config.finetune.label_subset=part:2/2
    python -m atm.main --config=configs/muka/amalgamate.py --workdir=workdirs/muka/student \
        --config.amalgamate.teachers=workdirs/muka/t1,workdirs/muka/t2

By scenario (four teachers): part of the scenarios each, e.g. `scenario:alarm,audio,calendar,cooking,datetime`.
A teacher with another vocabulary or size: `--config.data.vocab_size=1500 --config.model.num_layers=2`.
ATIS intents: `--config.finetune.task=atis`.

Result: not measured at this scale (the tests train miniature teachers on generated BIO folders:
tests/test_amalgamate.py).
"""
from atm.config import default_config
from configs.finetune import massive


def get_config():
    c = massive.encoder_and_schedule(default_config("finetune"), steps=2000)
    c.finetune.task = "massive_en_us"
    c.finetune.label_subset = "part:1/2"
    c.finetune.sequence_heads_only = True  # the intent head alone: what amalgamation reads
    return c
