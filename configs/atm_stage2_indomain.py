"""ATM stage 2, in miniature: continue MLM on in-domain assistant utterances (MASSIVE).

Text: MASSIVE utterances (en-US, de-DE, sw-KE; massive_text mixture, temperature-sampled),
already spoken-form-like (short, lower case). Stage-1 replay: `config.data.replay_share` of the
rows come from `config.data.replay_tasks` (stage 1's 70/30 spoken/written WikiANN mixture; ATM's
replay rate is unverified, default 0). `config.init_from` starts from the stage-1 weights (params
only: a fresh optimizer and learning-rate schedule); the run takes over the stage-1 vocabulary
(WORKDIR/vocab.model) so the embeddings line up:

    python -m atm.main --config=configs/atm_stage2_indomain.py --workdir=workdirs/stage2 \
        --config.init_from=workdirs/stage1 [--config.data.replay_share=0.1]

`:mini` (configs/atm_stage1_public.py:mini's encoder) runs 1500 steps of 32x64 tokens on 2 CPU cores.

Expected for `:mini` from workdirs/stage1_mini with --config.train.steps=400
--config.optimizer.warmup_steps=40 (measured 2026-11-22, 13 min on 2 shared cores): eval MLM loss 4.89.
Not measured for `small`. Checked: 4 steps with --config.train.steps=4 --config.train.batch_size=8
and the stage-1 vocabulary run and log loss and eval loss (8.71 / 8.63 at step 4).
"""
from atm.config import default_config
from atm.models import presets


def get_config(size: str = "small"):
    c = default_config("mlm")
    c.model.update(presets.get(size))
    c.model.update(pre_layer_norm=True, vocab_size=8000, type_vocab_size=1, max_positions=128, hidden_dropout=0.1)
    c.data.source = "tasks"
    c.data.tasks = "massive_text"
    c.data.replay_tasks = "mlm_text_spoken_written"
    c.data.replay_share = 0.0
    c.data.num_examples = 0
    c.data.spoken_share = 0.0  # utterances are in-domain spoken text already
    c.data.vocab_size = 8000
    c.data.seq_len = 64
    c.data.whole_word_masking = True
    c.train.steps = 5000
    c.train.batch_size = 64
    c.train.eval_every = 500
    c.train.log_every = 50
    c.optimizer.learning_rate = 2e-4
    c.optimizer.warmup_steps = 200
    c.checkpoint.every = 500
    if size == "mini":
        c.train.update(steps=1500, batch_size=32, eval_every=500)
        c.optimizer.update(learning_rate=5e-4, warmup_steps=100)
    return c
