"""ATM stage-1 teachers at paper scale: MLM at the 700M / 2.3B / 9.3B presets (atm/models/presets.py).

    python -m atm.main --config=configs/atm_teacher.py:700m --workdir=gs://BUCKET/atm_700m \\
        --config.data.vocab=PATH/TO/xlmr_tokenizer          (launch/tpu_pod.py runs it on every worker)

Pre-LN encoders with the XLM-R vocabulary (250,002 pieces), bf16 compute over fp32 params, layers under
`nn.scan` with `dots_no_batch` rematerialisation, 512-token sequences, MLM on the public stage-1 mixture
with 70% spoken form (configs/atm_stage1_public.py; ATM's own corpus is not public). Every size is
FSDP over its whole slice (`mesh.fsdp=-1`); the sizes, batch and schedule are [unverified] against the
ATM paper (PAPERS.md), chosen to fit the topologies below.

Checked ahead of time on a CPU (no TPU) with `python -m atm.aot` (docs/benchmarks.md has the full lines):

    python -m atm.aot --config=configs/atm_teacher.py:700m --topology=v5e:4x4
    python -m atm.aot --config=configs/atm_teacher.py:2p3b --topology=v5e:8x8
    python -m atm.aot --config=configs/atm_teacher.py:9p3b --topology=v5p:4x4x4
    python -m atm.aot --config=configs/atm_teacher.py:9p3b --topology=v5e:16x16 --num_slices=2 \\
        --config.mesh.dcn_data=2             (two v5e-256 slices, data-parallel over DCN; not measured)

Measured per-chip memory (arguments + outputs + temporaries − donated aliases, XLA's memory_analysis of
the compiled step, libtpu 0.0.42.1, 2026-12-02, on the shared 2-core CPU at load 12–16; measured before the
gradient-accumulation carry was constrained to the params' sharding, commit "train: the gradient-accumulation
carry ..."; docs/benchmarks.md has the full lines):
  700m @ v5e:4x4,   batch 256×512 in 8 micro-batches: 9.29 of 15.75 GiB per chip (fits; temporaries 8.47 GiB),
                    compile 364 s, ≥ 0.20 s per step at 100% of peak (0.50 s at 40%)
  2p3b @ v5e:8x8,   batch 512×512 in 16 micro-batches: 15.56 of 15.75 GiB (fits, 1% headroom), compile 317 s,
                    ≥ 0.31 s per step (0.77 s at 40%)
  9p3b @ v5p:4x4x4, batch 1024×512 in 16 micro-batches: 22.58 of 95 GiB per chip (fits; temporaries 20.7 GiB),
                    compile 1116 s (2026-12-02, niced beside a test run, current code), ≥ 1.04 s per step at
                    100% of peak (2.60 s at 40%). With 4 micro-batches XLA:TPU refused it (temporaries 214 GiB
                    per 95 GiB chip) and `python -m atm.aot` exits 1.
"""
from atm.config import default_config
from atm.models import presets

SIZES = {
    # preset, global batch (sequences of 512), micro-batches, the topology it was compiled for
    "700m": ("atm_700m", 256, 8, "v5e:4x4"),
    "2p3b": ("atm_2p3b", 512, 16, "v5e:8x8"),
    "9p3b": ("atm_9p3b", 1024, 16, "v5p:4x4x4"),
}


def get_config(size: str = "700m"):
    if size not in SIZES:
        raise ValueError(f"configs/atm_teacher.py:{size}: unknown size; use one of {sorted(SIZES)}")
    preset, batch, micro, _ = SIZES[size]
    c = default_config("mlm")
    c.model.update(presets.get(preset))
    c.model.update(dtype="bfloat16", max_positions=514, attention_impl="xla")
    c.mesh.update(data=1, fsdp=-1, tensor=1)
    c.data.source = "tasks"
    c.data.tasks = "mlm_text:0.8,tydiqa_goldp:0.1,xnli:0.1"
    c.data.num_examples = 0
    c.data.spoken_share = 0.7
    c.data.vocab_size = c.model.vocab_size
    c.data.seq_len = 512
    c.data.whole_word_masking = True
    c.train.steps = 100_000
    c.train.batch_size = batch
    c.train.grad_accum_steps = micro
    c.train.log_every = 100
    c.train.eval_every = 5000
    c.optimizer.learning_rate = 2e-4 if size == "9p3b" else 4e-4
    c.optimizer.warmup_steps = 10_000
    c.optimizer.schedule = "linear"
    c.checkpoint.every = 1000
    return c
