"""Multi-task learning as a second pretraining step, with KD from several teachers per task
(ROaD; PAPERS.md seed 2). `config.objective = "multitask"`.

One shared encoder, one head per task type: each task of `multitask.tasks` (registered tasks,
`python -m atm.data list`, or BIO folders) gets fine-tuning's heads for its kind (`finetune.heads_for`:
sentence / pair classification, intent + slots, token classification, extractive QA). Tasks of the same
kind with equal label sets share their heads (XNLI en + de, two MASSIVE locales), named after the first
such task (`xnli_en_label`, `massive_en_us_intent`, ...); the others each have their own.

Sampling: each step draws k = `multitask.tasks_per_step` tasks (with replacement) with rates

    proportional  q_k ∝ n_k        uniform  q_k = 1/K        temperature  q_k ∝ n_k^β  (β = multitask.beta)

over the training rows (QA: windows) n_k; the batch is k blocks of B/k rows, block j from the j-th task
drawn, so the step's gradient is the mean of the k task batches' gradients (ROaD-Large: k = 4). The
draws are a pure function of (seed, step) (`TaskSchedule`), and each task walks its own shuffled stream
by the number of times it was drawn before, so resume is bit-identical.

Per head, on its own task's rows only (a head gets exactly zero gradient from other tasks' rows):

    L = (1 − λ)·L_task + λ·τ²·KL(p̄_T ‖ σ(z_S/τ))      λ = kd.alpha, τ = kd.temperature

the per-head loss of fine-tuning (`finetune.head_losses`: sequence heads per example, token heads over
the labelled tokens, span heads over start and end apart), with p̄_T the task's teachers
(`multitask.teachers="sst2=RUN1+RUN2, xnli_en=RUN4"`, finished fine-tuning runs) combined per
`kd.combine` (mean_probs | mean_logits | weighted, ROaD's | confidence; `atm/distill/kd.py`). ROaD's
τ = 3 and λ = 0.5 are the recipe's defaults here (configs/road/multitask.py) [unverified]. A task's
teachers run frozen and sharded inside the step (`atm.distill.teacher.Teachers`, through each task's
`FineTune` view), only when the step's batch holds that task's rows (`lax.cond`).

Evaluation walks each task's eval split and reports its figures prefixed by its name
(`eval_sst2_accuracy`, `eval_tydiqa_goldp_en_f1`, ...); `python -m atm.evaluate --workdir=W --task=T`
scores any task whose kind and labels match one of the run's heads (XNLI: every language through the
xnli_en head). Each task is a `FineTune` view: its data loading, heads, losses, teachers and metrics
are fine-tuning's; this module only routes rows to heads.
"""
from __future__ import annotations

import difflib
import os
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from atm import config as atm_config
from atm.data import labelled, tasks
from atm.data.pipeline import StreamPosition, stream_fingerprint
from atm.data.sources import load_vocab
from atm.data.vocab import temperature_rates
from atm.distill import kd as kd_lib
from atm.models.heads import EncoderWithHeads
from atm.objectives import Objective, register
from atm.objectives.finetune import IGNORE, FineTune
from atm.objectives.mlm import encoder_flops_per_token

SAMPLINGS = ("proportional", "uniform", "temperature")
TASK_KINDS = ("intent_slots", "ner", "sentence", "pair", "qa")
SCHEDULE_CHUNK = 1024  # steps drawn at once by TaskSchedule


def parse_tasks(spec: str) -> list[str]:
    """"xnli_en, sst2, /data/atis" → names (registered tasks or BIO folders), in order, once each."""
    names = [t.strip() for t in str(spec).split(",") if t.strip()]
    if not names:
        raise ValueError("config.multitask.tasks is empty: list registered tasks (python -m atm.data list) or BIO "
                         "folders, e.g. 'xnli_en, sst2, massive_en_us'")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"config.multitask.tasks names {repeated} twice")
    return names


def is_bio_folder(name: str) -> bool:
    return os.sep in name or os.path.isdir(name)


def task_label(name: str) -> str:
    """An identifier for a task: its name, or a BIO folder's base name."""
    base = os.path.basename(os.path.normpath(name)) if is_bio_folder(name) else name
    return re.sub(r"\W", "_", base)


def parse_teachers(spec: str, task_names: list[str]) -> dict[str, str]:
    """"sst2=RUN1+RUN2, xnli_en=RUN4" → {"sst2": "RUN1,RUN2", "xnli_en": "RUN4"} (Teachers' spelling)."""
    out: dict[str, str] = {}
    labels = {task_label(n): n for n in task_names}
    for entry in filter(None, (e.strip() for e in str(spec).split(","))):
        task, sep, runs = entry.partition("=")
        task, runs = task.strip(), [r.strip() for r in runs.split("+") if r.strip()]
        if not sep or not runs:
            raise ValueError(f"config.multitask.teachers: {entry!r} is not TASK=RUN or TASK=RUN1+RUN2")
        name = task if task in task_names else labels.get(task)
        if name is None:
            raise ValueError(f"config.multitask.teachers: task {task!r} is not in config.multitask.tasks "
                             f"({', '.join(task_names)})")
        if name in out:
            raise ValueError(f"config.multitask.teachers names task {task!r} twice; write {task}=RUN1+RUN2")
        out[name] = ",".join(runs)
    return out


def task_config(config: ml_collections.ConfigDict, name: str, teachers: str = "") -> ml_collections.ConfigDict:
    """The fine-tuning config of one task of a multi-task run (its task or BIO folder, its teachers)."""
    c = ml_collections.ConfigDict(config.to_dict())
    folder = name if is_bio_folder(name) else ""
    c.finetune.update(task=name if not folder else "atis", bio_folder=folder, teacher=teachers)
    return c


def check_task(name: str, data_dir: str | None):
    """A registered fine-tuning task with a training split, or a BIO folder with train/: else an error
    naming config.multitask.tasks (and the nearest registered names)."""
    key = "config.multitask.tasks"
    if is_bio_folder(name):
        if not os.path.isdir(os.path.join(name, "train")):
            raise ValueError(f"{key}: the BIO folder {name!r} has no train/ split (seq.in, seq.out, label)")
        return
    if name not in tasks.TASKS:
        near = difflib.get_close_matches(name, list(tasks.TASKS), n=3)
        raise ValueError(f"{key}: task {name!r} is not registered" + (f"; did you mean {', '.join(near)}?" if near else "")
                         + " (python -m atm.data list; a BIO folder is given by its path)")
    spec = tasks.get_spec(name)
    if spec.kind not in TASK_KINDS:
        raise ValueError(f"{key}: task {name!r} is a {spec.kind!r} task; multi-task training takes {TASK_KINDS}")
    labelled_splits = [s for s in spec.splits if not s.endswith(("_unlabelled", "_no_answers"))]
    if "train" not in spec.splits and len(labelled_splits) != 1:
        raise ValueError(f"{key}: task {name!r} has no training split (its splits: {sorted(spec.splits)})")


def task_rates(sizes: list[int], sampling: str, beta: float) -> np.ndarray:
    """q_k of each task: proportional (∝ n_k), uniform, temperature (∝ n_k^β)."""
    if sampling not in SAMPLINGS:
        raise ValueError(f"config.multitask.sampling={sampling!r}: use one of {SAMPLINGS}")
    alpha = {"proportional": 1.0, "uniform": 0.0, "temperature": beta}[sampling]
    rates = temperature_rates({str(i): n for i, n in enumerate(sizes)}, alpha)
    return np.array([rates[str(i)] for i in range(len(sizes))])


class TaskSchedule:
    """The tasks of every step, (steps, k), a pure function of (seed, step): chunks of SCHEDULE_CHUNK
    steps drawn i.i.d. from `rates` by numpy's generator seeded with (seed, chunk)."""

    def __init__(self, rates: np.ndarray, tasks_per_step: int, seed: int):
        self.rates, self.k, self.seed = np.asarray(rates, np.float64), tasks_per_step, seed
        self._chunks: dict[int, np.ndarray] = {}
        self._counts: list[np.ndarray] = [np.zeros(len(rates), np.int64)]  # uses before each chunk

    def chunk(self, c: int) -> np.ndarray:
        if c not in self._chunks:
            rng = np.random.default_rng([self.seed, 0x6D74, c])
            self._chunks[c] = rng.choice(len(self.rates), size=(SCHEDULE_CHUNK, self.k), p=self.rates)
        return self._chunks[c]

    def draws(self, step: int) -> np.ndarray:
        """The k tasks of step `step`."""
        return self.chunk(step // SCHEDULE_CHUNK)[step % SCHEDULE_CHUNK]

    def uses_before(self, step: int) -> np.ndarray:
        """How many blocks each task got over steps 0..step-1."""
        c, offset = divmod(step, SCHEDULE_CHUNK)
        while len(self._counts) <= c:
            done = len(self._counts) - 1
            self._counts.append(self._counts[-1] + np.bincount(self.chunk(done).ravel(), minlength=len(self.rates)))
        within = self.chunk(c)[:offset].ravel()
        return self._counts[c] + np.bincount(within, minlength=len(self.rates))


class MultiTaskBatcher(StreamPosition):
    """Training batches: k blocks of B/k rows, block j from the j-th task of `schedule.draws(step)`,
    read from that task's own shuffled stream (`LabelledBatcher`) at the block it has reached.
    Rows carry `task_id`. Each process keeps its rows of the global batch."""

    def __init__(self, names, parts, schedule: TaskSchedule, batch_size: int, process_index=0, process_count=1):
        self.names, self.parts, self.schedule = names, parts, schedule
        self.batch_size, self.process_index, self.process_count = batch_size, process_index, process_count
        if batch_size % process_count:
            raise ValueError(f"batch size {batch_size} is not divisible by the {process_count} processes")

    def batch(self, step: int) -> dict[str, np.ndarray]:
        reached = self.schedule.uses_before(step).copy()
        blocks = []
        for task in self.schedule.draws(step):
            block = self.parts[task].batch(int(reached[task]))
            block["task_id"] = np.full(len(block["example_weight"]), task, np.int32)
            reached[task] += 1
            blocks.append(block)
        local = self.batch_size // self.process_count
        rows = slice(self.process_index * local, (self.process_index + 1) * local)
        return {k: np.concatenate([b[k] for b in blocks])[rows] for k in blocks[0]}

    def fingerprint(self) -> str:
        return stream_fingerprint([self.names, self.schedule.k, self.schedule.rates.round(12).tolist(),
                                   self.schedule.seed, self.batch_size], [])[:8] + "".join(
            p.fingerprint()[:4] for p in self.parts)


class MultiTaskEvalBatcher:
    """Each part's split in order, one task per batch: parts are (name, view index, LabelledBatcher);
    padding rows weigh 0. `part_of(i)` is the part of batch i."""

    def __init__(self, parts):
        self.parts = parts
        self.offsets = np.cumsum([0] + [p[2].num_batches for p in parts])

    @property
    def num_batches(self) -> int:
        return int(self.offsets[-1])

    def part_of(self, index: int) -> int:
        return int(np.searchsorted(self.offsets, index, side="right") - 1)

    def batch(self, index: int) -> dict[str, np.ndarray]:
        part = self.part_of(index)
        _, view, batcher = self.parts[part]
        out = batcher.batch(index - int(self.offsets[part]))
        out["task_id"] = np.full(len(out["example_weight"]), view, np.int32)
        return out


class TaskView(FineTune):
    """One task of a multi-task run: fine-tuning's data, heads, losses, teachers and metrics (not registered)."""
    teacher_key = "config.multitask.teachers"


@register
class MultiTask(Objective):
    name = "multitask"

    @staticmethod
    def default_sections():
        sections = FineTune.default_sections()  # finetune: what every task reads (holdout, QA windows, ...)
        sections["multitask"] = ml_collections.ConfigDict({
            # Registered tasks (python -m atm.data list) and/or BIO folders (paths), comma-separated.
            "tasks": "xnli_en, sst2, tydiqa_goldp_en, massive_en_us, conll2003",
            "sampling": "proportional",  # proportional | uniform | temperature (q ∝ n^beta)
            "beta": 0.5,  # sampling=temperature: the exponent β [unverified]
            "tasks_per_step": 1,  # k tasks per step, their gradients averaged (ROaD-Large: 4); divides batch_size
            # Teachers per task: "sst2=RUN1+RUN2, xnli_en=RUN4" (finished fine-tuning runs on that task's labels).
            "teachers": "",
        })
        return sections

    @staticmethod
    def value_ranges():
        return {**FineTune.value_ranges(), "multitask.beta": atm_config.NON_NEGATIVE,
                "multitask.tasks_per_step": atm_config.AT_LEAST_1}

    @staticmethod
    def check_config(config):
        """Errors naming the key, before any data is read."""
        ft, mt = config.finetune, config.multitask
        if mt.sampling not in SAMPLINGS:
            raise ValueError(f"config.multitask.sampling={mt.sampling!r}: use one of {SAMPLINGS}")
        if config.train.batch_size % mt.tasks_per_step:
            raise ValueError(f"config.train.batch_size={config.train.batch_size} is not divisible by "
                             f"config.multitask.tasks_per_step={mt.tasks_per_step}")
        if ft.teacher:
            raise ValueError("config.finetune.teacher is fine-tuning's; a multi-task run names its teachers per task "
                             "in config.multitask.teachers ('sst2=RUN1+RUN2, xnli_en=RUN4')")
        for key in ("bio_folder", "sequence_heads_only", "token_query_slots"):
            if ft[key]:
                raise ValueError(f"config.finetune.{key}={ft[key]!r} is not used by a multi-task run (list BIO "
                                 f"folders in config.multitask.tasks; every head scores every position); unset it")
        if ft.train_fraction != 1.0:
            raise ValueError("config.finetune.train_fraction: a multi-task run trains on every row of each task")
        kd_lib.check_settings(config.kd, 1)

    @classmethod
    def build_data(cls, config, workdir):
        cls.check_config(config)
        data, mt = config.data, config.multitask
        data_dir = data.data_dir or None
        names = parse_tasks(mt.tasks)
        for name in names:
            check_task(name, data_dir)
        parse_teachers(mt.teachers, names)  # a teacher for a task not in the list fails here
        configs = [task_config(config, name) for name in names]
        texts = [] if data.vocab else [t for c in configs for t in labelled.training_texts(
            c.finetune, data_dir, data.skip_malformed)]
        vocab = load_vocab(data, workdir, texts)
        k = mt.tasks_per_step

        def batcher(split, batch_size, shuffle, seed, process_index=0, process_count=1):
            return labelled.LabelledBatcher(split, data.seq_len, batch_size, seed, vocab.cls_id, vocab.sep_id,
                                            vocab.pad_id, shuffle, process_index, process_count)
        train_parts, eval_parts, stats = [], [], {}
        for i, (name, c) in enumerate(zip(names, configs)):
            train = labelled.load_split(c.finetune, "train", vocab, data_dir, data.skip_malformed, data.seq_len)
            evaluation = labelled.load_split(c.finetune, c.finetune.eval_split, vocab, data_dir,
                                             data.skip_malformed, data.seq_len)
            if evaluation.label_names != train.label_names:
                raise ValueError(f"config.multitask.tasks: {name}'s train and eval splits disagree on the label inventory")
            train_parts.append(batcher(train, config.train.batch_size // k, True, config.seed))
            eval_parts.append((task_label(name), i, batcher(evaluation, config.train.batch_size, False, 0,
                                                            jax.process_index(), jax.process_count())))
            stats[f"data_rows_{task_label(name)}"] = len(train.examples)
        rates = task_rates([len(p.split.examples) for p in train_parts], mt.sampling, mt.beta)
        schedule = TaskSchedule(rates, k, config.seed)
        train_batches = MultiTaskBatcher(names, train_parts, schedule, config.train.batch_size,
                                         jax.process_index(), jax.process_count())
        return vocab, train_batches, MultiTaskEvalBatcher(eval_parts), stats

    def __init__(self, config, vocab, train_data=None):
        super().__init__(config, vocab, train_data)
        if train_data is None:
            raise ValueError("the multitask objective needs its training data to size its heads")
        self.check_config(config)
        self.model_cfg = atm_config.model_config(config)
        self.seq_len = config.data.seq_len
        self.task_names = list(train_data.names)
        self.labels = [task_label(n) for n in self.task_names]
        teachers = parse_teachers(config.multitask.teachers, self.task_names)
        self.views = [TaskView(task_config(config, name, teachers.get(name, "")), vocab, part)
                      for name, part in zip(self.task_names, train_data.parts)]
        # Heads: one set per (kind, label set); each view maps its fine-tuning head names onto them.
        groups: dict = {}
        self.head_maps: list[dict[str, str]] = []
        heads = []
        for label, view in zip(self.labels, self.views):
            key = (view.kind, tuple(sorted((k, tuple(v)) for k, v in view.label_names.items())))
            if key not in groups:
                groups[key] = label
                heads += [(f"{label}_{name}", kind, n) for name, kind, n in view.heads]
            self.head_maps.append({name: f"{groups[key]}_{name}" for name, _, _ in view.heads})
        self.heads = tuple(heads)
        self.group_keys = list(groups)
        self.train_model = EncoderWithHeads(self.model_cfg, self.heads, deterministic=False)
        self.eval_model = EncoderWithHeads(self.model_cfg, self.heads, deterministic=True)
        self.rates = train_data.schedule.rates

    # --- parameters ---------------------------------------------------------------------------
    def example_batch(self, batch_size):
        batch = self.views[0].example_batch(batch_size)
        batch["task_id"] = jax.ShapeDtypeStruct((batch_size,), jnp.int32)
        return batch

    def init_params(self, rng, batch):
        return self.eval_model.init(rng, batch["input_ids"], batch["segment_ids"], batch["positions"])["params"]

    def frozen_params(self, mesh):
        return {label: view.frozen_params(mesh) for label, view in zip(self.labels, self.views) if view.teachers}

    def frozen_abstract(self, mesh):
        return {label: view.frozen_abstract(mesh) for label, view in zip(self.labels, self.views) if view.teachers}

    # --- the step -----------------------------------------------------------------------------
    def all_logits(self, params, batch, rng, train):
        """{group head: logits} of the shared encoder for every row."""
        model = self.train_model if train else self.eval_model
        token_types = batch["token_types"] if self.model_cfg.type_vocab_size > 1 else None
        return model.apply({"params": params}, batch["input_ids"], batch["segment_ids"], batch["positions"],
                           token_types, rngs={"dropout": rng} if train and rng is not None else {})

    def view_logits(self, i: int, logits: dict, batch: dict) -> dict:
        """Task i's heads under their fine-tuning names (span logits masked off the window, as FineTune does)."""
        mapping = self.head_maps[i]
        return self.views[i].head_logits(lambda *args: {h: logits[g] for h, g in mapping.items()}, batch,
                                         self.model_cfg)

    @staticmethod
    def rows_of(task_id: int, batch: dict) -> dict:
        """The batch with every other task's rows weighing 0 and their labels made harmless."""
        mine_B = batch["task_id"] == task_id
        out = dict(batch, example_weight=batch["example_weight"] * mine_B)
        for key in ("label", "start_position", "end_position"):
            out[key] = jnp.where(mine_B, batch[key], 0)
        out["token_labels"] = jnp.where(mine_B[:, None], batch["token_labels"], IGNORE)
        return out

    def teacher_logits(self, i: int, frozen, batch):
        """Task i's teachers' logits {head: (T, ...)}, computed only when the batch holds task i's rows."""
        view = self.views[i]
        if view.teachers is None:
            return None
        own = frozen[self.labels[i]]
        run = lambda: view.teacher_logits(own, batch)  # noqa: E731
        shapes = jax.eval_shape(run)
        return jax.lax.cond(jnp.any(batch["task_id"] == i), run,
                            lambda: jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes))

    def task_losses(self, params, frozen, batch, rng, train, with_teachers=True):
        """(loss sum, sums, {group head: logits}): each task's fine-tuning loss on its own rows."""
        logits = self.all_logits(params, batch, rng, train)
        total, sums = 0.0, {"weight": 0.0}
        kd_sum = None
        for i, label in enumerate(self.labels):
            rows = self.rows_of(i, batch)
            teachers = self.teacher_logits(i, frozen, batch) if with_teachers else None
            loss_i, sums_i = self.views[i].losses(self.view_logits(i, logits, rows), rows, teachers)
            total = total + loss_i
            sums["weight"] = sums["weight"] + sums_i["weight"]
            sums[f"loss_{label}"] = loss_i
            sums[f"rows_{label}"] = sums_i["weight"]
            if "kd_loss" in sums_i:
                kd_sum = sums_i["kd_loss"] if kd_sum is None else kd_sum + sums_i["kd_loss"]
                sums.update({f"{k}_{label}": v for k, v in sums_i.items() if k.startswith("kd_loss")})
        if kd_sum is not None:
            sums["kd_loss"] = kd_sum
        return total, sums, logits

    def loss(self, params, frozen, batch, rng, train):
        total, sums, _ = self.task_losses(params, frozen, batch, rng, train)
        return total, sums

    # --- evaluation ---------------------------------------------------------------------------
    def eval_outputs(self, params, frozen, batch, rng):
        total, sums, logits = self.task_losses(params, frozen, batch, rng, False, with_teachers=False)
        outputs = {"weight": sums["weight"], "loss": total}
        for i in range(len(self.views)):
            shown = self.view_logits(i, logits, batch)
            for name, kind, _ in self.views[i].heads:
                outputs[f"pred_{self.head_maps[i][name]}"] = shown[name] if kind == "span" else jnp.argmax(
                    shown[name], -1)
        return outputs

    def summarize(self, outputs, batches, eval_data=None):
        """Each task's fine-tuning figures (`FineTune.summarize`) prefixed by its name, and the mean loss."""
        weight = max(sum(float(o["weight"]) for o in outputs), 1.0)
        report = {"loss": sum(float(o["loss"]) for o in outputs) / weight}
        by_part: dict[int, list] = {}
        for index, (out, batch) in enumerate(zip(outputs, batches)):
            by_part.setdefault(eval_data.part_of(index), []).append((out, batch))
        for part, pairs in sorted(by_part.items()):
            name, view_index, batcher = eval_data.parts[part]
            view, mapping = self.views[view_index], self.head_maps[view_index]
            renamed = [{"weight": o["weight"], "loss": o["loss"],
                        **{f"pred_{h}": o[f"pred_{g}"] for h, g in mapping.items()}} for o, _ in pairs]
            figures = view.summarize(renamed, [b for _, b in pairs], batcher)
            report.update({f"{name}_{k}": v for k, v in figures.items()})
        return report

    def task_eval_data(self, target: str, split: str, preferred_view: int | None = None) -> MultiTaskEvalBatcher:
        """Eval batches of any task (or BIO folder) whose kind and labels match one of this run's heads."""
        c = task_config(self.config, target)
        c.finetune.eval_split = split
        data = c.data
        check_task(target, data.data_dir or None)
        evaluation = labelled.load_split(c.finetune, split, self.vocab, data.data_dir or None, data.skip_malformed,
                                         data.seq_len)
        key = (evaluation.kind, tuple(sorted((k, tuple(v)) for k, v in evaluation.label_names.items())))
        matching = [i for i, v in enumerate(self.views)
                    if (v.kind, tuple(sorted((k, tuple(x)) for k, x in v.label_names.items()))) == key]
        if not matching:
            raise ValueError(f"--task={target}: no head of this run has its kind and labels ({evaluation.kind}); "
                             f"its tasks are {', '.join(self.task_names)}")
        view = next((i for i in matching if self.task_names[i] == target), matching[0])
        batcher = labelled.LabelledBatcher(evaluation, data.seq_len, self.config.train.batch_size, 0,
                                           self.vocab.cls_id, self.vocab.sep_id, self.vocab.pad_id, False,
                                           jax.process_index(), jax.process_count())
        return MultiTaskEvalBatcher([(task_label(target), view, batcher)])

    def flops_per_token(self):
        sequence_only = all(kind == "sequence" for _, kind, _ in self.heads)
        flops = encoder_flops_per_token(self.model_cfg, self.seq_len, 0.0, 1 if sequence_only else None)
        k = self.config.multitask.tasks_per_step
        for rate, view in zip(self.rates, self.views):  # a task's teachers run on the steps that draw it
            if view.teachers is not None:
                present = 1.0 - (1.0 - rate) ** k
                flops += present * view.teachers.flops_per_token(
                    lambda cfg: encoder_flops_per_token(cfg, self.seq_len, 0.0, None) / 3)
        return flops
