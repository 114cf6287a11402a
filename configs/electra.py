"""ELECTRA pretraining: a generator and a discriminator trained jointly (atm/objectives/electra.py).

    python -m atm.main --config=configs/electra.py --workdir=/tmp/electra_tiny          (= :tiny)
    python -m atm.main --config=configs/electra.py:small --workdir=W --config.data.source=tasks \\
        --config.data.tasks=mlm_text --config.data.vocab=path/to/vocab     (real text; :base likewise)
    python -m atm.convert export --workdir=W --out=D      (D: ElectraForPreTraining, D/generator: ElectraForMaskedLM)

Arguments after ":": `tiny` (the default; CPU-sized, the notebook's and the tests' model), `small` /
`electra_small` (12 layers, hidden 256, embedding width 128, 4 heads, FFN 1024) and `base` / `electra_base`
(12 layers, hidden 768, 12 heads, FFN 3072); `atm.models.presets` holds the shapes. The generator's shape
follows from config.electra (hidden = round(0.25 · hidden), FFN 4×, heads max(1, hidden // 64)).
The text is atm's generated multilingual assistant utterances unless --config.data.source says otherwise.
small/base take google-research/electra's optimiser settings [unverified: not re-run here]: lr 5e-4 (small) /
2e-4 (base), 10k warm-up steps, linear decay, weight decay 0.01, batch 128 × 128 tokens (small) /
256 × 512 (base), 1M / 766k steps; the vocabulary here is trained into the workdir (8000 pieces) unless
--config.data.vocab names one (then set --config.model.vocab_size to at least its size).

tiny, measured on 2 shared CPU cores (load average 1-3, other jobs running), 600 steps in 79 s wall: total loss
21.6 (step 50) → 17.2; discriminator loss 0.31 → 0.25 (0.69 at step 1), eval discriminator accuracy 92.2% against
87.3% for always answering "original", eval replaced-token precision 0.94, recall 0.41, F1 0.57; generator eval
loss 4.75, accuracy 11% (a 16-wide, 1-head generator); 12.7% of tokens replaced. small/base: not trained here.

    python -m atm.bench --config=configs/electra.py:small     (ELECTRA's step over the MLM step of the same
                                                               discriminator, interleaved on the same batches)
measured 2026-12-02 at a CPU-sized cut of :small (--config.model.num_layers=2 --config.train.batch_size=32
--steps=5 --warmup=1; hidden 256, embedding width 128, seq 128, generator 64 wide), on 2 CPU cores shared with
other jobs (load average 15.5 at the start, 7.9 at the end): ELECTRA 8.83 s/step, MLM 7.67 s/step, ratio 1.151
(fastest steps 1.244; analytic FLOP ratio 1.038), within the 1.35 target. The full 12-layer, batch-128 shape: not
measured.
"""
from atm.config import default_config
from atm.models import presets

ALIASES = {"tiny": "tiny", "small": "electra_small", "electra_small": "electra_small", "base": "electra_base",
           "electra_base": "electra_base"}


def get_config(arg: str = "tiny"):
    arg = arg or "tiny"
    if arg not in ALIASES:
        raise ValueError(f"configs/electra.py:{arg}: use one of {sorted(ALIASES)}")
    preset = ALIASES[arg]
    c = default_config("electra")
    c.model.update(presets.get(preset))
    c.data.source = "synthetic"
    if preset == "tiny":
        c.model.embedding_size = 32  # factorised, as ELECTRA-small: both projections are exercised
        c.data.vocab_size = 2000
        c.data.seq_len = 64
        c.data.num_examples = 20000
        c.data.spoken_share = 0.7
        c.train.steps = 600
        c.train.batch_size = 32
        c.train.log_every = 50
        c.train.eval_every = 200
        c.optimizer.learning_rate = 2e-3
        c.optimizer.warmup_steps = 30
        c.checkpoint.every = 200
        return c
    small = preset == "electra_small"
    c.model.vocab_size = c.data.vocab_size = 8000
    c.data.seq_len = 128 if small else 512
    c.data.num_examples = 200000
    c.train.batch_size = 128 if small else 256
    c.train.steps = 1_000_000 if small else 766_000
    c.train.log_every = 100
    c.train.eval_every = 10_000
    c.checkpoint.every = 10_000
    c.optimizer.learning_rate = 5e-4 if small else 2e-4
    c.optimizer.warmup_steps = 10_000
    c.optimizer.b2 = 0.999
    c.optimizer.weight_decay = 0.01
    return c
