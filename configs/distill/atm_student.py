"""ATM distillation hop, in miniature: a post-LN student distilled from an atm teacher run on MASSIVE utterances.

    python -m atm.main --config=configs/distill/atm_student.py --workdir=workdirs/student \\
        --config.distill.teacher=workdirs/stage2

L = α·τ²·KL(σ(z_T/τ) ‖ σ(z_S/τ)) + (1−α)·L_MLM on the masked positions (config.kd: α = kd.alpha = 0.5,
τ = kd.temperature = 2 [unverified]). Several teachers: --config.distill.teacher=a=RUN1,b=RUN2, combined per
--config.kd.combine (mean_probs | mean_logits), each one's KD logged as kd_loss_{name}.
The vocabulary defaults to the (first) teacher's. The second hop distils from this run:
    python -m atm.main --config=configs/distill/atm_student.py --workdir=workdirs/student_small \\
        --config.distill.teacher=workdirs/student --config.model.num_layers=2 --config.model.hidden_size=256 \\
        --config.model.ffn_size=1024 --config.model.num_heads=4
Offline teacher logits: python -m atm.distill.cache --config=configs/distill/atm_student.py
    --teacher=workdirs/stage2 --out=workdirs/cache --top_k=32, then --config.distill.cache=workdirs/cache.
Stage-1 replay: --config.data.replay_share=0.3 (replay_tasks is stage 1's mixture).

Expected: not measured at this size; `python -m reproduce.atm` runs the same recipe at a CPU size
(results/atm/table.md).
"""
from atm.config import default_config


def get_config():
    c = default_config("distill")
    c.model.update(num_layers=4, hidden_size=384, num_heads=6, ffn_size=1536, vocab_size=8000, type_vocab_size=1,
                   max_positions=128, hidden_dropout=0.1, layer_norm_eps=1e-5)
    c.kd.update(alpha=0.5, temperature=2.0, loss="kl")
    c.data.source = "tasks"
    c.data.tasks = "massive_text"
    c.data.replay_tasks = "mlm_text_spoken_written"
    c.data.replay_share = 0.0
    c.data.num_examples = 0
    c.data.seq_len = 64
    c.data.whole_word_masking = True
    c.train.steps = 5000
    c.train.batch_size = 64
    c.train.eval_every = 500
    c.train.log_every = 50
    c.optimizer.learning_rate = 5e-4
    c.optimizer.warmup_steps = 200
    c.checkpoint.every = 500
    return c
