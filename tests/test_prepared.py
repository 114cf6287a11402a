"""Prepared corpora (atm/data/prepared.py): prepare, per-host reading, exact resume, bad shards, multi-process."""
import collections
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from atm.data import prepared
from atm.data.__main__ import main as data_main
from atm.data.pipeline import greedy_rows
from atm.data.vocab import load_vocabulary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--config.data.num_examples=2000", "--config.data.vocab_size=500"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """configs/tiny_mlm.py's text (2000 rows, 70% spoken) in 4 shards, prepared by the CLI with 2 worker processes."""
    out = str(tmp_path_factory.mktemp("prepared") / "corpus")
    done = subprocess.run([sys.executable, "-m", "atm.data", "prepare", "--config=configs/tiny_mlm.py", f"--out={out}",
                           "--num_shards=4", "--workers=2", *SMALL], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "4/5" in done.stderr  # the progress bar counts shards (4 train + 1 eval)
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["shards_written"] == 5 and summary["records"] == 1960  # 2% held out for eval
    return out


def batcher(directory, **kw):
    args = dict(seq_len=32, batch_size=16, seed=3, pack=True, window=100,
                vocab=load_vocabulary(os.path.join(directory, "vocab.model")))
    args.update(kw)
    return prepared.PreparedBatcher(directory, **args)


def all_records(directory, shards):
    manifest = prepared.read_manifest(directory)
    opened, _ = prepared.open_shards(directory, manifest, "train", shards, False)
    return [tuple(r) for s in shards for r in opened[s].read(0, opened[s].records, 1 << 16)]


def unpack(ids, segments):
    return [tuple(ids[segments == s][1:-1]) for s in range(1, segments.max() + 1)]


def test_prepared_records_are_the_configs_tokenised_text(corpus):
    """The shards hold exactly the tokenised training rows of the config (spoken share applied), round robin."""
    from atm.data import sources
    from configs import tiny_mlm

    config = tiny_mlm.get_config()
    config.data.update(num_examples=2000, vocab_size=500)
    rows, _ = sources.load_texts(config.data)
    rows = [rows[i] for i in np.random.default_rng(1234).permutation(len(rows))]
    train, held_out = sources.split_train_eval(sources.apply_spoken_share(rows, 0.7), 0.02)
    vocab = load_vocabulary(os.path.join(corpus, "vocab.model"))
    want = [tuple(ids) for ids in vocab.encode_batch(train)]
    for s in range(4):
        assert all_records(corpus, [s]) == want[s::4]
    manifest = prepared.read_manifest(corpus)
    assert manifest["splits"]["eval"]["records"] == len(held_out) == 40
    assert prepared.verify(corpus) == []


def test_rerun_skips_finished_shards_and_redoes_a_half_written_one(corpus, tmp_path):
    copy = str(tmp_path / "copy")
    shutil.copytree(corpus, copy)
    before = open(os.path.join(copy, "train-00002-of-00004.ids"), "rb").read()
    os.remove(os.path.join(copy, "train-00002-of-00004.json"))  # killed before its receipt was written
    with open(os.path.join(copy, "train-00002-of-00004.ids"), "r+b") as f:
        f.truncate(100)
    manifest = prepared.read_manifest(copy)
    rerun = prepared.prepare(_config(), copy, num_shards=4, workers=1, progress=False)
    assert rerun["stats"]["shards_skipped"] == 4 and rerun["stats"]["shards_written"] == 1
    assert open(os.path.join(copy, "train-00002-of-00004.ids"), "rb").read() == before
    assert rerun["corpus"] == manifest["corpus"]
    with pytest.raises(ValueError, match="prepared by another job"):
        prepared.prepare(_config(), copy, num_shards=8, workers=1, progress=False)


def _config():
    from atm.data.export import load_config
    return load_config("configs/tiny_mlm.py", SMALL)


def test_window_row_counts_equal_greedy_packing():
    rng = np.random.default_rng(0)
    lengths = np.minimum(rng.integers(3, 40, (50, 64)), 32)
    lengths[7, 40:] = 0  # a short last window
    counts = prepared.window_row_counts(lengths, 32, True)
    assert counts.tolist() == [len(greedy_rows(row[row > 0], 32, True)) for row in lengths]
    assert prepared.window_row_counts(lengths, 32, False).tolist() == (lengths > 0).sum(1).tolist()


def test_hosts_read_disjoint_shards_cover_each_epoch_and_equal_one_process(corpus):
    one = batcher(corpus, readers=2)
    hosts = [batcher(corpus, process_index=p, process_count=2) for p in (0, 1)]
    assert hosts[0].readers == 2 and not set(hosts[0].shard_files) & set(hosts[1].shard_files)
    assert sorted(hosts[0].shard_files + hosts[1].shard_files) == sorted(one.shard_files)
    for step in (0, 7, 60, 3):  # any order: the global batch is a pure function of (seed, step, readers)
        whole = one.batch(step)
        for key in whole:
            np.testing.assert_array_equal(whole[key], np.concatenate([h.batch(step)[key] for h in hosts]))
    for p, host in enumerate(hosts):  # each reader's epoch holds each of its records exactly once
        stream = host.streams[0]
        seen = [tuple(e) for r in range(stream.epoch_rows(0)) for e in stream.members(r)]
        assert collections.Counter(seen) == collections.Counter(all_records(corpus, [p, p + 2]))
    # rows of steps are consecutive rows of each reader's stream: one epoch of reader 0 through batch()
    rows = -(-hosts[0].streams[0].epoch_rows(0) // 8)
    got = []
    for step in range(rows):
        b = hosts[0].batch(step)
        got += [x for ids, seg in zip(b["input_ids"], b["segment_ids"]) for x in unpack(ids, seg)]
    want = [r[:30] for r in all_records(corpus, [0, 2])]  # rows cut each example to seq_len - 2 tokens
    assert collections.Counter(got[:len(want)]) == collections.Counter(want)
    assert not np.array_equal(one.batch(0)["input_ids"], batcher(corpus, readers=2, seed=4).batch(0)["input_ids"])


def test_resume_rule_keeps_the_saved_readers_on_fewer_processes(corpus):
    two = batcher(corpus, process_index=1, process_count=2)
    state = two.state(9)
    assert state["readers"] == 2
    single = batcher(corpus)  # readers=0 on 1 process: 1 reader until the checkpoint says 2
    assert single.readers == 1
    single.check_state(state, "checkpoint step 9")
    assert single.readers == 2
    np.testing.assert_array_equal(single.batch(9)["input_ids"][8:], two.batch(9)["input_ids"])
    with pytest.raises(ValueError, match="another data stream"):
        batcher(corpus, readers=4).check_state(state, "checkpoint step 9")  # an explicit other R is refused
    with pytest.raises(ValueError, match="config.data.readers=2 is not divisible by the 3 processes"):
        batcher(corpus, readers=2, process_count=3)
    with pytest.raises(ValueError, match="config.data.readers=8 exceeds the 4 shards"):
        batcher(corpus, readers=8)
    with pytest.raises(ValueError, match="batch_size=15 is not divisible by config.data.readers=2"):
        batcher(corpus, readers=2, batch_size=15)


def test_a_bad_shard_is_named_before_training_or_skipped_and_counted(corpus, tmp_path):
    copy = str(tmp_path / "bad")
    shutil.copytree(corpus, copy)
    ids = os.path.join(copy, "train-00001-of-00004.ids")
    with open(ids, "r+b") as f:
        f.truncate(os.path.getsize(ids) - 2)
    with pytest.raises(ValueError, match="train-00001-of-00004.ids: .* truncated or corrupt"):
        batcher(copy, readers=2)
    skipping = batcher(copy, readers=2, skip_malformed=True)
    assert skipping.malformed_records == 490 and len(skipping.streams[1].shards) == 1
    skipping.batch(0)
    shutil.copyfile(os.path.join(corpus, "train-00001-of-00004.ids"), ids)
    os.remove(os.path.join(copy, "train-00003-of-00004.idx"))
    with pytest.raises(ValueError, match="train-00003-of-00004.idx is missing"):
        batcher(copy, process_index=1, process_count=2)
    batcher(copy, process_index=0, process_count=2)  # host 0 never opens host 1's shards
    # flipped bytes keep the size: the id range check names the file when its window is read
    shutil.rmtree(copy)
    shutil.copytree(corpus, copy)
    with open(os.path.join(copy, "train-00000-of-00004.ids"), "r+b") as f:
        f.write(b"\xff" * 64)
    with pytest.raises(ValueError, match="train-00000-of-00004.ids: token id 65535 .* outside the vocabulary"):
        batcher(copy, readers=1, window=2000).batch(0)  # one window: all records
    assert data_main(["verify", copy]) == 1
    os.remove(os.path.join(copy, "manifest.json"))
    with pytest.raises(FileNotFoundError, match="manifest.json is missing"):
        batcher(copy)


def test_prepared_mixture_with_replay_holds_the_in_memory_rows(data_dir, tmp_path):
    """Temperature-rated mixtures and stage-2 replay are applied when preparing: the prepared records
    are exactly the rows the in-memory `tasks` source trains on, tokenised."""
    from atm.data import sources
    from atm.data.export import load_config

    overrides = [f"--config.data.data_dir={data_dir}", "--config.data.num_examples=3000",
                 "--config.data.replay_tasks=xnli", "--config.data.replay_share=0.25",
                 "--config.data.vocab_size=1200", "--config.data.eval_fraction=0.0"]
    config = load_config("configs/atm_stage2_indomain.py:mini", overrides)
    out = str(tmp_path / "stage2")
    manifest = prepared.prepare(config, out, num_shards=2, workers=1, progress=False)
    rows, _ = sources.load_texts(config.data)
    vocab = load_vocabulary(os.path.join(out, "vocab.model"))
    want = collections.Counter(tuple(x) for x in vocab.encode_batch([t for t, _ in rows]))
    assert collections.Counter(all_records(out, [0, 1])) == want
    assert manifest["splits"]["train"]["records"] == 3000 and manifest["data"]["replay_share"] == 0.25


# ------------------------------------------------------------------ 2 processes x 4 devices (gloo)
ARGS = ["--config=configs/tiny_mlm.py", "--config.model.vocab_size=500", "--config.data.source=prepared",
        "--config.data.seq_len=32", "--config.train.batch_size=16", "--config.train.steps=6",
        "--config.train.log_every=1", "--config.checkpoint.every=1", "--config.train.eval_every=6",
        "--config.train.eval_batches=1", "--config.optimizer.warmup_steps=0", "--config.mesh.data=4",
        "--config.mesh.fsdp=2", "--config.data.shuffle_window=200"]


def _losses(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return np.array([json.loads(line)["loss"] for line in f])


def _why(done) -> str:
    """The lines of a failed launch that say why (fatal errors, exceptions), not its last 3000 characters."""
    lines = (done.stdout + done.stderr).splitlines()
    return "\n".join(x for x in lines if any(k in x for k in ("Error", "F0000", "] F1", "Traceback", "exited")))[-4000:]


def _two_processes(workdir, corpus, *extra):
    env = dict(os.environ, PYTHON=sys.executable, ATM_LOCAL_DEVICES="4")
    return subprocess.run(["bash", "launch/local.sh", "2", "--", *ARGS, f"--config.data.prepared_dir={corpus}",
                           f"--workdir={workdir}", *extra], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


def _one_process(workdir, corpus, *extra):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", "atm.main", *ARGS, f"--config.data.prepared_dir={corpus}",
                           f"--workdir={workdir}", *extra], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.heavy  # minutes: a killed subprocess and its rerun; the loop's resume is in test_resume
def test_two_processes_sigkill_resume_is_bit_identical_and_one_process_continues(corpus, tmp_path):
    """2 processes x 4 devices read disjoint shards (2 readers). Killed (SIGKILL) mid-epoch at step 2 and
    rerun on 2 processes: steps 3-4 are bit-identical to the uninterrupted run; killed again at 4 and
    rerun on 1 process x 8 devices (the saved 2 readers kept, the documented rule): steps 5-6 are the
    uninterrupted run's losses (to float reduction order, 1e-6)."""
    reference = tmp_path / "reference"
    done = _two_processes(reference, corpus)
    assert done.returncode == 0, _why(done)
    losses = _losses(reference)
    assert len(losses) == 6 and losses[-1] < losses[0]

    run = tmp_path / "killed"
    first = _two_processes(run, corpus, "--config.train.kill_at_step=2")
    assert first.returncode != 0 and "exited with code 137" in first.stderr, _why(first)
    second = _two_processes(run, corpus, "--config.train.kill_at_step=4")
    assert "[p0] Resumed from checkpoint at step 2" in second.stdout, _why(second)
    np.testing.assert_array_equal(_losses(run), losses[:4])
    third = _one_process(run, corpus)
    assert third.returncode == 0, _why(third)
    assert "Resumed from checkpoint at step 4" in third.stdout
    assert "checkpoint was written with 2 readers; keeping them on 1 process(es)" in third.stdout
    np.testing.assert_allclose(_losses(run), losses, rtol=1e-6)


def test_build_from_a_prepared_corpus_uses_its_vocabulary_and_eval_split(corpus, tmp_path):
    from atm import config as atm_config
    from atm.data import sources
    from helpers import tiny_config

    config = tiny_config(**{"data.source": "prepared", "data.prepared_dir": "", "data.whole_word_masking": True})
    with pytest.raises(ValueError, match="needs config.data.prepared_dir"):
        atm_config.validate(config)
    config.data.prepared_dir = corpus
    vocab, train, evaluation, stats = sources.build(config, str(tmp_path / "run"))
    assert open(tmp_path / "run" / "vocab.model", "rb").read() == open(os.path.join(corpus, "vocab.model"), "rb").read()
    assert stats == {"data_rows": 2000, "data_malformed_rows": 0}
    assert len(evaluation.examples) == 40 and train.readers == 1
    batch = train.batch(0)
    assert batch["input_ids"].shape == (16, 32) and batch["word_ids"].max() > 0
    config.data.vocab = str(tmp_path / "run" / "vocab.model")  # the same model elsewhere is accepted
    sources.build(config, str(tmp_path / "run"))
    other = tmp_path / "other.model"
    other.write_bytes(b"not this vocabulary")
    config.data.vocab = str(other)
    with pytest.raises(ValueError, match="is not the vocabulary .* was prepared with"):
        sources.build(config, str(tmp_path / "run2"))
