"""Shared pieces of the paper reproductions, which run from the repository root as `python -m reproduce.<paper>`:
the command line and its step schedule, the miniature model shapes and configs, running a config in
process, evaluating on MASSIVE locales, verdicts and table writing."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import statistics
import time
from typing import Any, Callable

from atm import evaluate, train
from atm import config as atm_config
from atm.config import default_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCALES = {"en-US": "massive_en_us", "de-DE": "massive_de_de", "sw-KE": "massive_sw_ke"}

# --- model shapes and configs ---------------------------------------------------------------------
# What every miniature model of the ATM and Privileged Students scripts has: the 8000-piece vocabulary
# trained on the stage-1 corpus, pre-LN (students distilled in reproduce.atm set it off), dropout 0.1.
MODEL = dict(vocab_size=8000, max_positions=128, type_vocab_size=1, pre_layer_norm=True, hidden_dropout=0.1,
             layer_norm_eps=1e-5)
TEACHER = dict(num_layers=4, hidden_size=128, num_heads=4, ffn_size=512)
STUDENT = dict(num_layers=2, hidden_size=96, num_heads=4, ffn_size=384)  # 0.28 × the teacher's non-embedding size
# The stage-1 `:mini` recipe's encoder settings (results/pretraining/NOTES.md): post-LN, the position table started
# at sin/cos. Scripts that pretrain with that recipe give every model (from-scratch rows included) these settings,
# so that pretrained and from-scratch rows differ in their starting weights only.
MINI_ENCODER = dict(pre_layer_norm=False, position_init="sinusoidal")


def pretrain_config(objective: str, model: dict, tasks: str, steps: int, seq_len: int, batch_size: int, **data):
    """An mlm or distill run of `steps` steps on the seqio `tasks` with whole-word masking (linear decay,
    lr 1e-3, one eval of 4 batches at the end); `model` over `MODEL`, `data` over the data section."""
    c = default_config(objective)
    c.model.update({**MODEL, **model})
    c.data.update(source="tasks", tasks=tasks, vocab_size=8000, seq_len=seq_len, whole_word_masking=True,
                  eval_fraction=0.02, **data)
    c.train.update(steps=steps, batch_size=batch_size, log_every=max(1, steps // 10), eval_every=steps,
                   eval_batches=4)
    c.optimizer.update(learning_rate=1e-3, warmup_steps=max(1, steps // 10), schedule="linear")
    c.checkpoint.update(every=steps, keep=1)
    return c


def stage1_mini_config():
    """configs/atm_stage1_public.py:mini, the CPU-sized stage-1 recipe of issue 14."""
    import configs.atm_stage1_public as stage1
    return stage1.get_config("mini")


def stage1_vocab(folder: str, name: str = "v8k", size: int = 8000, coverage: float = 0.9995,
                 data: dict | None = None) -> str:
    """`folder`/`name`.model: a SentencePiece vocabulary trained on the `:mini` stage-1 corpus (with `data` over its
    data section), as `python -m atm.data export` + `python -m atm.data.vocab` do (languages sampled with
    alpha 0.3); trained once (by one process: another waits for it), then read."""
    prefix = os.path.join(folder, name)
    return made_once(prefix + ".model", lambda: _train_stage1_vocab(folder, prefix, size, coverage, data))


def made_once(path: str, make: Callable[[], Any]) -> str:
    """`path`, made by `make()` unless it exists: by one process, under its folder's lock (another started beside
    it waits, then reads it)."""
    if os.path.exists(path):
        return path
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    with run_lock(folder):
        if not os.path.exists(path):
            make()
    return path


def _train_stage1_vocab(folder: str, prefix: str, size: int, coverage: float, data: dict | None):
    import sentencepiece as spm

    from atm.data import export, vocab
    name = os.path.basename(prefix)
    corpus = os.path.join(folder, f"corpus_{name}.txt" if data else "corpus.txt")
    if not os.path.exists(corpus):
        config = stage1_mini_config()
        config.data.update(data or {})
        export.export(config, corpus)
    pairs, _ = vocab.sample_by_language(vocab.read_lines_by_language(corpus), 0.3, 0, 0)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([t for _, t in pairs]), model_prefix=prefix, vocab_size=size, model_type="unigram",
        pad_id=0, unk_id=1, bos_id=2, eos_id=3, pad_piece="[PAD]", unk_piece="[UNK]", bos_piece="[CLS]",
        eos_piece="[SEP]", user_defined_symbols=["[MASK]"], character_coverage=coverage, hard_vocab_limit=False,
        num_threads=1, minloglevel=2)


def finetune_config(model: dict, vocab: str, steps: int, seed: int, task: str = "massive_en_us", seq_len: int = 32,
                    batch_size: int = 32, learning_rate: float = 2e-3, eval_batches: int = 8,
                    keep: int | None = 1, **finetune):
    """A fine-tuning run scored on `task`'s validation split (`eval_batches` batches, -1: all of it);
    `finetune` sets more of the finetune section; `keep=None` keeps the default checkpoint count."""
    c = default_config("finetune")
    c.seed = seed
    c.model.update(model)
    c.finetune.update(task=task, eval_split="validation", **finetune)
    c.data.update(vocab=vocab, seq_len=seq_len)
    c.train.update(steps=steps, batch_size=batch_size, log_every=max(1, steps // 5), eval_every=steps,
                   eval_batches=eval_batches)
    c.optimizer.update(learning_rate=learning_rate, warmup_steps=max(1, steps // 10))
    c.checkpoint.update(every=steps, **({} if keep is None else {"keep": keep}))
    return c


# --- command line ---------------------------------------------------------------------------------
def parser(doc: str, seeds: int, workdir: str, results: str) -> argparse.ArgumentParser:
    """The flags every paper script takes: --scale, --seeds, --workdir, --results, --smoke, --steps."""
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.add_argument("--scale", type=float, default=1.0, help="multiplies every step count")
    p.add_argument("--seeds", type=int, default=seeds)
    p.add_argument("--workdir", default=workdir)
    p.add_argument("--results", default=results)
    p.add_argument("--smoke", action="store_true", help="a few steps of everything (seconds per run)")
    p.add_argument("--steps", default="", help="per-phase step counts that override the scale, e.g. finetune=120")
    return p


def scaled(base: dict, factor: float) -> dict:
    """{phase: steps} with each of `base`'s steps × `factor` (at least 2)."""
    return {k: max(2, int(v * factor)) for k, v in base.items()}


def schedule(base: dict, args) -> dict:
    """{phase: steps}: each phase's `base` steps × --scale (at least 2), then the --steps overrides."""
    steps = scaled(base, args.scale)
    steps.update(parse_steps(args.steps, steps))
    return steps


class Clock:
    """Minutes spent running in `workdir`, summed over every start: a script resumed in a later session keeps
    counting from where the last one stopped, and the hours between sessions do not count. The running total
    is written to `workdir/elapsed_minutes` at each log line (two scripts sharing a workdir in parallel:
    the later writer wins, so the figure is the longer one's)."""

    def __init__(self, workdir: str):
        os.makedirs(workdir, exist_ok=True)
        self.path = os.path.join(workdir, "elapsed_minutes")
        self.before = 0.0
        if os.path.exists(self.path):
            with open(self.path) as f:
                self.before = float(f.read())
        self.start = time.time()

    def minutes(self) -> float:
        return self.before + (time.time() - self.start) / 60

    def log(self, message: str):
        minutes = self.minutes()
        with open(self.path, "w") as f:
            f.write(f"{minutes:.2f}")
        print(f"[{minutes:5.1f} min] {message}", flush=True)


# Finished runs outlive the machine. Each session starts on a new checkout without workdirs/, so a run under
# workdirs/ is also recorded in results/runs/<its path under workdirs/> (committed): its config, summary,
# metrics and figure files, its vocabulary by content in results/runs/vocab/. A script run again restores a
# recorded run without training it (no checkpoint). When a run to be trained starts from or distils from a
# restored run, that run is retrained first and must reproduce its record (summary and vocabulary), so every
# recorded figure still follows from the checkpoints in use.
WORKDIRS = os.path.join(REPO, "workdirs")
RECORDS = os.path.join(REPO, "results", "runs")
RESTORED = "restored_from_record"  # in a restored run's directory: it has no checkpoint
RECORDED_SUFFIXES = (".json", ".jsonl")
RECORDED_MAX_BYTES = 1 << 20
NOT_REPRODUCED = ("tokens_per_s", "mfu", "workdir")  # summary keys that depend on the machine, not the run


def record_dir(workdir: str) -> str | None:
    """results/runs/<workdir's path under workdirs/>; None for a run outside workdirs/ (tests, --smoke)."""
    rel = os.path.relpath(os.path.abspath(workdir), WORKDIRS)
    return None if rel.startswith("..") else os.path.join(RECORDS, rel)


def keep(workdir: str):
    """Record a finished run's small files (a new run's, or figures added since). A record of another config is
    replaced; otherwise files already recorded stay as they are (a retrained run's timings do not churn)."""
    record = record_dir(workdir)
    if record is None or not os.path.exists(os.path.join(workdir, "summary.json")):
        return
    if _read(os.path.join(record, "config.json")) != _read(os.path.join(workdir, "config.json")):
        shutil.rmtree(record, ignore_errors=True)
    os.makedirs(record, exist_ok=True)
    for name in sorted(os.listdir(workdir)):
        path, target = os.path.join(workdir, name), os.path.join(record, name)
        if (name.endswith(RECORDED_SUFFIXES) and os.path.isfile(path) and not os.path.exists(target)
                and os.path.getsize(path) <= RECORDED_MAX_BYTES):
            with open(path) as f, open(target + ".tmp", "w") as out:
                out.write(f.read().replace(REPO, "{REPO}"))
            os.replace(target + ".tmp", target)
    vocab = os.path.join(workdir, "vocab.model")
    if os.path.isfile(vocab) and not os.path.exists(os.path.join(record, "vocab.sha256")):
        digest = _sha256(vocab)
        blob = os.path.join(RECORDS, "vocab", f"{digest}.model")
        if not os.path.exists(blob):
            os.makedirs(os.path.dirname(blob), exist_ok=True)
            shutil.copyfile(vocab, blob)
        with open(os.path.join(record, "vocab.sha256"), "w") as f:
            f.write(digest)


def restore(workdir: str) -> bool:
    """Fill `workdir` (no finished run there) from its record, if there is one; True if it was restored."""
    record = record_dir(workdir)
    if record is None or os.path.exists(os.path.join(workdir, "summary.json")) \
            or not os.path.exists(os.path.join(record, "summary.json")) \
            or _live_holder(os.path.join(workdir, "running.pid")) not in (None, os.getpid()):
        return False  # (a run another process is training or retraining is left to it)
    os.makedirs(workdir, exist_ok=True)
    _copy_missing(record, workdir)
    with open(os.path.join(workdir, RESTORED), "w") as f:
        f.write(f"restored from {record}: no checkpoint; retrained when a run needs it\n")
    return True


def _copy_missing(record: str, workdir: str):
    for name in sorted(os.listdir(record)):
        target = os.path.join(workdir, name)
        if name == "vocab.sha256":
            name, target = "vocab.model", os.path.join(workdir, "vocab.model")
            if not os.path.exists(target):
                shutil.copyfile(os.path.join(RECORDS, "vocab", f"{_read(os.path.join(record, 'vocab.sha256'))}.model"),
                                target)
        elif not os.path.exists(target):
            with open(os.path.join(record, name)) as f, open(target, "w") as out:
                out.write(f.read().replace("{REPO}", REPO))


def rebuild(workdir: str):
    """Retrain a restored run from its recorded config, so its checkpoint exists; it must reproduce the
    record (summary and vocabulary), or the runs recorded after it came from another checkpoint."""
    with run_lock(workdir):
        if not os.path.exists(os.path.join(workdir, RESTORED)):
            return  # another process rebuilt it meanwhile
        record = record_dir(workdir)
        recorded, recorded_vocab = _read_json(os.path.join(record, "summary.json")), \
            _read(os.path.join(record, "vocab.sha256"))
        config = atm_config.from_saved(_read_json(os.path.join(workdir, "config.json")))
        for name in os.listdir(workdir):
            if not name.startswith("running.pid"):
                path = os.path.join(workdir, name)
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        print(f"Retraining {workdir} from its record: a run needs its checkpoint", flush=True)
        summary = _train(config, workdir)
        differs = [f"{k}: recorded {recorded[k]!r}, now {summary.get(k)!r}" for k in sorted(recorded)
                   if k not in NOT_REPRODUCED and not _reproduces(summary.get(k), recorded[k])]
        vocab = os.path.join(workdir, "vocab.model")
        if recorded_vocab and os.path.isfile(vocab) and _sha256(vocab) != recorded_vocab:
            differs.append("vocab.model's content")
        if differs:
            raise RuntimeError(f"{workdir} was retrained from its record ({record}) but did not reproduce it "
                               f"({'; '.join(differs[:4])}): the runs recorded after it came from another "
                               "checkpoint. Delete their records (or this one and everything under it) to redo them")
        _copy_missing(record, workdir)  # figure files computed after training


REPRODUCED_RTOL = 1e-5  # float figures of a retrained run: XLA's CPU sums depend on the threads it is given


def _reproduces(now, recorded) -> bool:
    """Whether a retrained run's summary figure reproduces the recorded one: exactly, or for floats within
    REPRODUCED_RTOL. The same process layout retrains bit-identically; another core count (taskset) changes
    the order of XLA's CPU reductions: measured 2e-7 relative after 1964 MLM steps, same masked-token accuracy."""
    if isinstance(recorded, float) and isinstance(now, (int, float)) and not isinstance(now, bool):
        return abs(now - recorded) <= REPRODUCED_RTOL * max(abs(recorded), 1e-12)
    return now == recorded


def _restored_inputs(config) -> list[str]:
    """Restored runs (no checkpoint) that `config` starts from or distils from: its values naming a run directory
    or a missing file in one. A file the record brought back (a vocabulary, restored by content) needs no
    checkpoint, so a run reading only that is not retrained."""
    found = []
    for value in train.flatten(json.loads(config.to_json_best_effort())).values():
        for token in re.split(r"[,+=\s]+", value) if isinstance(value, str) else ():
            if os.path.isfile(token):
                continue
            run_dir = token if os.path.isdir(token) else os.path.dirname(token)
            if os.path.isabs(token) and os.path.exists(os.path.join(run_dir, RESTORED)) and run_dir not in found:
                found.append(run_dir)
    return found


def _read(path: str) -> str:
    if not os.path.exists(path):
        return ""
    with open(path) as f:
        return f.read().replace("{REPO}", REPO)


def _read_json(path: str):
    with open(path) as f:
        return json.load(f)


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


LOCK_POLL_S = 30.0


@dataclasses.dataclass
class Job:
    """One run of a script's plan: `config()` is called when the job runs (it may read the runs it `needs`);
    `then(workdir)` scores the finished run (e.g. `run_figures`), under the run's lock."""
    workdir: str
    config: Callable[[], Any]
    needs: tuple[str, ...] = ()
    then: Callable[[str], Any] | None = None


def run_jobs(jobs: list[Job], log=print):
    """Runs `jobs` in order, except that a job another live process is running, or one needing such a run, is
    put off: the same command started once per core shares the work, each process taking the next job the
    others do not hold, and waiting only when every job left is held or waits for a held one."""
    pending = list(jobs)
    root = os.path.commonpath([job.workdir for job in jobs]) if len(jobs) > 1 else ""
    while pending:
        for job in pending:
            restore(job.workdir)
            ready = all(restore(n) or os.path.exists(os.path.join(n, "summary.json")) for n in job.needs)
            if ready and _live_holder(os.path.join(job.workdir, "running.pid")) in (None, os.getpid()):
                break
        else:
            time.sleep(LOCK_POLL_S)
            continue
        pending.remove(job)
        os.makedirs(job.workdir, exist_ok=True)
        with run_lock(job.workdir):
            finished_before = os.path.exists(os.path.join(job.workdir, "summary.json"))
            run(job.config(), job.workdir)
            if job.then:
                job.then(job.workdir)
        how = "finished before or by another process" if finished_before else "trained"
        name = os.path.relpath(job.workdir, root) if root else os.path.basename(job.workdir)
        log(f"{name}: {how} ({len(pending)} left in this plan)")


def run(config, workdir: str) -> dict:
    """Train `config` in `workdir` unless a finished run of the same config is already there or recorded
    (re-running a script resumes, in this session or a later one: `keep`); a finished run of another config
    (changed steps, rate, ...) is an error, never reused. Processes sharing a script's workdir (run_jobs)
    never train one run twice at once: a run another live process is training is waited for, then read."""
    os.makedirs(workdir, exist_ok=True)
    with run_lock(workdir):
        summary_path = os.path.join(workdir, "summary.json")
        restore(workdir)
        if os.path.exists(summary_path):
            if changes := train.config_changes(config, workdir):
                raise ValueError(f"{workdir} holds a finished run of another config ({changes}): delete it (and "
                                 f"its record {record_dir(workdir)}) or give the script another --workdir")
            keep(workdir)
            return _read_json(summary_path)
        return _train(config, workdir)


def _train(config, workdir: str) -> dict:
    for upstream in _restored_inputs(config):
        rebuild(upstream)
    summary = train.train_and_evaluate(config, workdir)
    with open(os.path.join(workdir, "summary.json"), "w") as f:
        json.dump(summary, f)
    keep(workdir)
    return summary


def run_figures(workdir: str, name: str, compute) -> dict:
    """Figures of a finished run, `compute(workdir)` (an atm.evaluate call), computed once and kept in the run
    directory as `name` and in its record. A restored run is retrained first: evaluation needs its checkpoint."""
    path = os.path.join(workdir, name)
    restore(workdir)
    if not os.path.exists(path):
        if os.path.exists(os.path.join(workdir, RESTORED)):
            rebuild(workdir)
        out = compute(workdir)
        with open(path + ".tmp", "w") as f:
            json.dump(out, f, indent=2)
        os.replace(path + ".tmp", path)
    keep(workdir)
    return _read_json(path)


@contextlib.contextmanager
def run_lock(workdir: str):
    """`workdir`/running.pid names the process training it; one left by a dead process (SIGKILL) is taken over.
    The pid is written first and hard-linked into place, so the lock file is never seen empty. A process
    holding the lock may take it again (scoring a run it holds)."""
    path, mine = os.path.join(workdir, "running.pid"), os.path.join(workdir, f"running.pid.{os.getpid()}")
    if _live_holder(path) == os.getpid():
        yield
        return
    with open(mine, "w") as f:
        f.write(str(os.getpid()))
    try:
        while True:
            try:
                os.link(mine, path)
                break
            except FileExistsError:
                if (holder := _live_holder(path)) is None:  # its process is gone
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(path)
                else:
                    print(f"Waiting for process {holder}, which is training {workdir}", flush=True)
                    time.sleep(LOCK_POLL_S)
    finally:
        os.remove(mine)
    try:
        yield
    finally:
        os.remove(path)


def _live_holder(path: str) -> int | None:
    """The live process a lock file names, or None if the file is gone or its process dead."""
    try:
        with open(path) as f:
            pid = int(f.read())
        os.kill(pid, 0)
    except (FileNotFoundError, ProcessLookupError):
        return None
    except PermissionError:  # alive, another user's
        pass
    return pid


def evaluate_locales(workdir: str, locales=("en-US", "de-DE", "sw-KE"), split: str = "test") -> dict:
    """{locale: {accuracy, slot_f1, semer, ...}} of a finished MASSIVE fine-tuning run (atm.evaluate: one restore)."""
    def compute(run_dir):
        rows = evaluate.evaluate_run(run_dir, ",".join(LOCALES[locale] for locale in locales), split)["rows"]
        return {locale: {k: v for k, v in row.items() if isinstance(v, float)} for locale, row in zip(locales, rows)}

    return run_figures(workdir, "eval_locales.json", compute)


def parse_steps(spec: str, phases: dict) -> dict:
    """"finetune=120,stage2=100" → {phase: steps}, for phases of `phases` only."""
    out = {}
    for item in filter(None, (x.strip() for x in spec.split(","))):
        name, _, value = item.partition("=")
        if name not in phases:
            raise ValueError(f"--steps: unknown phase {name!r} (phases: {sorted(phases)})")
        out[name] = int(value)
    return out


def mean_spread(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def held(yes: bool) -> str:
    """A yes/no verdict as the tables print it."""
    return f"**{'held' if yes else 'did not hold'}**"


def verdict(better: list[float], worse: list[float], percent: bool = True) -> str:
    """"held" / "did not hold" for the claim mean(better) > mean(worse), with the gap and whether it is
    larger than the seeds' spread (the larger standard deviation of the two)."""
    scale = 100.0 if percent else 1.0
    (b, b_std), (w, w_std) = mean_spread([v * scale for v in better]), mean_spread([v * scale for v in worse])
    gap, spread = b - w, max(b_std, w_std)
    text = f"{held(gap > 0)} ({gap:+.1f} points"
    if len(better) > 1 and len(worse) > 1:
        text += ", larger than the seed spread" if abs(gap) > spread else f", within the seed spread of {spread:.1f}"
    return text + ")"


def cell(values: list[float], percent: bool = True) -> str:
    scale = 100.0 if percent else 1.0
    mean, spread = mean_spread([v * scale for v in values])
    return f"{mean:.1f} ± {spread:.1f}" if len(values) > 1 else f"{mean:.1f}"


def non_embedding(model_config) -> int:
    d, f, layers = model_config.hidden_size, model_config.ffn_size, model_config.num_layers
    return layers * (4 * d * d + 2 * d * f + 4 * d + f + d + 4 * d)


# --- tables ---------------------------------------------------------------------------------------
def produced_by(paper: str, args, clock: "Clock", steps: dict, flags: tuple = ()) -> str:
    """A table's first line: the command that wrote it (`flags`: (name, value) shown when set), its wall
    time and each phase's steps."""
    extra = "".join(f" --{name}={value}" for name, value in flags if value)
    return (f"Produced by `python -m reproduce.{paper} --scale={args.scale} --seeds={args.seeds}{extra}` in "
            f"{clock.minutes():.1f} minutes on this machine (2 CPU cores, shared). Steps: {steps}.")


def claim_bullets(claims: list[tuple[str, str]]) -> list[str]:
    """A table's claims section: one "- claim: verdict" line per (claim, verdict)."""
    return [f"- {claim}: {verdict_text}" for claim, verdict_text in claims]


def write_table(path: str, lines: list[str], claims: list[tuple[str, str]] | None = None) -> str:
    """Write the markdown `lines` to `path` (its folder made); returns the text. `claims` [(claim, verdict)]
    also go to claims.json beside it, with the table's "Produced by" sentence: what `python -m reproduce`
    collects into results/README.md."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    text = "\n".join(lines)
    with open(path, "w") as f:
        f.write(text)
    if claims is not None:
        produced = next((line for line in lines if line.startswith("Produced by")), "")
        record = {"table": os.path.basename(path), "produced_by": produced,
                  "claims": [{"claim": claim, "verdict": verdict_text} for claim, verdict_text in claims]}
        with open(os.path.join(os.path.dirname(os.path.abspath(path)), "claims.json"), "w") as f:
            json.dump(record, f, indent=1, ensure_ascii=False)
    return text
