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
run on the same task and labels): every head's loss becomes

    (1 − kd_alpha)·CE(gold) + kd_alpha·L_KD(teacher head logits, student head logits)

with L_KD = τ²·KL or MSE on logits (`kd_loss`): per example for sequence heads (intent, sentence,
pair), averaged over the labelled tokens for token heads (slots, NER) and over start and end (each a
distribution over the window's real positions) for QA span heads, like the CE. The paper writes
α·CE + (1−α)·L_KD: its α is 1 − kd_alpha. The teacher (its own size, the same vocabulary) runs
frozen and sharded inside the student's step, as in `atm/objectives/distill.py`.
`config.student_init` copies its weights.
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
from atm.objectives.distill import kd_per_position
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
            # Low-resource runs: keep this share of the training rows (a fixed, seeded subset; 1 = all).
            "train_fraction": 1.0,
            # A label outside the task's label inventory: "error" (naming file:line; skip_malformed skips
            # and counts such rows) or "unk" (map it to the inventory's UNK label, counted).
            "unknown_labels": "error",
            # Task-level distillation from a fine-tuned teacher run (same task and labels); "" = none.
            "teacher": "",
            "kd_alpha": 0.5,  # weight of the distillation term; 1 − kd_alpha weighs the gold labels [unverified]
            "kd_temperature": 2.0,  # τ for kd_loss=kl [unverified]
            "kd_loss": "kl",  # kl | mse (on the head logits)
            # Tasks with a single labelled split (XNLI dev here) are split by labelled.in_holdout:
            # "train" is the rest, "validation"/"test" the held-out share.
            "holdout_fraction": 0.2,
            "holdout_seed": 0,
            # Extractive QA: windows of data.seq_len tokens, doc_stride context tokens apart.
            "doc_stride": 128,
            "max_query_tokens": 64,
            "max_answer_tokens": 30,
            "squad_version": 1,  # 2: SQuAD 2.0 rules, and "no answer" may be predicted
        })}

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
                "finetune.train_fraction": atm_config.SHARE, "finetune.kd_alpha": atm_config.UNIT,
                "finetune.kd_temperature": atm_config.POSITIVE, "finetune.doc_stride": atm_config.AT_LEAST_1,
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
        self.teacher_run = self.teacher_model = None
        if config.finetune.teacher:
            self._load_teacher(config.finetune)

    def _load_teacher(self, ft):
        from atm.distill import teacher as teacher_lib

        key = "config.finetune.teacher"
        if ft.kd_loss not in ("kl", "mse"):
            raise ValueError(f"config.finetune.kd_loss={ft.kd_loss!r}: use kl or mse")
        if not 0.0 <= ft.kd_alpha <= 1.0 or ft.kd_temperature <= 0:
            raise ValueError(f"config.finetune.kd_alpha={ft.kd_alpha} must be within [0, 1] and "
                             f"config.finetune.kd_temperature={ft.kd_temperature} > 0")
        run = teacher_lib.load_run(ft.teacher, key, ("finetune",))
        teacher_lib.check_same_vocabulary(run, self.vocab, key)
        for name, _, num_classes in self.heads:
            if name not in run.params:
                raise ValueError(f"{key}={run.directory!r} has no {name!r} head (its heads: "
                                 f"{sorted(set(run.params) - {'encoder'})}); fine-tune it on this task first")
            theirs = run.params[name]["classifier"]["kernel"].shape[-1]
            if theirs != num_classes:
                raise ValueError(f"{key}: the teacher's {name!r} head has {theirs} classes but this task has "
                                 f"{num_classes}; the teacher must be fine-tuned on the same labels")
        self.teacher_run = run
        self.teacher_model = EncoderWithHeads(run.model_config(self.model_cfg.dtype), self.heads, deterministic=True)

    def frozen_params(self, mesh):
        from atm.distill import teacher as teacher_lib

        if self.teacher_model is None:
            return {}
        ids = jnp.zeros((1, self.seq_len), jnp.int32)
        frozen = teacher_lib.shard_params(self.teacher_model, self.teacher_run.params, (ids, ids, ids, ids), mesh,
                                          "config.finetune.teacher")
        self.teacher_run.params = None  # the host copy is no longer needed
        return frozen

    def example_batch(self, batch_size):
        shape = (batch_size, self.seq_len)
        names = ("input_ids", "segment_ids", "positions", "token_types", "token_labels", "word_ids")
        batch = {k: jax.ShapeDtypeStruct(shape, jnp.int32) for k in names}
        scalars = ("label", "start_position", "end_position", "example_index")
        batch.update({k: jax.ShapeDtypeStruct((batch_size,), jnp.int32) for k in scalars})
        batch["example_weight"] = jax.ShapeDtypeStruct((batch_size,), jnp.float32)
        return batch

    def _logits(self, params, batch, rng, train):
        return self._apply(self.train_model if train else self.eval_model, params, batch, rng)

    def _teacher_logits(self, frozen, batch):
        return None if self.teacher_model is None else self._apply(self.teacher_model, frozen, batch)

    def _apply(self, model, params, batch, rng=None):
        """{head: logits} of `model` (the student's or the teacher's)."""
        token_types = batch["token_types"] if model.cfg.type_vocab_size > 1 else None
        token_queries = (token_query_positions(batch["word_ids"], self.token_query_slots)
                         if self.token_query_slots else None)
        logits = model.apply({"params": params}, batch["input_ids"], batch["segment_ids"], batch["positions"],
                             token_types, token_queries, rngs={"dropout": rng} if rng is not None else {})
        for name, kind, _ in self.heads:
            if kind == "span":  # padding is never an answer boundary
                logits[name] = jnp.where((batch["segment_ids"] > 0)[..., None], logits[name], -1e4)
        return logits

    def init_params(self, rng, batch):
        return self.eval_model.init(rng, batch["input_ids"], batch["segment_ids"], batch["positions"])["params"]

    def loss(self, params, frozen, batch, rng, train):
        return self._loss_from_logits(self._logits(params, batch, rng, train), batch,
                                      self._teacher_logits(frozen, batch))

    def _loss_from_logits(self, logits, batch, teacher_logits=None):
        """Summed loss over the batch: per head CE, or (1 − kd_alpha)·CE + kd_alpha·KD with a teacher."""
        ft = self.config.finetune
        w = batch["example_weight"]
        per_example, kd_per_example = jnp.zeros_like(w), jnp.zeros_like(w)
        sums = {"weight": w.sum()}

        def kd(student, teacher, present=None):
            return kd_per_position(student, teacher, ft.kd_loss, ft.kd_temperature, present)
        for name, kind, _ in self.heads:
            teacher = None if teacher_logits is None else teacher_logits[name]
            head_weight, kd_loss = 1.0, None
            if kind == "sequence":
                gold = cross_entropy(logits[name], batch["label"])
                if teacher is not None:
                    kd_loss = kd(logits[name], teacher)
                correct = (jnp.argmax(logits[name], -1) == batch["label"]).astype(jnp.float32)
                sums["accuracy"] = (correct * w).sum()
            elif kind == "span":  # start and end: distributions over the window's positions
                start_BxL, end_BxL = logits[name][..., 0], logits[name][..., 1]
                gold = 0.5 * (cross_entropy(start_BxL, batch["start_position"])
                              + cross_entropy(end_BxL, batch["end_position"]))
                if teacher is not None:
                    real_BxL = batch["segment_ids"] > 0
                    kd_loss = 0.5 * (kd(start_BxL, teacher[..., 0], real_BxL) + kd(end_BxL, teacher[..., 1], real_BxL))
            else:
                valid = batch["token_labels"] != IGNORE
                gold = _token_mean(cross_entropy(logits[name], jnp.where(valid, batch["token_labels"], 0)), valid)
                if teacher is not None:
                    kd_loss = _token_mean(kd(logits[name], teacher), valid)
                head_weight = ft.token_loss_weight
            if kd_loss is None:
                per_example = per_example + head_weight * gold
            else:
                per_example = per_example + head_weight * ((1.0 - ft.kd_alpha) * gold + ft.kd_alpha * kd_loss)
                kd_per_example = kd_per_example + head_weight * kd_loss
        if teacher_logits is not None:
            sums["kd_loss"] = (kd_per_example * w).sum()
        return (per_example * w).sum(), sums

    def eval_outputs(self, params, frozen, batch, rng):
        logits = self._logits(params, batch, rng, False)
        loss_sum, sums = self._loss_from_logits(logits, batch, self._teacher_logits(frozen, batch))
        # Span heads keep their logits: answers are read back over all windows of a question.
        outputs = {f"pred_{name}": logits[name] if kind == "span" else jnp.argmax(logits[name], -1)
                   for name, kind, _ in self.heads}
        return {**sums, "loss": loss_sum, **outputs}

    def summarize(self, outputs, batches, eval_data=None):
        """Metrics over the whole eval pass; word tags are read off each word's first subword."""
        weight = max(sum(float(o["weight"]) for o in outputs), 1.0)
        report = {"loss": sum(float(o["loss"]) for o in outputs) / weight}
        if "kd_loss" in outputs[0]:
            report["kd_loss"] = sum(float(o["kd_loss"]) for o in outputs) / weight
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
        if self.teacher_model is None:
            return student
        return student + encoder_flops_per_token(self.teacher_model.cfg, self.seq_len, 0.0, queries) / 3  # forward only
