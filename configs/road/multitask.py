"""ROaD's second pretraining step: multi-task learning on labelled tasks, with KD from several teachers
(PAPERS.md seed 2; atm/objectives/multitask.py).

    L = Σ_heads on their own task's rows: (1 − λ)·L_task + λ·τ²·KL(p̄_T ‖ σ(z_S/τ)),   τ = 3, λ = 0.5 [unverified]

p̄_T: ROaD's weighted combination of the task's teachers (kd.combine=weighted: a teacher that gets
the gold label right weighs Ŵ = (M − n_wrong·0.75)/n_right, a wrong one 0.75; gold one-hot when none
is right). One step draws tasks_per_step tasks (proportionally to their training rows) and averages
their gradients. Continue any atm encoder: an ELECTRA discriminator run, an MLM run, or an imported
Hugging Face checkpoint (python -m atm.convert import):

    python -m atm.main --config=configs/road/multitask.py:workdirs/stage1_mini --workdir=workdirs/road_mt
    python -m atm.evaluate --workdir=workdirs/road_mt --split=validation       # every task, its own head
    python -m atm.evaluate --workdir=workdirs/road_mt --task=xnli --split=validation   # 15 languages

With teachers (finished fine-tuning runs of those tasks, same vocabulary):

    python -m atm.main --config=configs/road/multitask.py:workdirs/stage1_mini --workdir=workdirs/road_mt_kd \\
        --config.multitask.teachers="sst2=workdirs/sst2_a+workdirs/sst2_b, xnli_en=workdirs/xnli_en_a"

Then fine-tune per task from it (with or without KD, several teachers combined per kd.combine):

    python -m atm.main --config=configs/finetune/xnli.py:workdirs/road_mt --workdir=workdirs/road_xnli \\
        --config.finetune.teacher=workdirs/xnli_en_a,workdirs/xnli_en_b --config.kd.combine=weighted

The text after ":" is the encoder to continue (its shape, vocabulary and init_from are taken over);
without it the `mini` preset starts from scratch on a vocabulary of the tasks' training text.
Expected: not measured yet. The ROaD table is `python -m reproduce.road` (it starts from reproduce/electra.py's runs; not run yet).
Tests: tests/test_multitask.py on tiny BIO folders.
"""
from atm.config import default_config
from atm.convert.workdir import config_from_workdir
from atm.models import presets


def get_config(init_from: str = ""):
    c = default_config("multitask")
    c.model.update(presets.get("mini"))
    c.model.update(vocab_size=8000, max_positions=128, hidden_dropout=0.1)
    c.multitask.update(tasks="xnli_en, sst2, tydiqa_goldp_en, massive_en_us, conll2003", sampling="proportional",
                       tasks_per_step=1, teachers="")
    c.kd.update(temperature=3.0, alpha=0.5, combine="weighted", wrong_weight=0.75)  # ROaD's [unverified]
    c.finetune.update(eval_split="validation", squad_version=2)  # TyDi QA GoldP: no-answer style
    c.data.update(vocab_size=8000, seq_len=128)
    c.train.update(steps=2000, batch_size=32, log_every=100, eval_every=1000, eval_batches=-1)
    c.optimizer.update(learning_rate=5e-4, warmup_steps=100)
    c.checkpoint.every = 500
    if init_from:
        c = config_from_workdir(c, init_from)
    return c
