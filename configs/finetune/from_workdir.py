"""Fine-tune an imported Hugging Face checkpoint (or any atm run) on ATIS intent + slots.

    python -m atm.convert import --hf_dir=path/to/bert-base-uncased --out=workdirs/bert_base
    python -m atm.main --config=configs/finetune/from_workdir.py:workdirs/bert_base --workdir=workdirs/atis_bert

The text after ":" is the workdir to start from: its model shape and layer layout, its vocabulary
(the imported tokenizer) and `init_from` are taken from it (atm.convert.workdir.config_from_workdir);
everything else is configs/finetune/atis.py. Override the task as there, e.g.
--config.finetune.bio_folder=... or --config.finetune.task=massive_en.
"""
from atm.convert.workdir import config_from_workdir
from configs.finetune import atis


def get_config(workdir: str):
    c = atis.get_config()
    c.optimizer.learning_rate = 5e-5  # a pretrained encoder
    c.optimizer.warmup_steps = 100
    return config_from_workdir(c, workdir)
