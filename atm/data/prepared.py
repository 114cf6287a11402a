"""Prepared corpora: tokenise once into shards of token ids, then stream them per host.

    python -m atm.data prepare --config=configs/X.py --out=DIR [--num_shards=N] [--workers=W]
    python -m atm.main --config=configs/X.py --workdir=RUN \\
        --config.data.source=prepared --config.data.prepared_dir=DIR

Storage (one directory, no dependency beyond numpy):
    manifest.json                  written last by `prepare`: format, dtype, vocabulary, splits, shards
    vocab.model                    the SentencePiece model the ids belong to (a HF tokenizer is named by path)
    train-00003-of-00016.ids       token ids of the shard's records, back to back (uint16, or int32 for
                                   vocabularies over 65536 pieces), little-endian
    train-00003-of-00016.idx       int64 offsets into .ids: record i is ids[idx[i]:idx[i+1]] (records + 1 entries)
    train-00003-of-00016.json      the shard's receipt, written after both files: sizes, sha256, job hash
    eval-00000-of-00001.*          the held-out rows (every k-th row, as `sources.split_train_eval`)

Why this and not ArrayRecord/TFRecord + Grain/tf.data: the reader needs contiguous runs of records
(a shuffle window), which a flat id file serves with two `pread`s and no per-record decoding or
decompression; the offsets are the index; nothing is memory-mapped, so a host's RSS holds only the
windows it packs (file pages stay in the kernel's page cache). Grain's packing and window shuffle are
iterators whose state must be checkpointed; atm keeps the batch a pure function of the step instead.

Stream (one per *reader*; `config.data.readers`, 0 = the number of processes when the run starts):
reader r owns the shards s with s % R == r and cuts its records (shard after shard) into windows of
`config.data.shuffle_window` records. Epoch e visits the windows in a permutation drawn from
(seed, r, e); inside a window the records are permuted by (seed, r, e, window) and packed greedily
exactly as `pipeline.Batcher` packs (`pipeline.greedy_rows`, `pipeline.pack_row`). Each step takes
batch_size / R consecutive rows of every reader's stream; global rows [r·B/R, (r+1)·B/R) are reader
r's. Process p of P runs readers p·R/P ... (p+1)·R/P - 1, so the global batch at `step` is a pure
function of (seed, step, R): a host reads only its own shards, and the readers together cover each
of their epochs exactly once.

Resume rule: a checkpoint records R. A run resumes bit-identically on any number of processes that
divides R (with `config.data.readers=0`, the saved R is taken over). Choose R as a multiple of every
host count the run may use (e.g. 64 on a pod that may shrink to 16 or 8 hosts). Another R is another
stream: the data position check refuses it.

Memory: a reader holds one window of ids and, per epoch, two small arrays over its windows (order and
row counts, sized with the window lengths read from .idx in groups, never the whole corpus).
"""
from __future__ import annotations

import bisect
import dataclasses
import hashlib
import json
import os
import sys
import time

import numpy as np

from atm.data.pipeline import StreamPosition, greedy_rows, pack_row, stream_fingerprint

FORMAT = "atm-prepared-v1"
MANIFEST = "manifest.json"
LENGTH_GROUP = 1 << 20  # records whose lengths are read at once when sizing an epoch


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}"


def file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _replace_atomically(path: str, write):
    """`write(f)` into PATH.tmp, then rename: a half-written file is never taken for a finished one."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_shard(directory: str, name: str, examples, dtype, job: str) -> dict:
    """Write one shard of `examples` (token arrays): ids, offsets, then its receipt; returns the receipt."""
    def blocks():
        for start in range(0, len(examples), 65536):
            block = [np.asarray(e) for e in examples[start:start + 65536]]
            yield np.concatenate(block), np.array([len(e) for e in block], np.int64)
    return write_shard_blocks(directory, name, blocks(), dtype, job)


def write_shard_blocks(directory: str, name: str, blocks, dtype, job: str) -> dict:
    """`write_shard` from an iterable of (ids back to back, record lengths) blocks: memory bounded by a block."""
    ids_path, idx_path = (os.path.join(directory, name + ext) for ext in (".ids", ".idx"))
    records, tokens = 0, 0
    with open(ids_path + ".tmp", "wb") as ids_file, open(idx_path + ".tmp", "wb") as idx_file:
        np.zeros(1, "<i8").tofile(idx_file)
        for ids, lengths in blocks:
            np.asarray(ids).astype(np.dtype(dtype).newbyteorder("<")).tofile(ids_file)
            (tokens + np.cumsum(lengths, dtype=np.int64)).astype("<i8").tofile(idx_file)
            records, tokens = records + len(lengths), tokens + int(np.sum(lengths))
        for f in (ids_file, idx_file):
            f.flush()
            os.fsync(f.fileno())
    os.replace(ids_path + ".tmp", ids_path)  # a half-written shard never has its final name
    os.replace(idx_path + ".tmp", idx_path)
    receipt = {"name": name, "records": records, "tokens": tokens, "job": job,
               "ids_bytes": os.path.getsize(ids_path), "idx_bytes": os.path.getsize(idx_path),
               "ids_sha256": file_digest(ids_path), "idx_sha256": file_digest(idx_path)}
    _replace_atomically(os.path.join(directory, name + ".json"),
                        lambda f: f.write(json.dumps(receipt, indent=1).encode()))
    return receipt


def finished_receipt(directory: str, name: str, job: str) -> dict | None:
    """The receipt of a finished shard of this job (files present with their recorded sizes), else None."""
    path = os.path.join(directory, name + ".json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        receipt = json.load(f)
    if receipt.get("job") != job:
        raise ValueError(f"{path} was prepared by another job (config, vocabulary or --num_shards differ); "
                         "prepare into a new --out directory")
    for ext in ("ids", "idx"):
        file = os.path.join(directory, f"{name}.{ext}")
        if not os.path.exists(file) or os.path.getsize(file) != receipt[f"{ext}_bytes"]:
            return None
    return receipt


# ------------------------------------------------------------------------------------- reading
def read_manifest(directory: str) -> dict:
    path = os.path.join(directory, MANIFEST)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"config.data.prepared_dir={directory!r} does not exist "
                                "(python -m atm.data prepare --config=... --out=DIR writes one)")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing: the corpus in {directory} was not prepared to the end; "
                                "rerun python -m atm.data prepare with the same --config and --out")
    with open(path) as f:
        manifest = json.load(f)
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    return manifest


class MalformedShard(ValueError):
    pass


class Shard:
    """One shard's records, read with pread (no memory map: RSS holds only what a caller keeps)."""

    def __init__(self, directory: str, receipt: dict, dtype: str):
        self.name, self.records, self.tokens = receipt["name"], receipt["records"], receipt["tokens"]
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.ids_path = os.path.join(directory, self.name + ".ids")
        self.idx_path = os.path.join(directory, self.name + ".idx")
        self._fds: tuple[int, int] | None = None
        self.check(receipt)

    def check(self, receipt: dict):
        """Cheap checks before training: both files exist, sizes agree with the receipt and the index ends."""
        for path, want in ((self.ids_path, self.tokens * self.dtype.itemsize),
                           (self.idx_path, (self.records + 1) * 8)):
            if not os.path.exists(path):
                raise MalformedShard(f"{path} is missing (shard {self.name} of the prepared corpus)")
            size = os.path.getsize(path)
            if size != want or size != receipt[("ids" if path == self.ids_path else "idx") + "_bytes"]:
                raise MalformedShard(f"{path}: {size} bytes, the manifest says {want}: the shard is truncated "
                                     "or corrupt; prepare it again")
        first, last = self.offsets(0, 0)[0], self.offsets(self.records, self.records)[0]
        if first != 0 or last != self.tokens:
            raise MalformedShard(f"{self.idx_path}: offsets run {first}..{last}, expected 0..{self.tokens}: corrupt")

    def _open(self) -> tuple[int, int]:
        if self._fds is None:
            self._fds = (os.open(self.ids_path, os.O_RDONLY), os.open(self.idx_path, os.O_RDONLY))
        return self._fds

    def offsets(self, lo: int, hi: int) -> np.ndarray:
        """idx[lo..hi] inclusive (hi - lo + 1 offsets)."""
        data = os.pread(self._open()[1], (hi - lo + 1) * 8, lo * 8)
        return np.frombuffer(data, "<i8").astype(np.int64)

    def read(self, lo: int, hi: int, vocab_size: int) -> list[np.ndarray]:
        """Records lo..hi-1 as int32 arrays; corrupt offsets or ids fail naming the file."""
        if hi <= lo:
            return []
        offsets = self.offsets(lo, hi)
        if np.any(np.diff(offsets) < 0) or offsets[0] < 0 or offsets[-1] > self.tokens:
            raise MalformedShard(f"{self.idx_path}: offsets of records {lo}..{hi - 1} are not increasing: corrupt")
        data = os.pread(self._open()[0], int(offsets[-1] - offsets[0]) * self.dtype.itemsize,
                        int(offsets[0]) * self.dtype.itemsize)
        ids = np.frombuffer(data, self.dtype).astype(np.int32)
        if ids.size and int(ids.max()) >= vocab_size:
            raise MalformedShard(f"{self.ids_path}: token id {int(ids.max())} in records {lo}..{hi - 1} is outside "
                                 f"the vocabulary ({vocab_size} pieces): corrupt")
        return np.split(ids, (offsets[1:-1] - offsets[0]).tolist())

    def close(self):
        if self._fds is not None:
            for fd in self._fds:
                os.close(fd)
            self._fds = None


def open_shards(directory: str, manifest: dict, split: str, wanted, skip_malformed: bool) -> tuple[dict, int]:
    """{shard index: Shard} for the wanted indices of `split`; a bad shard is an error naming its file,
    or with skip_malformed a skip whose records are counted (returned second)."""
    shards, skipped = {}, 0
    receipts = manifest["splits"][split]["shards"]
    for s in wanted:
        try:
            shards[s] = Shard(directory, receipts[s], manifest["dtype"])
        except MalformedShard as e:
            if not skip_malformed:
                raise
            print(f"WARNING: skipping a malformed shard ({e}); config.data.skip_malformed=True", flush=True)
            skipped += receipts[s]["records"]
    return shards, skipped


def read_split(directory: str, manifest: dict, split: str, vocab_size: int, skip_malformed: bool):
    """All records of a (small) split, e.g. eval, in memory."""
    n = len(manifest["splits"][split]["shards"])
    shards, skipped = open_shards(directory, manifest, split, range(n), skip_malformed)
    out = []
    for s in range(n):
        if s in shards:
            out.extend(shards[s].read(0, shards[s].records, vocab_size))
            shards[s].close()
    return out, skipped


def window_row_counts(lengths_WxK: np.ndarray, seq_len: int, pack: bool) -> np.ndarray:
    """Rows that `greedy_rows` makes of each window at once (lengths 0 pad short windows): the same
    greedy rule, stepped over all windows together, so sizing an epoch costs K vector steps."""
    if not pack:
        return (lengths_WxK > 0).sum(1)
    used = np.zeros(len(lengths_WxK), np.int64)
    rows = (lengths_WxK[:, 0] > 0).astype(np.int64)
    for n in lengths_WxK.T:
        new = (used + n > seq_len) & (used > 0)
        rows += new
        used = np.where(new, n, used + n)
    return rows


@dataclasses.dataclass
class ReaderStream:
    """The endless row stream of one reader over its shards (see the module docstring)."""
    shards: list  # Shard, in reader order
    seed: int
    reader: int
    seq_len: int
    pack: bool
    window: int
    vocab_size: int

    def __post_init__(self):
        self.records = sum(s.records for s in self.shards)
        if not self.records:
            raise ValueError(f"reader {self.reader} of the prepared corpus has no records")
        self._shard_starts = np.cumsum([0] + [s.records for s in self.shards])
        self.num_windows = -(-self.records // self.window)
        self._epoch_starts = [0]
        self._epochs: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # epoch → (window order, row starts)
        self._window_key, self._window = None, None

    def _records(self, lo: int, hi: int) -> list[np.ndarray]:
        out = []
        s = int(np.searchsorted(self._shard_starts, lo, "right")) - 1
        while lo < hi:
            start, end = int(self._shard_starts[s]), int(self._shard_starts[s + 1])
            take = min(hi, end)
            out.extend(self.shards[s].read(lo - start, take - start, self.vocab_size))
            lo, s = take, s + 1
        return out

    def _lengths(self, lo: int, hi: int) -> np.ndarray:
        """min(len + 2, seq_len) of records lo..hi-1, from the offsets alone."""
        parts = []
        s = int(np.searchsorted(self._shard_starts, lo, "right")) - 1
        while lo < hi:
            start, end = int(self._shard_starts[s]), int(self._shard_starts[s + 1])
            take = min(hi, end)
            parts.append(np.diff(self.shards[s].offsets(lo - start, take - start)))
            lo, s = take, s + 1
        return np.minimum(np.concatenate(parts) + 2, self.seq_len)

    def _window_order(self, epoch: int, w: int, size: int) -> np.ndarray:
        return np.random.default_rng([self.seed, self.reader, epoch, w]).permutation(size)

    def _epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        if epoch not in self._epochs:
            counts = np.zeros(self.num_windows, np.int64)
            per_group = max(1, LENGTH_GROUP // self.window)
            for g in range(0, self.num_windows, per_group):
                ws = range(g, min(self.num_windows, g + per_group))
                lo, hi = ws[0] * self.window, min(self.records, (ws[-1] + 1) * self.window)
                lengths = self._lengths(lo, hi)
                grid = np.zeros((len(ws), self.window), np.int64)
                for k, w in enumerate(ws):
                    part = lengths[(w - ws[0]) * self.window:(w - ws[0] + 1) * self.window]
                    grid[k, :len(part)] = part[self._window_order(epoch, w, len(part))]
                counts[g:g + len(ws)] = window_row_counts(grid, self.seq_len, self.pack)
            order = np.random.default_rng([self.seed, self.reader, epoch]).permutation(self.num_windows)
            starts = np.concatenate([[0], np.cumsum(counts[order])])
            if len(self._epochs) >= 2:
                self._epochs.pop(min(self._epochs))
            self._epochs[epoch] = (order, starts)
        return self._epochs[epoch]

    def _window_rows(self, epoch: int, w: int):
        if self._window_key != (epoch, w):
            lo, hi = w * self.window, min(self.records, (w + 1) * self.window)
            records = self._records(lo, hi)
            order = self._window_order(epoch, w, len(records))
            lengths = np.minimum(np.array([len(records[i]) for i in order]) + 2, self.seq_len)
            rows = [[records[order[j]] for j in row] for row in greedy_rows(lengths, self.seq_len, self.pack)]
            self._window_key, self._window = (epoch, w), rows
        return self._window

    def members(self, row: int) -> list[np.ndarray]:
        """The examples (token arrays) packed into row `row` of this reader's endless stream."""
        while self._epoch_starts[-1] <= row:
            e = len(self._epoch_starts) - 1
            self._epoch_starts.append(self._epoch_starts[-1] + int(self._epoch(e)[1][-1]))
        epoch = bisect.bisect_right(self._epoch_starts, row) - 1
        order, starts = self._epoch(epoch)
        within = row - self._epoch_starts[epoch]
        k = int(np.searchsorted(starts, within, "right")) - 1
        return self._window_rows(epoch, int(order[k]))[within - int(starts[k])]

    def epoch_rows(self, epoch: int) -> int:
        return int(self._epoch(epoch)[1][-1])


class PreparedBatcher(StreamPosition):
    """This process's rows of global batch `step` from a prepared corpus (interface of `pipeline.Batcher`)."""

    def __init__(self, directory: str, seq_len: int, batch_size: int, seed: int, pack: bool, vocab,
                 readers: int = 0, window: int = 4096, process_index: int = 0, process_count: int = 1,
                 whole_word_masking: bool = False, skip_malformed: bool = False):
        self.directory = os.path.abspath(directory)
        self.manifest = read_manifest(self.directory)
        self.seq_len, self.batch_size, self.seed, self.pack, self.window = seq_len, batch_size, seed, pack, window
        self.cls_id, self.sep_id, self.pad_id, self.vocab_size = vocab.cls_id, vocab.sep_id, vocab.pad_id, vocab.size
        self.starts = vocab.word_start_table() if whole_word_masking else None
        self.process_index, self.process_count = process_index, process_count
        self.auto_readers, self.skip_malformed = readers == 0, skip_malformed
        self.num_shards = len(self.manifest["splits"]["train"]["shards"])
        self.malformed_records = 0
        self._layout(readers or process_count)

    def _layout(self, readers: int):
        """Readers (and their shards) of this process for R = `readers`; errors name the config key."""
        if readers > self.num_shards:
            raise ValueError(f"config.data.readers={readers} exceeds the {self.num_shards} shards of "
                             f"{self.directory}; prepare it with --num_shards >= {readers}")
        if readers % self.process_count:
            raise ValueError(f"config.data.readers={readers} is not divisible by the {self.process_count} processes; "
                             "a run resumes on a process count that divides its number of readers")
        if self.batch_size % readers:
            raise ValueError(f"config.train.batch_size={self.batch_size} is not divisible by "
                             f"config.data.readers={readers}")
        self.readers = readers
        per_process = readers // self.process_count
        self.my_readers = list(range(self.process_index * per_process, (self.process_index + 1) * per_process))
        for stream in getattr(self, "streams", []):  # a layout taken over from a checkpoint replaces these
            for shard in stream.shards:
                shard.close()
        self.streams = []
        self.malformed_records = 0
        for r in self.my_readers:
            own = list(range(r, self.num_shards, readers))
            shards, skipped = open_shards(self.directory, self.manifest, "train", own, self.skip_malformed)
            self.malformed_records += skipped
            self.streams.append(ReaderStream([shards[s] for s in own if s in shards], self.seed, r, self.seq_len,
                                             self.pack, self.window, self.vocab_size))

    @property
    def local_batch_size(self) -> int:
        return self.batch_size // self.process_count

    @property
    def shard_files(self) -> list[str]:
        """The .ids files this process reads."""
        return [shard.ids_path for stream in self.streams for shard in stream.shards]

    def batch(self, step: int) -> dict[str, np.ndarray]:
        per_reader = self.batch_size // self.readers
        rows = []
        for stream in self.streams:
            for row in range(step * per_reader, (step + 1) * per_reader):
                examples = stream.members(row)
                starts = None if self.starts is None else [self.starts[e] for e in examples]
                rows.append(pack_row(examples, self.seq_len, self.cls_id, self.sep_id, self.pad_id, starts))
        return {name: np.stack([row[name] for row in rows]) for name in rows[0]}

    def _fingerprint(self, readers: int) -> str:
        return stream_fingerprint([FORMAT, self.manifest["corpus"], self.seq_len, self.batch_size, self.seed,
                                   self.pack, readers, self.window, self.starts is not None], [])

    def fingerprint(self) -> str:
        return self._fingerprint(self.readers)

    def state(self, next_step: int) -> dict:
        return {**super().state(next_step), "readers": self.readers}

    def check_state(self, state: dict, where: str):
        saved = state.get("readers")
        if self.auto_readers and saved and saved != self.readers and \
                state.get("fingerprint") == self._fingerprint(saved):
            print(f"data: the checkpoint was written with {saved} readers; keeping them on "
                  f"{self.process_count} process(es) (config.data.readers=0)", flush=True)
            self._layout(saved)
        super().check_state(state, where)


# ------------------------------------------------------------------------------------- prepare
_WORK: dict = {}  # the forked workers' view of the job: texts, vocabulary, output


def _worker_vocab():
    if "vocab" not in _WORK:
        from atm.data.vocab import load_vocabulary
        _WORK["vocab"] = load_vocabulary(_WORK["vocab_path"])
    return _WORK["vocab"]


def _prepare_shard(task: tuple[str, int, int]) -> dict:
    split, index, count = task
    name = shard_name(split, index, count)
    receipt = finished_receipt(_WORK["out"], name, _WORK["job"])
    if receipt is not None:
        return {**receipt, "skipped": True}
    texts = _WORK[split][index::count]
    examples = [np.asarray(ids, np.int32) for ids in _worker_vocab().encode_batch(texts)]
    return {**write_shard(_WORK["out"], name, examples, _WORK["dtype"], _WORK["job"]), "skipped": False}


def job_hash(data_config, num_shards: int, vocab_digest: str) -> str:
    keys = ("source", "files", "tasks", "data_dir", "skip_malformed", "replay_tasks", "replay_share",
            "spoken_share", "num_examples", "languages", "eval_fraction")
    settings = {k: data_config[k] for k in keys}
    return hashlib.sha256(json.dumps([FORMAT, settings, num_shards, vocab_digest], sort_keys=True).encode()).hexdigest()[:16]


def prepare(config, out: str, num_shards: int = 16, workers: int = 0, max_eval_rows: int = 10000,
            progress: bool = True) -> dict:
    """Tokenise `config`'s training text (rates, replay and spoken share applied) into `out`. Returns the manifest."""
    import multiprocessing
    import shutil

    from atm.data import sources
    from atm.data.vocab import SentencePieceVocabulary, load_vocabulary, train_sentencepiece

    data = config.data
    if data.source == "prepared":
        raise ValueError("config.data.source='prepared' reads a prepared corpus; prepare from a text source "
                         "(synthetic, text_files or tasks)")
    if num_shards < 1:
        raise ValueError(f"--num_shards={num_shards} must be >= 1")
    os.makedirs(out, exist_ok=True)
    start = time.perf_counter()
    rows, malformed = sources.load_texts(data)
    rows = [rows[i] for i in np.random.default_rng(1234).permutation(len(rows))]  # windows are random samples
    train_texts, eval_texts = sources.split_train_eval(sources.apply_spoken_share(rows, data.spoken_share),
                                                       data.eval_fraction)
    eval_texts = eval_texts[:max_eval_rows]
    vocab_path = os.path.join(out, "vocab.model")
    if data.vocab:
        given = load_vocabulary(data.vocab)
        if isinstance(given, SentencePieceVocabulary):
            if not os.path.exists(vocab_path):
                shutil.copyfile(data.vocab, vocab_path)
        else:
            vocab_path = os.path.abspath(data.vocab)  # a Hugging Face tokenizer directory: named, not copied
    elif not os.path.exists(vocab_path):
        train_sentencepiece(train_texts, data.vocab_size, os.path.join(out, "vocab"))
    vocab = load_vocabulary(vocab_path)
    digest = file_digest(vocab_path) if os.path.isfile(vocab_path) else hashlib.sha256(vocab_path.encode()).hexdigest()
    job = job_hash(data, num_shards, digest)
    dtype = "uint16" if vocab.size <= 65536 else "int32"
    tasks = [("train", i, num_shards) for i in range(num_shards)] + [("eval", 0, 1)]
    _WORK.clear()
    _WORK.update(train=train_texts, eval=eval_texts, out=out, job=job, dtype=dtype, vocab_path=vocab_path,
                 vocab=vocab)
    workers = workers or min(os.cpu_count() or 1, len(tasks))
    shards_start = time.perf_counter()
    receipts: dict[tuple[str, int], dict] = {}
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(tasks), desc=f"prepare {out}", unit="shard", file=sys.stderr)
    try:
        if workers > 1:
            pool = multiprocessing.get_context("fork").Pool(workers)
            results = pool.imap_unordered(_prepare_shard, tasks)
        else:
            pool, results = None, map(_prepare_shard, tasks)
        for receipt in results:
            split = receipt["name"].split("-")[0]
            receipts[(split, int(receipt["name"].split("-")[1]))] = receipt
            if bar is not None:
                bar.update(1)
                bar.set_postfix(tokens=sum(r["tokens"] for r in receipts.values()),
                                skipped=sum(r["skipped"] for r in receipts.values()))
        if pool is not None:
            pool.close()
            pool.join()
    finally:
        if bar is not None:
            bar.close()
        _WORK.clear()
    manifest = write_manifest(out, {"train": [receipts[("train", i)] for i in range(num_shards)],
                                    "eval": [receipts[("eval", 0)]]}, dtype, job,
                              "vocab.model" if vocab_path == os.path.join(out, "vocab.model") else vocab_path,
                              digest, vocab.size,
                              {"malformed_rows_skipped": malformed,
                               "data": {k: data[k] for k in ("source", "files", "tasks", "replay_tasks", "replay_share",
                                                             "spoken_share", "num_examples", "eval_fraction")}})
    elapsed, shard_s = time.perf_counter() - start, time.perf_counter() - shards_start
    written = [r for r in receipts.values() if not r["skipped"]]
    manifest["stats"] = {"seconds": round(elapsed, 2), "tokenise_seconds": round(shard_s, 2),
                         "tokenise_tokens_per_s": round(sum(r["tokens"] for r in written) / max(shard_s, 1e-9)),
                         "workers": workers, "shards_written": len(written),
                         "shards_skipped": len(receipts) - len(written),
                         "tokens_written": sum(r["tokens"] for r in written),
                         "tokens_per_s": round(sum(r["tokens"] for r in written) / max(elapsed, 1e-9))}
    return manifest


def write_manifest(out: str, shards_by_split: dict, dtype: str, job: str, vocab: str, vocab_digest: str,
                   vocab_size: int, extra: dict) -> dict:
    """manifest.json, written last: what marks the corpus finished."""
    splits = {}
    for split, receipts in shards_by_split.items():
        shards = [{k: v for k, v in r.items() if k != "skipped"} for r in receipts]
        splits[split] = {"records": sum(s["records"] for s in shards), "tokens": sum(s["tokens"] for s in shards),
                         "shards": shards}
    corpus = hashlib.sha256(json.dumps([splits[s]["shards"] for s in splits], sort_keys=True).encode()).hexdigest()[:16]
    manifest = {"format": FORMAT, "dtype": dtype, "job": job, "corpus": corpus, "vocab": vocab,
                "vocab_sha256": vocab_digest, "vocab_size": vocab_size, "malformed_rows_skipped": 0, **extra,
                "splits": splits}
    _replace_atomically(os.path.join(out, MANIFEST), lambda f: f.write(json.dumps(manifest, indent=1).encode()))
    return manifest


def vocabulary_path(directory: str, manifest: dict) -> str:
    v = manifest["vocab"]
    return v if os.path.isabs(v) else os.path.join(directory, v)


def verify(directory: str) -> list[str]:
    """Re-hash every shard against its receipt; returns the problems (empty when intact)."""
    manifest = read_manifest(directory)
    problems = []
    for split in manifest["splits"].values():
        for receipt in split["shards"]:
            for ext in ("ids", "idx"):
                path = os.path.join(directory, f"{receipt['name']}.{ext}")
                if not os.path.exists(path):
                    problems.append(f"{path}: missing")
                elif file_digest(path) != receipt[f"{ext}_sha256"]:
                    problems.append(f"{path}: sha256 differs from the manifest (corrupt)")
    return problems
