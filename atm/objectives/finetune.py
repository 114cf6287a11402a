"""Fine-tuning with task heads: joint intent + slots, sequence / pair classification, token classification.

    L = CE(intent | h_[CLS]) + mean over labelled tokens of CE(slot)     (intent_slots)
    L = CE(label | h_[CLS])                                               (sentence, pair)
    L = mean over labelled tokens of CE(tag)                              (ner)
    L = (CE(start) + CE(end)) / 2 over the window's positions              (qa)

Token losses are averaged per example, then examples are averaged over the batch. Evaluation
decodes each word's tag from its first subword and reports the field's metrics
(`atm/nlu_metrics.py`): intent accuracy, slot/NER span F1 (seqeval-equal), frame exact match,
SemER, sequence accuracy; for QA the answer text read back from every window of a question
(`atm.data.qa.best_answer`) scored with the official SQuAD EM/F1. `config.init_from = RUN_DIR`
starts the encoder from a pretrained run.

Task-level distillation (The Privileged Students; `config.finetune.teacher = RUN_DIR`, a fine-tuned
run on the same task and labels; several: `RUN1,RUN2`, combined per `config.kd.combine`): every
head's loss becomes

    (1 − kd.alpha)·CE(gold) + kd.alpha·L_KD(teacher head logits, student head logits)

with L_KD = τ²·KL or MSE on logits (`kd.loss`, `atm/distill/kd.py`): per example for sequence heads
(intent, sentence, pair), averaged over the labelled tokens for token heads (slots, NER) and over
start and end (each a distribution over the window's real positions) for QA span heads, like the CE.
The paper writes α·CE + (1−α)·L_KD: its α is 1 − kd.alpha. The teachers (their own sizes, the same
vocabulary) run frozen and sharded inside the student's step (`atm.distill.teacher.Teachers`).
`config.student_init` copies a teacher's weights. `head_losses` is the per-head loss as a function,
for any objective that trains these heads (multi-task steps call it per task).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from atm import config as atm_config
from atm import nlu_metrics
from atm.data import labelled, qa
from atm.data.sources import load_vocab
from atm.models.heads import EncoderWithHeads, token_query_positions
from atm.objectives import Objective, register
from atm.distill import kd as kd_lib
from atm.distill import teacher as teacher_lib
from atm.objectives.mlm import cross_entropy, encoder_flops_per_token

IGNORE = labelled.IGNORE


def heads_for(kind: str, label_names: dict) -> tuple[tuple[str, str, int], ...]:
    if kind == "intent_slots":
        return (("intent", "sequence", len(label_names["intent"])), ("slots", "token", len(label_names["slot"])))
    if kind == "ner":
        return (("tags", "token", len(label_names["tag"])),)
    if kind == "qa":
        return (("answer", "span", 2),)
    return (("label", "sequence", len(label_names["label"])),)


def _token_mean(per_token_BxL, valid_BxL):
    """Per-example mean over the labelled tokens."""
    return (per_token_BxL * valid_BxL).sum(-1) / jnp.maximum(valid_BxL.sum(-1), 1)


def gold_loss_per_example(kind: str, logits, batch):
    """CE against the gold labels, per example: sequence heads on [CLS], token heads averaged over the
    labelled tokens, span heads over start and end (each a distribution over the window's positions)."""
    if kind == "sequence":
        return cross_entropy(logits, batch["label"])
    if kind == "span":
        return 0.5 * (cross_entropy(logits[..., 0], batch["start_position"])
                      + cross_entropy(logits[..., 1], batch["end_position"]))
    valid = batch["token_labels"] != IGNORE
    return _token_mean(cross_entropy(logits, jnp.where(valid, batch["token_labels"], 0)), valid)


def kd_loss_per_example(kind: str, logits, teachers_T, batch, kd):
    """KD against the teachers' logits (stacked on a leading axis), per example, shaped like the CE."""
    def kd_of(student, teachers, gold, present=None):  # gold: for kd.combine=weighted | confidence
        return kd_lib.multi_teacher_kd(student, teachers, kd.loss, kd.temperature, kd.combine, present, gold,
                                       kd.wrong_weight)
    if kind == "sequence":
        return kd_of(logits, teachers_T, batch["label"])
    if kind == "span":  # the teachers' distributions cover the window's real positions only; start, end apart
        real_BxL = batch["segment_ids"] > 0
        return 0.5 * (kd_of(logits[..., 0], teachers_T[..., 0], batch["start_position"], real_BxL)
                      + kd_of(logits[..., 1], teachers_T[..., 1], batch["end_position"], real_BxL))
    return _token_mean(kd_of(logits, teachers_T, batch["token_labels"]), batch["token_labels"] != IGNORE)


def head_losses(heads, logits: dict, batch: dict, token_loss_weight: float = 1.0, kd=None,
                teacher_logits: dict | None = None, teacher_names=()) -> tuple[jax.Array, dict]:
    """(summed loss, sums) over the batch for `heads` [(name, kind, classes)]: per head CE, or with
    teachers (1 − kd.alpha)·CE + kd.alpha·KD; token heads weigh `token_loss_weight`. Several teachers
    also log each one's own KD as kd_loss_{name}."""
    w = batch["example_weight"]
    per_example, kd_total = jnp.zeros_like(w), jnp.zeros_like(w)
    per_teacher = {name: jnp.zeros_like(w) for name in teacher_names}
    sums = {"weight": w.sum()}
    for name, kind, _ in heads:
        head_weight = token_loss_weight if kind == "token" else 1.0
        gold = gold_loss_per_example(kind, logits[name], batch)
        if kind == "sequence":
            correct = (jnp.argmax(logits[name], -1) == batch["label"]).astype(jnp.float32)
            sums["accuracy"] = (correct * w).sum()
        if teacher_logits is None:
            per_example = per_example + head_weight * gold
            continue
        teachers_T = teacher_logits[name]
        kd_loss = kd_loss_per_example(kind, logits[name], teachers_T, batch, kd)
        per_example = per_example + head_weight * ((1.0 - kd.alpha) * gold + kd.alpha * kd_loss)
        kd_total = kd_total + head_weight * kd_loss
        if teachers_T.shape[0] > 1:
            for t, teacher in enumerate(teacher_names):
                own = kd_loss_per_example(kind, logits[name], teachers_T[t:t + 1], batch, kd)
                per_teacher[teacher] = per_teacher[teacher] + head_weight * own
    if teacher_logits is not None:
        sums["kd_loss"] = (kd_total * w).sum()
        if len(teacher_names) > 1:
            sums.update({f"kd_loss_{name}": (v * w).sum() for name, v in per_teacher.items()})
    return (per_example * w).sum(), sums


@register
class FineTune(Objective):
    name = "finetune"

    @staticmethod
    def default_sections():
        return {"finetune": ml_collections.ConfigDict({
            "task": "atis",  # a registered intent_slots / ner / sentence / pair task (python -m atm.data list)
            "bio_folder": "",  # intent + slots from any folder in the ATIS/SNIPS BIO layout (overrides task)
            "eval_split": "validation",
            "token_loss_weight": 1.0,  # weight of the slot/tag loss next to the sequence loss
            # Keep only the [CLS] heads (MASSIVE intents alone): NarrowBERT then runs on S = [CLS] only.
            "sequence_heads_only": False,
            # > 0: token heads (slots, NER) score only [CLS] + each word's first subword, padded to this
            # many positions: NarrowBERT's query set for token tasks. 0: every position. A row with
            # more words than token_query_slots - 1 is an error naming the value it needs.
            "token_query_slots": 0,
            # Train on part of the label space (teachers for amalgamation, configs/muka/teacher.py): keep only
            # the rows whose sequence label (intent / label) is in the subset; the head covers the subset.
            # "scenario:alarm,calendar" (MASSIVE scenarios), "part:k/n" (k-th of n contiguous parts of the
            # sorted labels) or an explicit "label1,label2"; "" = every label.
            "label_subset": "",
            # Low-resource runs: keep this share of the training rows (a fixed, seeded subset; 1 = all).
            "train_fraction": 1.0,
            # A label outside the task's label inventory: "error" (naming file:line; skip_malformed skips
            # and counts such rows) or "unk" (map it to the inventory's UNK label, counted).
            "unknown_labels": "error",
            # Task-level distillation from fine-tuned teacher run(s) (same task and labels; RUN, RUN1,RUN2 or
            # a=RUN1,b=RUN2); "" = none. The KD settings are config.kd.
            "teacher": "",
            # Tasks with a single labelled split (XNLI dev here) are split by labelled.in_holdout:
            # "train" is the rest, "validation"/"test" the held-out share.
            "holdout_fraction": 0.2,
            "holdout_seed": 0,
            # Extractive QA: windows of data.seq_len tokens, doc_stride context tokens apart.
            "doc_stride": 128,
            "max_query_tokens": 64,
            "max_answer_tokens": 30,
            "squad_version": 1,  # 2: SQuAD 2.0 rules, and "no answer" may be predicted
        }), "kd": kd_lib.kd_section()}

    @classmethod
    def build_data(cls, config, workdir):
        ft, data = config.finetune, config.data
        data_dir = data.data_dir or None
        if ft.unknown_labels not in labelled.UNKNOWN_LABEL_POLICIES:
            raise ValueError(f"config.finetune.unknown_labels={ft.unknown_labels!r}: use one of "
                             f"{labelled.UNKNOWN_LABEL_POLICIES}")
        # The vocabulary must exist before tokenizing: a given one, or one trained on the train text.
        texts = [] if data.vocab else labelled.training_texts(ft, data_dir, data.skip_malformed)
        vocab = load_vocab(data, workdir, texts)
        if ft.squad_version not in (1, 2):
            raise ValueError(f"config.finetune.squad_version={ft.squad_version!r} must be 1 or 2")
        train = labelled.load_split(ft, "train", vocab, data_dir, data.skip_malformed, data.seq_len)
        if not 0.0 < ft.train_fraction <= 1.0:
            raise ValueError(f"config.finetune.train_fraction={ft.train_fraction} must be in (0, 1]")
        if ft.train_fraction < 1.0:  # the same blake2b rule as the holdout, with its own seed
            train.examples = [ex for i, ex in enumerate(train.examples)
                              if labelled.in_holdout(i, ft.train_fraction, f"train_fraction:{ft.holdout_seed}")]
        evaluation = labelled.load_split(ft, ft.eval_split, vocab, data_dir, data.skip_malformed, data.seq_len)
        if evaluation.label_names != train.label_names:
            raise ValueError("config.finetune: train and eval splits disagree on the label inventory")

        def batcher(split, shuffle, seed):
            return labelled.LabelledBatcher(split, data.seq_len, config.train.batch_size, seed, vocab.cls_id,
                                            vocab.sep_id, vocab.pad_id, shuffle, jax.process_index(),
                                            jax.process_count())
        stats = {"data_rows": len(train.examples), "data_eval_rows": len(evaluation.examples)}
        train_batches, eval_batches = batcher(train, True, config.seed), batcher(evaluation, False, 0)
        if ft.token_query_slots:
            for split_name, batches in (("train", train_batches), (ft.eval_split, eval_batches)):
                batches.check_token_query_slots(ft.token_query_slots, f"split {split_name!r}")
        return vocab, train_batches, eval_batches, stats

    @staticmethod
    def value_ranges():
        return {"finetune.token_loss_weight": atm_config.NON_NEGATIVE, "finetune.token_query_slots": atm_config.NON_NEGATIVE,
                "finetune.train_fraction": atm_config.SHARE, "kd.alpha": atm_config.UNIT,
                "kd.wrong_weight": atm_config.UNIT,
                "kd.temperature": atm_config.POSITIVE, "finetune.doc_stride": atm_config.AT_LEAST_1,
                "finetune.max_query_tokens": atm_config.AT_LEAST_1, "finetune.max_answer_tokens": atm_config.AT_LEAST_1,
                "finetune.holdout_fraction": ("in (0, 1)", lambda v: 0 < v < 1),
                "finetune.holdout_seed": atm_config.NON_NEGATIVE,
                "finetune.squad_version": ("1 or 2", lambda v: v in (1, 2))}

    def __init__(self, config, vocab, train_data=None):
        super().__init__(config, vocab, train_data)
        if train_data is None:
            raise ValueError("the finetune objective needs its training data to size its heads")
        self.model_cfg = atm_config.model_config(config)
        self.seq_len = config.data.seq_len
        self.kind = train_data.split.kind
        self.label_names = train_data.split.label_names
        self.heads = heads_for(self.kind, self.label_names)
        if config.finetune.sequence_heads_only:
            self.heads = tuple(head for head in self.heads if head[1] == "sequence")
            if not self.heads:
                raise ValueError(f"config.finetune.sequence_heads_only=True, but task {config.finetune.task!r} "
                                 f"({self.kind}) has no sequence head")
        self.token_query_slots = config.finetune.token_query_slots
        if self.token_query_slots and any(kind == "span" for _, kind, _ in self.heads):
            raise ValueError(f"config.finetune.token_query_slots={self.token_query_slots}: task "
                             f"{config.finetune.task!r} is extractive QA, whose span head scores every position; "
                             "set it to 0")
        if self.token_query_slots and not any(kind == "token" for _, kind, _ in self.heads):
            self.token_query_slots = 0  # e.g. sequence_heads_only: S = [CLS] already
        self.train_model = EncoderWithHeads(self.model_cfg, self.heads, deterministic=False)
        self.eval_model = EncoderWithHeads(self.model_cfg, self.heads, deterministic=True)
        self.teachers = self._load_teachers(config) if config.finetune.teacher else None

    teacher_key = "config.finetune.teacher"  # the key errors about the teachers name (multi-task: its own)

    def _load_teachers(self, config) -> teacher_lib.Teachers:
        key = self.teacher_key
        ids = jnp.zeros((1, self.seq_len), jnp.int32)
        teachers = teacher_lib.Teachers(
            config.finetune.teacher, key, ("finetune",), self.model_cfg.dtype,
            lambda cfg, deterministic: EncoderWithHeads(cfg, self.heads, deterministic=deterministic),
            (ids, ids, ids, ids))
        kd_lib.check_settings(config.kd, len(teachers))
        teachers.check_vocabulary(self.vocab)
        for teacher, run in teachers.runs.items():
            shapes = run.param_shapes()  # from the checkpoint's metadata: no weight is read here
            for name, _, num_classes in self.heads:
                kernel = shapes.get(f"{name}.classifier.kernel")
                if kernel is None:
                    heads = sorted({k.split(".")[0] for k in shapes} - {"encoder"})
                    raise ValueError(f"{key}={run.directory!r} has no {name!r} head (its heads: {heads}); "
                                     f"fine-tune it on this task first")
                if kernel[-1] != num_classes:
                    raise ValueError(f"{key}: the teacher {teacher}'s {name!r} head has {kernel[-1]} classes but "
                                     f"this task has {num_classes}; the teacher must be fine-tuned on the same labels")
            theirs = labelled.label_names(run.config.finetune, config.data.data_dir or None, True)
            if theirs != self.label_names:
                differ = sorted(k for k in set(theirs) | set(self.label_names)
                                if theirs.get(k) != self.label_names.get(k))
                raise ValueError(f"{key}: the teacher {teacher} ({run.directory}) was fine-tuned on "
                                 f"{labelled.task_description(run.config.finetune)}, whose {differ} labels differ from "
                                 f"those of {labelled.task_description(config.finetune)}; a teacher must be fine-tuned "
                                 f"on the same label set")
        return teachers

    def frozen_params(self, mesh):
        return {} if self.teachers is None else self.teachers.shard(mesh)

    def frozen_abstract(self, mesh):
        return {} if self.teachers is None else self.teachers.abstract(mesh)

    def example_batch(self, batch_size):
        shape = (batch_size, self.seq_len)
        names = ("input_ids", "segment_ids", "positions", "token_types", "token_labels", "word_ids")
        batch = {k: jax.ShapeDtypeStruct(shape, jnp.int32) for k in names}
        scalars = ("label", "start_position", "end_position", "example_index")
        batch.update({k: jax.ShapeDtypeStruct((batch_size,), jnp.int32) for k in scalars})
        batch["example_weight"] = jax.ShapeDtypeStruct((batch_size,), jnp.float32)
        return batch

    def head_logits(self, apply, batch, cfg):
        """{head: logits} of `apply(*args)`, the student's or a teacher's `model.apply` with its params
        bound; `cfg` is that model's EncoderConfig."""
        token_types = batch["token_types"] if cfg.type_vocab_size > 1 else None
        token_queries = (token_query_positions(batch["word_ids"], self.token_query_slots)
                         if self.token_query_slots else None)
        logits = apply(batch["input_ids"], batch["segment_ids"], batch["positions"], token_types, token_queries)
        for name, kind, _ in self.heads:
            if kind == "span":  # padding is never an answer boundary
                logits[name] = jnp.where((batch["segment_ids"] > 0)[..., None], logits[name], -1e4)
        return logits

    def student_logits(self, params, batch, rng, train):
        model = self.train_model if train else self.eval_model
        return self.head_logits(lambda *args: model.apply(
            {"params": params}, *args, rngs={"dropout": rng} if rng is not None else {}), batch, self.model_cfg)

    def teacher_logits(self, frozen, batch):
        """{head: the teachers' logits stacked on a leading axis}, or None without teachers."""
        if self.teachers is None:
            return None
        each = [self.head_logits(lambda *args, n=name: self.teachers.apply(frozen, n, *args), batch, cfg)
                for name, cfg in self.teachers.configs.items()]
        return {head: jnp.stack([logits[head] for logits in each]) for head in each[0]}

    def init_params(self, rng, batch):
        return self.eval_model.init(rng, batch["input_ids"], batch["segment_ids"], batch["positions"])["params"]

    def loss(self, params, frozen, batch, rng, train):
        return self.losses(self.student_logits(params, batch, rng, train), batch, self.teacher_logits(frozen, batch))

    def losses(self, logits, batch, teacher_logits=None):
        return head_losses(self.heads, logits, batch, self.config.finetune.token_loss_weight, self.config.kd,
                           teacher_logits, self.teachers.names if self.teachers is not None else ())

    def eval_outputs(self, params, frozen, batch, rng):
        logits = self.student_logits(params, batch, rng, False)
        loss_sum, sums = self.losses(logits, batch, self.teacher_logits(frozen, batch))
        # Span heads keep their logits: answers are read back over all windows of a question.
        outputs = {f"pred_{name}": logits[name] if kind == "span" else jnp.argmax(logits[name], -1)
                   for name, kind, _ in self.heads}
        return {**sums, "loss": loss_sum, **outputs}

    def summarize(self, outputs, batches, eval_data=None):
        """Metrics over the whole eval pass; word tags are read off each word's first subword."""
        weight = max(sum(float(o["weight"]) for o in outputs), 1.0)
        report = {"loss": sum(float(o["loss"]) for o in outputs) / weight}
        for key in (k for k in outputs[0] if k.startswith("kd_loss")):  # kd_loss, and kd_loss_{teacher}
            report[key] = sum(float(o[key]) for o in outputs) / weight
        if self.kind == "qa":
            return {**report, **self._squad_metrics(outputs, batches, eval_data)}
        sequence_head = next((f"pred_{n}" for n, kind, _ in self.heads if kind == "sequence"), None)
        token_head = next((n for n, kind, _ in self.heads if kind == "token"), None)
        tag_names = self.label_names.get("slot") or self.label_names.get("tag")
        gold_labels, pred_labels, gold_tags, pred_tags = [], [], [], []
        for out, batch in zip(outputs, batches):
            for row in np.flatnonzero(batch["example_weight"] > 0):
                if sequence_head:
                    gold_labels.append(int(batch["label"][row]))
                    pred_labels.append(int(out[sequence_head][row]))
                if token_head:
                    word_ids = batch["word_ids"][row]
                    num_words = int(word_ids.max()) + 1
                    gold = np.where(batch["token_labels"][row] == IGNORE, 0, batch["token_labels"][row])
                    gold_tags.append(labelled.word_tags_from_tokens(gold, word_ids, num_words, tag_names))
                    pred_tags.append(labelled.word_tags_from_tokens(out[f"pred_{token_head}"][row], word_ids,
                                                                     num_words, tag_names))
        if gold_labels and gold_tags:  # intent + slots: the ATM paper's table
            joint = nlu_metrics.joint_nlu_metrics(gold_labels, pred_labels, gold_tags, pred_tags)
            report.update(accuracy=joint["intent_acc"], slot_f1=joint["slot_f1"],
                          frame_exact_match=joint["frame_exact_match"], semer=joint["semer"])
        elif gold_labels:
            report["accuracy"] = nlu_metrics.intent_accuracy(gold_labels, pred_labels)
        elif gold_tags:
            report["span_f1"] = nlu_metrics.span_f1(gold_tags, pred_tags)["f1"]
        return report

    def _squad_metrics(self, outputs, batches, eval_data):
        """Official SQuAD EM/F1 (as fractions) of the answers read back from every window's logits."""
        if eval_data is None:
            raise ValueError("QA evaluation needs the eval split (its questions and contexts)")
        split, ft = eval_data.split, self.config.finetune
        by_question: dict[int, list] = {}
        for out, batch in zip(outputs, batches):
            for row in np.flatnonzero(batch["example_weight"] > 0):
                window = split.examples[int(batch["example_index"][row])]
                logits_Lx2 = out["pred_answer"][row]
                by_question.setdefault(window["question_index"], []).append((window, logits_Lx2))
        predictions, golds = [], []
        for index, parts in sorted(by_question.items()):
            question = split.questions[index]
            windows = [w for w, _ in parts]
            predictions.append(qa.best_answer(question, windows, [x[:, 0] for _, x in parts],
                                              [x[:, 1] for _, x in parts], ft.max_answer_tokens,
                                              allow_no_answer=ft.squad_version == 2))
            golds.append(question.answers)
        scores = nlu_metrics.squad_scores(predictions, golds, version=ft.squad_version)
        return {"exact_match": scores["exact"] / 100, "f1": scores["f1"] / 100}

    def flops_per_token(self):
        sequence_only = all(kind == "sequence" for _, kind, _ in self.heads)  # S = [CLS] (heads.query_positions)
        queries = 1 if sequence_only else (self.token_query_slots or None)
        student = encoder_flops_per_token(self.model_cfg, self.seq_len, 0.0, queries)
        if self.teachers is None:
            return student
        return student + self.teachers.flops_per_token(  # forward only
            lambda cfg: encoder_flops_per_token(cfg, self.seq_len, 0.0, queries) / 3)
