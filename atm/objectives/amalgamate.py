"""MUKA: amalgamate teachers that know different label sets into one student, without labels
(PAPERS.md seed 3, later MUKI, arXiv 2210.05230; its public code is the reference for details).

Teachers j = 1..T are fine-tuned runs on disjoint label sets C_j (`finetune.label_subset`,
configs/muka/teacher.py), of any size, arrangement, vocabulary and data set. The student's head covers
the union C = C_1 ‖ … ‖ C_T (teacher order), and it trains on the text of the teachers' training sets
(their union when they come from different data sets), never on a gold label:

    p̄_j(x)  = mean over K passes with dropout ON of σ(T_j(x))        Monte-Carlo dropout, K = mc_passes
    s_j(x)  = 1 − H(p̄_j)/log|C_j|                                    1: certain, 0: uniform
    P_j(x)  = σ(z_j/τ) zero-padded into C at C_j's columns            z_j: teacher j, dropout off
    q(x)    = P_{argmax_j s_j}                                         target=hard
            = Σ_j softmax(s/τ_s)_j · P_j                               target=soft (τ_s = score_temperature)
    m(x)    = |s_(1) − s_(2)| + 1e-6   (margin=True; 1 otherwise, and with one teacher)
    L       = mean_x m(x)·τ²·KL(q ‖ σ(z_S/τ))                          xlogy: zero targets give 0, never NaN

Baselines in the same objective (`amalgamate.method`):
    vanilla_kd: L = mean_x τ²·KL(σ([z_1 ‖ … ‖ z_T]/τ) ‖ σ(z_S/τ))     (the concatenated logits)
    uhc:        L = mean_x Σ_j τ²·KL(σ(z_j/τ) ‖ σ(z_S[C_j]/τ))          (the student renormalised on C_j)

Each teacher reads the row's raw text with its own tokenizer: the batch carries `teacher{j}_input_ids`
and `teacher{j}_segment_ids` besides the student's ids. Monte-Carlo masks are a pure function of
(config.seed, teacher, row, pass): row i's key is fold_in(fold_in(key(seed) ⊕ SALT, j), i), pass k's
fold_in(that, k); so the scores of a row do not depend on the batch it is in, and
`amalgamate.scores=cached` (computed once over the training rows, `python -m atm.amalgamate.score`
or an automatic first pass, stored with the stream's signature) equals `online` (inside the step).
Unlike the MUKI reference code, whose passes never switch dropout on, the K passes here run with
each teacher's own dropout rates (a teacher trained with dropout 0 gives K equal passes).
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from atm import config as atm_config
from atm.data import labelled, readers
from atm.data.pipeline import StreamPosition, stream_fingerprint
from atm.data.sources import load_vocab
from atm.data.vocab import load_vocabulary
from atm.distill import kd as kd_lib
from atm.distill import teacher as teacher_lib
from atm.models.heads import EncoderWithHeads
from atm.objectives import Objective, register
from atm.objectives.finetune import FineTune
from atm.objectives.mlm import cross_entropy, encoder_flops_per_token

KEY = "config.amalgamate.teachers"
METHODS = ("muka", "vanilla_kd", "uhc")
TARGETS = ("hard", "soft")
SCORE_MODES = ("online", "cached")
SCORE_SALT = 0x6D756B61  # "muka": Monte-Carlo keys never collide with the training step's
MARGIN_EPS = 1e-6
SCORES_FILE = "amalgamate_scores.npz"
# Kinds whose sequence label a teacher predicts, and that head's name in its checkpoint.
TEACHER_HEAD = {"intent_slots": "intent", "sentence": "label"}


# ---------------------------------------------------------------------------------------- the maths
def confidence_score(mean_probs_xC: jax.Array) -> jax.Array:
    """s = 1 − H(p̄)/log|C| over the last axis: 1 for a one-hot p̄, 0 for a uniform one (1 when |C| = 1)."""
    p = mean_probs_xC.astype(jnp.float32)
    n = p.shape[-1]
    entropy = -jnp.sum(jax.scipy.special.xlogy(p, p), axis=-1)
    return 1.0 - entropy / np.log(n) if n > 1 else jnp.ones(p.shape[:-1], jnp.float32)


def zero_pad(probs_per_teacher: list[jax.Array], num_union: int) -> jax.Array:
    """(T, B, U): teacher j's (B, |C_j|) distribution at its columns of the union (teacher order), 0 elsewhere."""
    out, offset = [], 0
    for p in probs_per_teacher:
        n = p.shape[-1]
        out.append(jnp.pad(p.astype(jnp.float32), ((0, 0), (offset, num_union - offset - n))))
        offset += n
    return jnp.stack(out)


def amalgamated_target(padded_TxBxU: jax.Array, scores_TxB: jax.Array, target: str,
                       score_temperature: float) -> jax.Array:
    """q (B, U): the best-scored teacher's padded distribution (hard) or their softmax(s/τ_s) mixture (soft)."""
    if target == "hard":
        best_B = jnp.argmax(scores_TxB, axis=0)
        return jnp.take_along_axis(padded_TxBxU, best_B[None, :, None], axis=0)[0]
    if target == "soft":
        weights_TxB = jax.nn.softmax(scores_TxB.astype(jnp.float32) / score_temperature, axis=0)
        return jnp.sum(weights_TxB[..., None] * padded_TxBxU, axis=0)
    raise ValueError(f"config.amalgamate.target={target!r}: use one of {TARGETS}")


def score_margin(scores_TxB: jax.Array) -> jax.Array:
    """m = |s_(1) − s_(2)| + 1e-6 (the two highest scores); 1 with a single teacher."""
    if scores_TxB.shape[0] < 2:
        return jnp.ones(scores_TxB.shape[1:], jnp.float32)
    top2_Bx2 = jax.lax.top_k(jnp.moveaxis(scores_TxB.astype(jnp.float32), 0, -1), 2)[0]
    return jnp.abs(top2_Bx2[..., 0] - top2_Bx2[..., 1]) + MARGIN_EPS


def vanilla_kd_loss(student_BxU, teacher_logits: list[jax.Array], temperature: float) -> jax.Array:
    """τ²·KL(σ([z_1 ‖ … ‖ z_T]/τ) ‖ σ(z_S/τ)) per row."""
    concatenated = jnp.concatenate([z.astype(jnp.float32) for z in teacher_logits], axis=-1)
    return kd_lib.kl_to_student(jax.nn.softmax(concatenated / temperature, -1), student_BxU, temperature)


def uhc_loss(student_BxU, teacher_logits: list[jax.Array], temperature: float) -> jax.Array:
    """Σ_j τ²·KL(σ(z_j/τ) ‖ σ(z_S restricted to C_j /τ)) per row."""
    total, offset = 0.0, 0
    for z in teacher_logits:
        n = z.shape[-1]
        total = total + kd_lib.kd_per_position(student_BxU[..., offset:offset + n], z, "kl", temperature)
        offset += n
    return total


def muka_loss(student_BxU, teacher_logits: list[jax.Array], scores_TxB, target: str, margin: bool,
              temperature: float, score_temperature: float) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(m(x)·τ²·KL(q ‖ σ(z_S/τ)), m(x), τ²·KL(q ‖ σ(z_S/τ))) per row."""
    probs = [kd_lib.teacher_distribution(z, temperature) for z in teacher_logits]
    q_BxU = amalgamated_target(zero_pad(probs, student_BxU.shape[-1]), scores_TxB, target, score_temperature)
    m_B = score_margin(scores_TxB) if margin else jnp.ones(scores_TxB.shape[1:], jnp.float32)
    kd_B = kd_lib.kl_to_student(q_BxU, student_BxU, temperature)
    return m_B * kd_B, m_B, kd_B


def row_keys(seed: int, teacher_index: int, example_index_B: jax.Array) -> jax.Array:
    """Each row's Monte-Carlo key for one teacher (see the module docstring)."""
    base = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), SCORE_SALT), teacher_index)
    return jax.vmap(lambda i: jax.random.fold_in(base, i))(example_index_B)


def mc_mean_probs(apply_with_dropout, ids_BxL, segment_ids_BxL, keys_B, passes: int) -> jax.Array:
    """p̄ (B, C): the mean softmax of `passes` forwards with dropout on, each row with its own masks
    (`apply_with_dropout(ids_1xL, segment_ids_1xL, rng) -> logits (1, C)`)."""
    def row(ids_L, segment_ids_L, key):
        def one(k):
            logits = apply_with_dropout(ids_L[None], segment_ids_L[None], jax.random.fold_in(key, k))[0]
            return jax.nn.softmax(logits.astype(jnp.float32), -1)
        return jax.lax.map(one, jnp.arange(passes)).mean(0)
    return jax.vmap(row)(ids_BxL, segment_ids_BxL, keys_B)


# ---------------------------------------------------------------------------------------- the data
def layout(ids: list[int], seq_len: int, vocab) -> tuple[np.ndarray, np.ndarray]:
    """[CLS] ids [SEP] padded to seq_len (truncated, keeping [SEP]), and its segment ids."""
    ids = [vocab.cls_id] + list(ids)[:seq_len - 2] + [vocab.sep_id]
    out = np.full(seq_len, vocab.pad_id, np.int32)
    out[:len(ids)] = ids
    segment = np.zeros(seq_len, np.int32)
    segment[:len(ids)] = 1
    return out, segment


def row_tokens(raw: dict, vocab) -> list[int]:
    """A row's tokens as fine-tuning made them for its kind (`atm.data.tasks.tokenize_example`): word by
    word for intent tasks (each word's pieces), the whole text for sentence tasks."""
    if raw.get("words") is not None:
        return readers.align_word_labels(raw["words"], None, vocab).token_ids
    return list(vocab.encode(raw["text"]))


class TextOnly(dict):
    """A training row as the student sees it: its text; its label is not there to be read."""

    def __missing__(self, key):
        raise KeyError(f"amalgamation read the field {key!r} of a training row: only the text is allowed")


def text_only(raw: dict) -> TextOnly:
    return TextOnly({k: raw[k] for k in ("text", "words") if k in raw and raw[k] is not None})


class TeacherPlan:
    """What the config says about one teacher: its run, label set, sequence head and vocabulary."""

    def __init__(self, name: str, run: teacher_lib.Run, data_dir):
        self.name, self.run = name, run
        where = f"{KEY} ({name}={run.directory})"
        ft = run.config.finetune
        names, kind = labelled.label_names_and_kind(ft, data_dir, bool(run.config.data.get("skip_malformed", False)))
        if kind not in TEACHER_HEAD:
            raise ValueError(f"{where} was fine-tuned on a {kind!r} task; amalgamation needs a classification head "
                             f"(one of {sorted(TEACHER_HEAD)} tasks)")
        self.kind, self.head = kind, TEACHER_HEAD[kind]
        self.labels = tuple(names[labelled.SEQUENCE_LABEL[kind][1]])
        shapes = run.param_shapes()
        kernel = shapes.get(f"{self.head}.classifier.kernel")
        if kernel is None:
            heads = sorted({k.split(".")[0] for k in shapes} - {"encoder"})
            raise ValueError(f"{where} has no {self.head!r} classification head (its heads: {heads})")
        if kernel[-1] != len(self.labels):
            raise ValueError(f"{where}: its {self.head!r} head has {kernel[-1]} classes but its config "
                             f"(finetune.label_subset={ft.get('label_subset', '')!r}) gives {len(self.labels)} labels")
        # the data set it was trained on (a BIO folder overrides the task)
        self.source = ("", os.path.abspath(ft.bio_folder)) if ft.bio_folder else (ft.task, "")
        self.vocab = load_vocabulary(run.vocab_path)


def plan_teachers(config) -> list[TeacherPlan]:
    """The teachers of config.amalgamate.teachers, checked: fine-tuned classification runs on disjoint labels."""
    spec = config.amalgamate.teachers
    data_dir = config.data.data_dir or None
    plans = [TeacherPlan(name, teacher_lib.load_run(directory, KEY, ("finetune",)), data_dir)
             for name, directory in teacher_lib.parse_teachers(spec, KEY)]
    for i, a in enumerate(plans):
        for b in plans[i + 1:]:
            shared = sorted(set(a.labels) & set(b.labels))
            if shared:
                raise ValueError(f"{KEY}: the teachers {a.name} and {b.name} share the labels {shared[:10]}"
                                 f"{' ...' if len(shared) > 10 else ''}; amalgamation needs disjoint label sets "
                                 f"(train them with disjoint config.finetune.label_subset)")
    return plans


def source_config(config, task: str, bio_folder: str) -> ml_collections.ConfigDict:
    ft = ml_collections.ConfigDict(config.finetune.to_dict())
    ft.update(task=task, bio_folder=bio_folder, label_subset="")
    return ft


class AmalgamationSplit(labelled.LabelledSplit):
    """Rows of text (with gold union labels on evaluation splits only), tokenized for the student and
    for each teacher."""


class AmalgamationBatcher(StreamPosition):
    """Batches of a pre-tokenized split; train: a seeded permutation per epoch; eval: in order, padded."""

    def __init__(self, split, arrays: dict, batch_size: int, seed: int, shuffle: bool, process_index: int = 0,
                 process_count: int = 1):
        self.split, self.arrays, self.batch_size, self.seed, self.shuffle = split, arrays, batch_size, seed, shuffle
        self.process_index, self.process_count = process_index, process_count
        self.num_rows = len(arrays["input_ids"])
        self.scores = None  # (N, T) cached Monte-Carlo scores, when amalgamate.scores=cached
        self.score_columns = 0  # T when batches carry teacher_scores (cached scores; zeros on eval splits)
        self.scores_path = ""
        self._permutation = (-1, None)
        if batch_size % process_count:
            raise ValueError(f"batch size {batch_size} is not divisible by the {process_count} processes")

    @property
    def local_batch_size(self) -> int:
        return self.batch_size // self.process_count

    @property
    def num_batches(self) -> int:
        return -(-self.num_rows // self.batch_size)

    def _index(self, global_row: int) -> int:
        if not self.shuffle:
            return global_row if global_row < self.num_rows else -1
        epoch, offset = divmod(global_row, self.num_rows)
        if self._permutation[0] != epoch:
            self._permutation = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.num_rows))
        return int(self._permutation[1][offset])

    def batch(self, step: int) -> dict:
        first = step * self.batch_size + self.process_index * self.local_batch_size
        index = np.array([self._index(r) for r in range(first, first + self.local_batch_size)], np.int64)
        real = index >= 0
        take = np.where(real, index, 0)
        out = {k: np.where(real.reshape((-1,) + (1,) * (v.ndim - 1)), v[take], 0).astype(v.dtype)
               for k, v in self.arrays.items()}
        out["example_index"] = np.where(real, index, -1).astype(np.int32)
        out["example_weight"] = real.astype(np.float32)
        seq_len = self.arrays["input_ids"].shape[1]
        out["positions"] = np.broadcast_to(np.arange(seq_len, dtype=np.int32), (len(index), seq_len)).copy()
        out["token_types"] = np.zeros((len(index), seq_len), np.int32)
        if self.score_columns and self.shuffle:
            if self.scores is None:
                raise ValueError("config.amalgamate.scores='cached': the training batches were asked for before "
                                 "the scores were loaded (the objective's frozen_params loads them)")
            out["teacher_scores"] = np.where(real[:, None], self.scores[take], 0).astype(np.float32)
        elif self.score_columns:  # evaluation reads no score
            out["teacher_scores"] = np.zeros((len(index), self.score_columns), np.float32)
        return out

    def fingerprint(self) -> str:
        return stream_fingerprint([self.batch_size, self.seed, self.num_rows, sorted(self.arrays)],
                                  list(self.arrays["input_ids"][:500]))


def build_split(config, plans, sources, split: str, vocab, train: bool):
    """(AmalgamationSplit, arrays) of `split` over the teachers' data sets: text only for training;
    evaluation rows keep their gold label's union index (rows whose label no teacher knows are left out)."""
    union = [label for p in plans for label in p.labels]
    union_index = {label: i for i, label in enumerate(union)}
    seq_len, data_dir = config.data.seq_len, config.data.data_dir or None
    rows, labels, outside = [], [], 0
    for task, bio_folder in sources:
        raws, _, kind = labelled.raw_rows(source_config(config, task, bio_folder), split, data_dir,
                                          config.data.skip_malformed, label_subset=False)
        for raw in raws:
            if train:
                rows.append(text_only(raw))
                continue
            gold = raw[labelled.SEQUENCE_LABEL[kind][0]]
            if gold not in union_index:
                outside += 1
                continue
            rows.append(text_only(raw))
            labels.append(union_index[gold])
    if not rows:
        raise ValueError(f"{KEY}: split {split!r} of the teachers' data sets {sources} has no rows")
    arrays = {"input_ids": [], "segment_ids": []}
    for j in range(len(plans)):
        arrays[f"teacher{j}_input_ids"], arrays[f"teacher{j}_segment_ids"] = [], []
    for row in rows:
        ids, segment = layout(row_tokens(row, vocab), seq_len, vocab)
        arrays["input_ids"].append(ids)
        arrays["segment_ids"].append(segment)
        for j, plan in enumerate(plans):
            ids, segment = layout(row_tokens(row, plan.vocab), seq_len, plan.vocab)
            arrays[f"teacher{j}_input_ids"].append(ids)
            arrays[f"teacher{j}_segment_ids"].append(segment)
    arrays = {k: np.stack(v) for k, v in arrays.items()}
    # Training rows carry no label: -1, a constant, not read from the data.
    arrays["label"] = np.full(len(rows), -1, np.int32) if train else np.asarray(labels, np.int32)
    split_obj = AmalgamationSplit(rows, {"label": tuple(union)}, "sentence")
    return split_obj, arrays, outside


@register
class Amalgamate(FineTune):
    name = "amalgamate"

    @staticmethod
    def default_sections():
        return {**FineTune.default_sections(), "amalgamate": ml_collections.ConfigDict({
            # Fine-tuned teacher runs on disjoint label sets: RUN1,RUN2 or a=RUN1,b=RUN2 (a teacher's name
            # defaults to its directory's base name). Their data sets' training text is the student's.
            "teachers": "",
            "method": "muka",  # muka | vanilla_kd (concatenated logits) | uhc (renormalised on each C_j)
            "target": "soft",  # muka: hard (the best-scored teacher) | soft (softmax(s/τ_s) mixture)
            "margin": True,  # muka: weigh each row by |s_(1) − s_(2)| + 1e-6
            "mc_passes": 16,  # K Monte-Carlo passes per teacher, dropout on
            "score_temperature": 0.2,  # τ_s of target=soft
            "temperature": 1.0,  # τ of the KL to the student
            # online: scores inside the step; cached: computed once over the training rows and stored in
            # scores_file (python -m atm.amalgamate.score, or an automatic first pass).
            "scores": "online",
            "scores_file": "",  # "" = WORKDIR/amalgamate_scores.npz
        })}

    @staticmethod
    def value_ranges():
        return {**FineTune.value_ranges(), "amalgamate.mc_passes": atm_config.AT_LEAST_1,
                "amalgamate.score_temperature": atm_config.POSITIVE, "amalgamate.temperature": atm_config.POSITIVE}

    @staticmethod
    def check_settings(config):
        a = config.amalgamate
        for key, value, allowed in (("method", a.method, METHODS), ("target", a.target, TARGETS),
                                    ("scores", a.scores, SCORE_MODES)):
            if value not in allowed:
                raise ValueError(f"config.amalgamate.{key}={value!r}: use one of {allowed}")
        if not isinstance(a.mc_passes, int) or a.mc_passes < 1:
            raise ValueError(f"config.amalgamate.mc_passes={a.mc_passes!r} must be an integer >= 1")
        if config.finetune.teacher:
            raise ValueError("config.finetune.teacher is task-level KD; amalgamation's teachers are "
                             "config.amalgamate.teachers")

    @classmethod
    def build_data(cls, config, workdir):
        cls.check_settings(config)
        plans = plan_teachers(config)
        sources = list(dict.fromkeys(p.source for p in plans))
        texts = []
        if not config.data.vocab:  # a student vocabulary trained on the union of the training text
            for task, bio_folder in sources:
                raws, _, _ = labelled.raw_rows(source_config(config, task, bio_folder), "train",
                                               config.data.data_dir or None, config.data.skip_malformed, False)
                texts += [text_only(r)["text"] if "text" in r else " ".join(r["words"]) for r in raws]
        vocab = load_vocab(config.data, workdir, texts)
        train_split, train_arrays, _ = build_split(config, plans, sources, "train", vocab, True)
        eval_split, eval_arrays, outside = build_split(config, plans, sources, config.finetune.eval_split,
                                                       vocab, False)
        size, seed = config.train.batch_size, config.seed
        train = AmalgamationBatcher(train_split, train_arrays, size, seed, True, jax.process_index(),
                                    jax.process_count())
        evaluation = AmalgamationBatcher(eval_split, eval_arrays, size, 0, False, jax.process_index(),
                                         jax.process_count())
        train.plans = plans
        if config.amalgamate.scores == "cached" and config.amalgamate.method == "muka":
            train.scores_path = config.amalgamate.scores_file or os.path.join(workdir, SCORES_FILE)
            train.score_columns = evaluation.score_columns = len(plans)
        stats = {"data_rows": train.num_rows, "data_eval_rows": evaluation.num_rows,
                 "data_eval_rows_outside_union": outside}
        return vocab, train, evaluation, stats

    def __init__(self, config, vocab, train_data=None):
        Objective.__init__(self, config, vocab, train_data)  # not FineTune's: there is no fine-tuning task here
        if train_data is None or not hasattr(train_data, "plans"):
            raise ValueError("the amalgamate objective needs its training data (built by Amalgamate.build_data)")
        self.check_settings(config)
        self.settings = config.amalgamate
        self.model_cfg = atm_config.model_config(config)
        self.seq_len = config.data.seq_len
        self.plans = train_data.plans
        self.kind = "sentence"
        self.label_names = train_data.split.label_names
        self.num_union = len(self.label_names["label"])
        self.heads = (("label", "sequence", self.num_union),)
        self.token_query_slots = 0
        self.train_model = EncoderWithHeads(self.model_cfg, self.heads, deterministic=False)
        self.eval_model = EncoderWithHeads(self.model_cfg, self.heads, deterministic=True)
        self.parts = {p.name: len(p.labels) for p in self.plans}
        self.teachers = {}
        ids = jnp.zeros((1, self.seq_len), jnp.int32)
        for plan in self.plans:
            heads = ((plan.head, "sequence", len(plan.labels)),)
            self.teachers[plan.name] = teacher_lib.Teachers(
                f"{plan.name}={plan.run.directory}", KEY, ("finetune",), self.model_cfg.dtype,
                lambda cfg, deterministic, heads=heads: EncoderWithHeads(cfg, heads, deterministic=deterministic),
                (ids, ids, ids, ids))
            cfg = self.teachers[plan.name].configs[plan.name]
            if cfg.max_positions < self.seq_len:
                raise ValueError(f"{KEY}: teacher {plan.name} has model.max_positions={cfg.max_positions} < "
                                 f"config.data.seq_len={self.seq_len}")
        self.train_data = train_data

    # --- frozen teachers ----------------------------------------------------------------------
    def frozen_params(self, mesh):
        frozen = {}
        for teachers in self.teachers.values():
            frozen.update(teachers.shard(mesh))
        if self.settings.scores == "cached" and self.settings.method == "muka":
            from atm.amalgamate import score
            self.train_data.scores = score.load_or_compute(self, frozen, mesh, self.train_data)
        return frozen

    def frozen_abstract(self, mesh):
        out = {}
        for teachers in self.teachers.values():
            out.update(teachers.abstract(mesh))
        return out

    def example_batch(self, batch_size):
        shape = (batch_size, self.seq_len)
        names = ["input_ids", "segment_ids", "positions", "token_types"]
        for j in range(len(self.plans)):
            names += [f"teacher{j}_input_ids", f"teacher{j}_segment_ids"]
        batch = {k: jax.ShapeDtypeStruct(shape, jnp.int32) for k in names}
        batch["label"] = jax.ShapeDtypeStruct((batch_size,), jnp.int32)
        batch["example_index"] = jax.ShapeDtypeStruct((batch_size,), jnp.int32)
        batch["example_weight"] = jax.ShapeDtypeStruct((batch_size,), jnp.float32)
        if self.settings.scores == "cached" and self.settings.method == "muka":
            batch["teacher_scores"] = jax.ShapeDtypeStruct((batch_size, len(self.plans)), jnp.float32)
        return batch

    def _teacher_args(self, j: int, batch: dict, name: str):
        cfg = self.teachers[name].configs[name]
        ids, segment = batch[f"teacher{j}_input_ids"], batch[f"teacher{j}_segment_ids"]
        token_types = batch["token_types"] if cfg.type_vocab_size > 1 else None
        return ids, segment, batch["positions"], token_types

    def teacher_logits(self, frozen, batch):
        """[(B, |C_j|) logits of teacher j, dropout off]."""
        out = []
        for j, plan in enumerate(self.plans):
            logits = self.teachers[plan.name].apply(frozen, plan.name, *self._teacher_args(j, batch, plan.name))
            out.append(logits[plan.head])
        return out

    def teacher_scores(self, frozen, batch) -> jax.Array:
        """(T, B) Monte-Carlo scores s_j of the batch's rows (each row's own keys: see the module docstring)."""
        scores = []
        for j, plan in enumerate(self.plans):
            ids, segment, positions, token_types = self._teacher_args(j, batch, plan.name)
            teachers, name, head = self.teachers[plan.name], plan.name, plan.head

            def apply(ids_1xL, segment_1xL, rng, teachers=teachers, name=name, head=head):
                types = None if token_types is None else jnp.zeros_like(ids_1xL)
                return teachers.apply(frozen, name, ids_1xL, segment_1xL, positions[:1], types, rng=rng)[head]
            keys = row_keys(self.config.seed, j, batch["example_index"])
            scores.append(confidence_score(mc_mean_probs(apply, ids, segment, keys, self.settings.mc_passes)))
        return jnp.stack(scores)

    # --- the loss ----------------------------------------------------------------------------
    def loss(self, params, frozen, batch, rng, train):
        student_BxU = self.student_logits(params, batch, rng, train)["label"].astype(jnp.float32)
        teachers = self.teacher_logits(frozen, batch)
        a, w_B = self.settings, batch["example_weight"]
        sums = {"weight": w_B.sum()}
        if a.method == "vanilla_kd":
            per_row = vanilla_kd_loss(student_BxU, teachers, a.temperature)
        elif a.method == "uhc":
            per_row = uhc_loss(student_BxU, teachers, a.temperature)
        else:
            scores_TxB = (jnp.moveaxis(batch["teacher_scores"], -1, 0) if a.scores == "cached"
                          else self.teacher_scores(frozen, batch))
            scores_TxB = jax.lax.stop_gradient(scores_TxB)
            per_row, m_B, kd_B = muka_loss(student_BxU, teachers, scores_TxB, a.target, a.margin, a.temperature,
                                           a.score_temperature)
            sums["margin"] = (m_B * w_B).sum()
            sums["kd_loss"] = (kd_B * w_B).sum()
            for j, plan in enumerate(self.plans):
                sums[f"score_{plan.name}"] = (scores_TxB[j] * w_B).sum()
        sums.setdefault("kd_loss", (per_row * w_B).sum())
        return (per_row * w_B).sum(), sums

    def eval_outputs(self, params, frozen, batch, rng):
        """Predictions over the union and the gold CE (evaluation rows carry their gold union label)."""
        logits = self.student_logits(params, batch, rng, False)["label"]
        w = batch["example_weight"]
        gold = jnp.maximum(batch["label"], 0)
        correct = (jnp.argmax(logits, -1) == gold).astype(jnp.float32)
        return {"weight": w.sum(), "loss": (cross_entropy(logits, gold) * w).sum(), "accuracy": (correct * w).sum(),
                "pred_label": jnp.argmax(logits, -1)}

    def summarize(self, outputs, batches, eval_data=None):
        """Accuracy over the union, and on each teacher's part (the rows whose gold label is in C_j)."""
        weight = max(sum(float(o["weight"]) for o in outputs), 1.0)
        report = {"loss": sum(float(o["loss"]) for o in outputs) / weight,
                  "accuracy": sum(float(o["accuracy"]) for o in outputs) / weight}
        gold = np.concatenate([b["label"][b["example_weight"] > 0] for b in batches])
        pred = np.concatenate([np.asarray(o["pred_label"])[b["example_weight"] > 0] for o, b in zip(outputs, batches)])
        offset = 0
        for plan in self.plans:
            part = (gold >= offset) & (gold < offset + len(plan.labels))
            if part.any():
                report[f"accuracy_{plan.name}"] = float((pred[part] == gold[part]).mean())
            offset += len(plan.labels)
        return report

    def flops_per_token(self):
        student = encoder_flops_per_token(self.model_cfg, self.seq_len, 0.0, 1)
        passes = 1 + (self.settings.mc_passes if self.settings.method == "muka" and self.settings.scores == "online"
                      else 0)
        return student + passes * sum(t.flops_per_token(lambda cfg: encoder_flops_per_token(cfg, self.seq_len, 0.0, 1)
                                                          / 3) for t in self.teachers.values())
