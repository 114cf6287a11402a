"""Throughput / MFU benchmark: one JSON line per run.

    python -m atm.bench --config=configs/bench/bert_small.py --mode=train|infer [--peer=hf]
        [--steps=20] [--warmup=3] [--hf_head=full|masked] [--config.train.batch_size=64 ...]
    python -m atm.bench --config=configs/bench/narrowbert.py[:base] [--steps=10]     (NarrowBERT vs BERT)

train  times `Trainer.train_step` exactly as `atm.train` builds it (dynamic masking, forward, backward,
       clipping, AdamW), on random token ids with a stand-in vocabulary, so no
       data or vocabulary file is needed.
infer  times a jitted, deterministic `EncoderForMLM` forward over the full batch with the MLM head at
       the masked slots (what an MLM evaluation step computes), the masks drawn once beforehand.

Each timed step is blocked until ready; the first call (compile) and `--warmup` steps are excluded;
`step_s` is the median of `--steps` timed steps (`step_s_min` the fastest). The record holds tokens_per_s,
step_s, params, flops_per_token (the objective's analytic count; inference is a third of training) and mfu (null
where `atm.metrics.device_peak_flops()` does not know the device, e.g. CPU).

`--peer=hf` also times Hugging Face transformers' PyTorch `BertForMaskedLM` of the same shape on the
same (masked) batch in the same process, its steps interleaved with atm's so both see the same
background load (the 2-core dev machine is shared): train = forward with labels + backward + grad clipping +
torch.optim.AdamW step; infer = a `torch.no_grad()` forward. torch uses os.cpu_count() threads (CUDA
when torch has it). The line then holds {"atm": {...}, "hf": {...}, "speedup_vs_hf": ...}.

ELECTRA: a config with `objective="electra"` (configs/electra.py[:small]) times, in one run and on the same
batches, ELECTRA's training step (generator + sampling + discriminator, `Trainer.train_step`) and the MLM
training step of the same discriminator (`atm.objectives.electra.mlm_config`: same model, optimiser and mask
slots), interleaved; the line holds {"electra": {...}, "mlm": {...}, "electra_over_mlm": median step-time
ratio, ...} (the ELECTRA paper's claim rests on the generator costing little: target ≤ 1.35×). train only.

NarrowBERT: a config with a `bench.arrangements` section (configs/bench/narrowbert.py) times, in one run
and on the same batches, atm BERT (config.model.arrangement="", MLM head at the masked slots only) and
each listed arrangement: training steps (`Trainer.train_step`, the masks of a step identical for all)
and [CLS]-only sequence-classification inference (`EncoderWithHeads` with one sequence head: BERT runs
every layer over all tokens and reads [CLS]; NarrowBERT runs its narrow layers on [CLS] alone). Steps
are interleaved across models. One JSON line per arrangement, with `speedup_train` and `speedup_infer`
(BERT's median step time over the arrangement's) and the analytic FLOP ratios beside them.
Plain `BertForMaskedLM` computes vocabulary logits at EVERY position while atm computes the MLM head
only at the masked slots; `--hf_head=masked` runs HF's encoder and its `cls` head on the gathered
masked positions instead — the like-for-like comparison of the two implementations.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import statistics
import sys
import time
from typing import Any, Callable

import jax
import numpy as np

from atm import config as atm_config
from atm import metrics as atm_metrics

MODES = ("train", "infer")
HF_HEADS = ("full", "masked")
HF_HEAD_NOTE = {
    "full": ("hf is plain BertForMaskedLM: vocabulary logits (and, in train, the softmax) at every position; "
             "atm computes the MLM head only at the masked slots (round(mask_rate*seq_len) per sequence)"),
    "masked": ("hf runs BertModel + its cls head on the same gathered masked slots as atm "
               "(like-for-like); plain BertForMaskedLM would compute logits at every position"),
}


@dataclasses.dataclass(frozen=True)
class BenchVocabulary:
    """Stand-in for a real vocabulary: atm's special-id layout ([PAD] [UNK] [CLS] [SEP] [MASK] = 0..4)."""
    size: int
    pad_id: int = 0
    unk_id: int = 1
    cls_id: int = 2
    sep_id: int = 3
    mask_id: int = 4

    @property
    def special_ids(self) -> tuple[int, ...]:
        return (self.pad_id, self.cls_id, self.sep_id, self.mask_id)

    @property
    def first_regular_id(self) -> int:
        return 5


def random_batch(vocab: BenchVocabulary, batch_size: int, seq_len: int, seed: int = 0,
                 keys: tuple[str, ...] = ("input_ids", "segment_ids", "positions")) -> dict[str, np.ndarray]:
    """Full rows ([CLS] random regular ids [SEP]), one segment each: what packed pretraining data looks like.

    `keys` are the objective's batch features; `word_ids` (whole-word masking) makes every piece its
    own word, and any other feature is zeros.
    """
    rng = np.random.default_rng(seed)
    ids = rng.integers(vocab.first_regular_id, vocab.size, size=(batch_size, seq_len), dtype=np.int32)
    ids[:, 0], ids[:, -1] = vocab.cls_id, vocab.sep_id
    arange = np.broadcast_to(np.arange(seq_len, dtype=np.int32), ids.shape).copy()
    known = {"input_ids": ids, "segment_ids": np.ones_like(ids), "positions": arange, "word_ids": arange}
    return {k: known.get(k, np.zeros_like(ids)) for k in keys}


@dataclasses.dataclass
class Runner:
    """One framework's benchmark: `step()` runs a step, `sync(out)` waits for it, `record(timing)` reports."""
    name: str
    step: Callable[[], Any]
    sync: Callable[[Any], Any]
    record: Callable[[dict], dict]


def time_runners(runners: list[Runner], steps: int, warmup: int) -> list[dict]:
    """Compile/first step and `warmup` steps per runner, then `steps` timed rounds, interleaved.

    Interleaving (atm step, HF step, atm step, ...) exposes both to the same background load, so the
    ratio stays meaningful on a shared machine even when the absolute figures drift.
    """
    if steps < 1:
        raise ValueError(f"--steps={steps}: need at least one timed step")
    firsts = []
    for runner in runners:
        start = time.perf_counter()
        runner.sync(runner.step())
        firsts.append(time.perf_counter() - start)
        for _ in range(warmup):
            runner.sync(runner.step())
    times: list[list[float]] = [[] for _ in runners]
    for _ in range(steps):
        for runner, runner_times in zip(runners, times):
            start = time.perf_counter()
            runner.sync(runner.step())
            runner_times.append(time.perf_counter() - start)
    return [{"step_s": statistics.median(t), "step_s_min": min(t), "first_step_s": first}
            for t, first in zip(times, firsts)]


def _record(mode: str, batch: int, seq_len: int, timing: dict, params: int, flops_per_token: float,
            peak: float | None, num_devices: int, device: str, **extra) -> dict:
    tokens_per_s = batch * seq_len / timing["step_s"]
    return {
        "mode": mode, "batch": batch, "seq_len": seq_len, "device": device,
        "tokens_per_s": round(tokens_per_s, 1), "step_s": round(timing["step_s"], 6),
        "params": int(params), "flops_per_token": float(flops_per_token),
        "mfu": None if peak is None else round(flops_per_token * tokens_per_s / (peak * num_devices), 5),
        "step_s_min": round(timing["step_s_min"], 6), "first_step_s": round(timing["first_step_s"], 3),
        "load_avg_1m": round(os.getloadavg()[0], 2),  # the host's load: CPU figures are only as quiet as it
        **extra,
    }


def atm_runner(config, mode: str = "train") -> tuple[Runner, dict]:
    """(Runner, the masked batch on host) for atm on `config`."""
    from atm.train import build  # imported late: pulls in orbax/clu

    if mode not in MODES:
        raise ValueError(f"--mode={mode!r}: use one of {MODES}")
    atm_config.validate(config)
    vocab = BenchVocabulary(size=config.model.vocab_size)
    built = build(config, "", vocab=vocab)
    objective, trainer = built.objective, built.trainer
    teachers = getattr(objective, "teachers", None)
    if teachers is not None and all(run.shapes_only for run in teachers.runs.values()):
        trainer.frozen = teachers.random_params(trainer.mesh, config.seed)  # shapes:... teachers: random weights
    batch_size, seq_len = config.train.batch_size, config.data.seq_len
    keys = tuple(objective.example_batch(batch_size))
    batch = trainer.global_batch(random_batch(vocab, batch_size, seq_len, config.seed, keys))
    state = trainer.init_state()
    n_params = sum(int(x.size) for x in jax.tree_util.tree_leaves(state.params))
    with trainer.activate():
        masked = jax.jit(objective.prepare)(batch, jax.random.key(config.seed))
    host_batch = jax.device_get(masked)

    if mode == "train":
        holder = {"state": state}

        def step():
            holder["state"], metrics = trainer.train_step(holder["state"], batch)
            return holder["state"], metrics

        flops_per_token = objective.flops_per_token()
    else:
        params = state.params
        del state  # the optimizer state is not needed to infer
        model = objective.eval_model

        @jax.jit
        def forward(p, b):
            return model.apply({"params": p}, b["input_ids"], b["segment_ids"], b["positions"],
                               masked_positions_BxM=b["masked_positions"])

        def step():
            with trainer.activate():
                return forward(params, masked)

        flops_per_token = objective.flops_per_token() / 3.0
    device = jax.devices()[0]

    def record(timing):
        return _record(mode, batch_size, seq_len, timing, n_params, flops_per_token,
                       atm_metrics.device_peak_flops(device), jax.device_count(),
                       f"{device.device_kind} x{jax.device_count()}",
                       attention_impl=config.model.attention_impl, dtype=config.model.dtype,
                       mlm_head_positions_per_sequence=int(host_batch["masked_positions"].shape[1]))

    return Runner("atm", step, jax.block_until_ready, record), host_batch


_HF_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_new", "relu": "relu", "silu": "silu"}


def hf_bert_config(cfg):
    """transformers.BertConfig of the same shape as atm's EncoderConfig (BERT is post-LN only)."""
    import transformers

    if cfg.pre_layer_norm:
        raise ValueError("--peer=hf compares with BertForMaskedLM, which is post-LN; "
                         "config.model.pre_layer_norm=True has no HF BERT equivalent")
    return transformers.BertConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, intermediate_size=cfg.ffn_size, max_position_embeddings=cfg.max_positions,
        type_vocab_size=max(cfg.type_vocab_size, 1), hidden_act=_HF_ACTIVATIONS[cfg.activation],
        layer_norm_eps=cfg.layer_norm_eps, hidden_dropout_prob=cfg.hidden_dropout,
        attention_probs_dropout_prob=cfg.attention_dropout, tie_word_embeddings=cfg.tie_embeddings)


def hf_runner(config, mode: str, host_batch: dict, head: str = "full") -> Runner:
    """HF transformers' PyTorch BertForMaskedLM of config's shape on the same masked batch."""
    import torch
    import transformers

    if head not in HF_HEADS:
        raise ValueError(f"--hf_head={head!r}: use one of {HF_HEADS}")
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(config.seed)
    cfg = atm_config.model_config(config)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = transformers.BertForMaskedLM(hf_bert_config(cfg)).to(device)
    autocast_dtype = torch.bfloat16 if (cfg.dtype == "bfloat16" and device.type == "cuda") else None

    def tensor(name, dtype):
        return torch.as_tensor(np.array(host_batch[name]), dtype=dtype, device=device)  # a writable copy

    ids = tensor("input_ids", torch.long)
    attention_mask = (tensor("segment_ids", torch.long) > 0).long()
    positions = tensor("masked_positions", torch.long)
    targets = tensor("masked_targets", torch.long)
    weights = tensor("masked_weights", torch.float32)
    rows = torch.arange(ids.shape[0], device=device)[:, None]
    labels = torch.full_like(ids, -100)
    labels[rows.expand_as(positions)[weights > 0], positions[weights > 0]] = targets[weights > 0]

    def autocast():
        return torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None)

    def masked_logits():
        hidden = model.bert(input_ids=ids, attention_mask=attention_mask).last_hidden_state
        return model.cls(hidden[rows, positions])

    def forward_loss():
        with autocast():
            if head == "full":
                return model(input_ids=ids, attention_mask=attention_mask, labels=labels).loss
            logits = masked_logits().float()
            nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                                    reduction="none")
            return (nll * weights.reshape(-1)).sum() / weights.sum().clamp(min=1.0)

    opt = config.optimizer
    if mode == "train":
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=opt.learning_rate, betas=(opt.b1, opt.b2),
                                      eps=opt.eps, weight_decay=opt.weight_decay)

        def step():
            loss = forward_loss()
            loss.backward()
            if opt.grad_clip_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), opt.grad_clip_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return loss
    else:
        model.eval()

        def step():
            with torch.no_grad(), autocast():
                if head == "full":
                    return model(input_ids=ids, attention_mask=attention_mask).logits
                return masked_logits()

    def sync(out):
        if device.type == "cuda":
            torch.cuda.synchronize()
        return out

    from atm.objectives.mlm import encoder_flops_per_token

    seq_len = ids.shape[1]
    per_token = 1.0 if head == "full" else positions.shape[1] / seq_len
    flops = encoder_flops_per_token(cfg, seq_len, per_token) / (1.0 if mode == "train" else 3.0)
    peak, device_name = None, f"cpu x{torch.get_num_threads()} threads"
    if device.type == "cuda":
        device_name = torch.cuda.get_device_name()
        peak = next((atm_metrics.PEAK_FLOPS[k] for k in sorted(atm_metrics.PEAK_FLOPS, key=len, reverse=True)
                     if k.lower() in device_name.lower()), None)
    n_params = sum(p.numel() for p in model.parameters())

    def record(timing):
        return _record(mode, ids.shape[0], seq_len, timing, n_params, flops, peak, 1, device_name, head=head,
                       attn_implementation=model.config._attn_implementation, torch=torch.__version__,
                       transformers=transformers.__version__)

    return Runner("hf", step, sync, record)


def benchmark(config, mode: str = "train", steps: int = 10, warmup: int = 2, peer: str = "",
              hf_head: str = "full") -> dict:
    """The JSON record: atm's alone, or {"atm", "hf", "speedup_vs_hf", "note"} with `peer="hf"`."""
    if peer not in ("", "none", "hf"):
        raise ValueError(f"--peer={peer!r}: use 'hf' or leave it empty")
    if config.objective == "electra":
        if mode != "train" or peer not in ("", "none"):
            raise ValueError(f"--mode={mode} --peer={peer!r}: an ELECTRA config is timed in training against the "
                             "MLM step of the same discriminator (use --mode=train, no --peer)")
        return electra_vs_mlm(config, steps, warmup)
    atm, host_batch = atm_runner(config, mode)
    if peer != "hf":
        (timing,) = time_runners([atm], steps, warmup)
        return atm.record(timing)
    hf = hf_runner(config, mode, host_batch, hf_head)
    atm_timing, hf_timing = time_runners([atm, hf], steps, warmup)
    atm_record, hf_record = atm.record(atm_timing), hf.record(hf_timing)
    return {"mode": mode, "batch": atm_record["batch"], "seq_len": atm_record["seq_len"],
            "atm": atm_record, "hf": hf_record,
            "speedup_vs_hf": round(atm_record["tokens_per_s"] / hf_record["tokens_per_s"], 3),
            "speedup_vs_hf_best_step": round(hf_record["step_s_min"] / atm_record["step_s_min"], 3),
            "note": HF_HEAD_NOTE[hf_head] + "; atm and hf steps are timed interleaved"}


ELECTRA_TARGET = 1.35  # the ELECTRA step's time over the MLM step's (issue 16)


def electra_vs_mlm(config, steps: int = 10, warmup: int = 2) -> dict:
    """ELECTRA's training step against the MLM training step of the same discriminator, on the same
    batches (`random_batch` of the same seed), steps interleaved. One record."""
    from atm.objectives.electra import mlm_config

    electra, _ = atm_runner(config, "train")
    mlm, _ = atm_runner(mlm_config(config), "train")
    electra_timing, mlm_timing = time_runners([electra, mlm], steps, warmup)
    e, m = electra.record(electra_timing), mlm.record(mlm_timing)
    ratio = e["step_s"] / m["step_s"]
    return {"mode": "train", "objective": "electra", "batch": e["batch"], "seq_len": e["seq_len"],
            "electra": e, "mlm": m, "electra_over_mlm": round(ratio, 3),
            "electra_over_mlm_best_step": round(e["step_s_min"] / m["step_s_min"], 3),
            "flops_ratio": round(e["flops_per_token"] / m["flops_per_token"], 3),
            "target": ELECTRA_TARGET, "within_target": ratio <= ELECTRA_TARGET,
            "note": ("electra = generator + Gumbel-max replacement + discriminator on every token; mlm = the same "
                     "discriminator's encoder with its MLM head at the masked slots (BERT 80/10/10 masking, the same "
                     "slots); both full training steps (AdamW), timed interleaved on the same batches")}


def split_bench_section(config) -> tuple[Any, dict]:
    """(the run config without its `bench` section, that section as a dict): atm.bench's own settings
    are not part of the training config tree that `atm.config.validate` checks."""
    import ml_collections

    tree = config.to_dict()
    bench = tree.pop("bench", {})
    return ml_collections.ConfigDict(tree), bench


def classify_runner(config) -> Runner:
    """[CLS]-only sequence classification (one sequence head, 2 classes): a jitted deterministic forward."""
    import flax.linen as nn
    import jax.numpy as jnp

    from atm.models.heads import EncoderWithHeads
    from atm.objectives.mlm import encoder_flops_per_token

    atm_config.validate(config)
    cfg = atm_config.model_config(config)
    model = EncoderWithHeads(cfg, (("label", "sequence", 2),))
    batch_size, seq_len = config.train.batch_size, config.data.seq_len
    host = random_batch(BenchVocabulary(size=cfg.vocab_size), batch_size, seq_len, config.seed)
    batch = {k: jnp.asarray(v) for k, v in host.items()}
    params = jax.jit(lambda r: nn.unbox(model.init(r, batch["input_ids"], batch["segment_ids"],
                                                   batch["positions"]))["params"])(jax.random.key(config.seed))
    forward = jax.jit(lambda p, b: model.apply({"params": p}, b["input_ids"], b["segment_ids"], b["positions"]))
    n_params = sum(int(x.size) for x in jax.tree_util.tree_leaves(params))
    flops_per_token = encoder_flops_per_token(cfg, seq_len, 0.0, 1) / 3.0  # forward; S = [CLS]
    device = jax.devices()[0]

    def record(timing):
        return _record("infer", batch_size, seq_len, timing, n_params, flops_per_token,
                       atm_metrics.device_peak_flops(device), 1, f"{device.device_kind} x1",
                       arrangement=cfg.arrangement or "bert", task="[CLS] sequence classification")

    return Runner(cfg.arrangement or "bert", lambda: forward(params, batch), jax.block_until_ready, record)


def compare_arrangements(config, steps: int = 10, warmup: int = 2) -> list[dict]:
    """BERT and each of `config.bench.arrangements`, training and [CLS] inference, interleaved on the
    same batches. One record per arrangement."""
    base, bench = split_bench_section(config)
    arrangements = [a.strip() for a in str(bench.get("arrangements", "")).split(",") if a.strip()]
    if not arrangements:
        raise ValueError("config.bench.arrangements is empty: list NarrowBERT arrangements, e.g. '1sf:3sf,4s:4f'")
    variants = []
    for arrangement in [""] + arrangements:
        variant = copy.deepcopy(base)
        variant.model.arrangement = arrangement
        atm_config.model_config(variant)  # a bad arrangement fails here, before any compile
        variants.append(variant)
    results = {}
    for mode in MODES:
        runners = [atm_runner(v, "train")[0] if mode == "train" else classify_runner(v) for v in variants]
        timings = time_runners(runners, steps, warmup)
        results[mode] = [runner.record(t) for runner, t in zip(runners, timings)]
        del runners
    lines = []
    for i, arrangement in enumerate(arrangements, start=1):
        line = {"arrangement": arrangement, "baseline": "atm BERT (MLM head at the masked slots only)",
                "batch": base.train.batch_size, "seq_len": base.data.seq_len}
        for mode, short in (("train", "train"), ("infer", "infer")):
            bert, narrow = results[mode][0], results[mode][i]
            line[f"speedup_{short}"] = round(bert["step_s"] / narrow["step_s"], 3)
            line[f"speedup_{short}_best_step"] = round(bert["step_s_min"] / narrow["step_s_min"], 3)
            line[f"flops_ratio_{short}"] = round(bert["flops_per_token"] / narrow["flops_per_token"], 3)
            line[mode] = {"narrow": narrow, "bert": bert}
        lines.append(line)
    return lines


def _define_flags():
    """Flags are defined only when run as a program, so importing atm.bench next to atm.main is safe."""
    from absl import flags
    from ml_collections import config_flags

    config_flags.DEFINE_config_file("config", None, "Path to an ml_collections config file.")
    flags.DEFINE_enum("mode", "train", list(MODES), "train: Trainer.train_step; infer: jitted forward.")
    flags.DEFINE_string("peer", "", "'hf': also time transformers' PyTorch BertForMaskedLM of the same shape.")
    flags.DEFINE_enum("hf_head", "full", list(HF_HEADS),
                      "full: plain BertForMaskedLM (logits at every position); masked: HF head at atm's slots.")
    flags.DEFINE_integer("steps", 10, "Timed steps (the median is reported).")
    flags.DEFINE_integer("warmup", 2, "Untimed steps after the first (compiling) call.")
    flags.mark_flags_as_required(["config"])


def main(argv):
    from absl import flags
    from absl import logging

    if len(argv) > 1:
        raise SystemExit(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    f = flags.FLAGS
    try:
        if "bench" in f.config:  # NarrowBERT comparison: both modes, one line per arrangement
            results = compare_arrangements(f.config, f.steps, f.warmup)
        else:
            results = [benchmark(f.config, f.mode, f.steps, f.warmup, f.peer, f.hf_head)]
    except ValueError as e:
        print(f"atm.bench: error: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    for result in results:
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
