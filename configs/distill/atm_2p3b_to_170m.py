"""ATM distillation at paper scale: the frozen 2.3B teacher (configs/atm_teacher.py:2p3b) inside the
170M student's train step (presets `atm_2p3b` → `student_170m`, XLM-R vocabulary), on in-domain
(MASSIVE) utterances with 70% spoken form.

    python -m atm.main --config=configs/distill/atm_2p3b_to_170m.py --workdir=gs://BUCKET/student_170m \\
        --config.distill.teacher=gs://BUCKET/atm_2p3b          (a finished run of configs/atm_teacher.py:2p3b)

L = α·τ²·KL(σ(z_T/τ) ‖ σ(z_S/τ)) + (1−α)·L_MLM on the masked positions (α = 0.5, τ = 2 [unverified]).
The teacher runs in the student's bf16, sharded on the student's mesh (FSDP over the slice), never
trained or saved. The ATM paper's distillation data, batch and schedule are [unverified] here.

Checked ahead of time on a CPU with the teacher known by its config alone (no weights are read):

    python -m atm.aot --config=configs/distill/atm_2p3b_to_170m.py --topology=v5e:4x4 \\
        --config.distill.teacher=shapes:configs/atm_teacher.py:2p3b

Measured (libtpu 0.0.42.1, 2026-12-02, shared 2-core CPU at load ~13; docs/benchmarks.md): the whole batch of
1024×64 in one step needs 19.44 GiB of temporaries per v5e chip (XLA:TPU refused it; atm.aot exits 1), so this
config takes 4 micro-batches of 256: 8.52 of 15.75 GiB per chip (fits: arguments 1.03 GiB with the 2.88B
frozen teacher parameters FSDP-sharded, temporaries 7.49 GiB), compile 1878 s (starved: load 13–18), ≥ 0.13 s
per step at 100% of v5e peak (0.31 s at 40%; analytic FLOPs, teacher forward included).
"""
from atm.config import default_config
from atm.models import presets


def get_config():
    c = default_config("distill")
    c.model.update(presets.get("student_170m"))
    c.model.update(dtype="bfloat16", max_positions=514, hidden_dropout=0.1, scan_layers=True,
                   remat_policy="dots_no_batch")
    c.mesh.update(data=1, fsdp=-1, tensor=1)
    c.distill.teacher = "workdirs/atm_2p3b"  # a finished run of configs/atm_teacher.py:2p3b
    c.kd.update(alpha=0.5, temperature=2.0, loss="kl")
    c.data.source = "tasks"
    c.data.tasks = "massive_text"
    c.data.num_examples = 0
    c.data.spoken_share = 0.7
    c.data.vocab_size = c.model.vocab_size
    c.data.seq_len = 64
    c.data.whole_word_masking = True
    c.train.steps = 50_000
    c.train.batch_size = 1024
    c.train.grad_accum_steps = 4  # 1024 at once needs 19.4 GiB per v5e chip (atm.aot); 4 micro-batches of 256
    c.train.log_every = 100
    c.train.eval_every = 2000
    c.optimizer.learning_rate = 5e-4
    c.optimizer.warmup_steps = 2000
    c.checkpoint.every = 1000
    return c
