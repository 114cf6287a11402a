"""The batch pipeline: packing, determinism, process shards, whole-word ids, spoken share, real-data sources."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from atm.data import sources
from atm.data.pipeline import Batcher

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_batcher(examples, **kw):
    args = dict(seq_len=16, batch_size=8, seed=3, pack=True, cls_id=2, sep_id=3, pad_id=0)
    args.update(kw)
    return Batcher(examples, **args)


def random_examples(n=100, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(10, 99, rng.integers(1, 12)).astype(np.int32) for _ in range(n)]


def unpack(row_ids, row_segments):
    """The examples inside one packed row (without [CLS]/[SEP])."""
    out = []
    for s in range(1, row_segments.max() + 1):
        piece = row_ids[row_segments == s]
        assert piece[0] == 2 and piece[-1] == 3
        out.append(tuple(piece[1:-1]))
    return out


def test_packing_keeps_every_example_once_per_epoch():
    examples = random_examples()
    b = make_batcher(examples)
    seen = []
    step = 0
    while len(seen) < len(examples):
        batch = b.batch(step)
        for ids, seg, pos in zip(batch["input_ids"], batch["segment_ids"], batch["positions"]):
            seen.extend(unpack(ids, seg))
            for s in range(1, seg.max() + 1):  # positions restart in every segment
                np.testing.assert_array_equal(pos[seg == s], np.arange((seg == s).sum()))
            assert np.all(ids[seg == 0] == 0)
        step += 1
    assert sorted(seen[:len(examples)]) == sorted(tuple(e) for e in examples)
    assert step < len(examples) / 8  # packing put several examples per row


def test_batches_are_a_pure_function_of_seed_and_step():
    examples = random_examples()
    a, b = make_batcher(examples), make_batcher(examples)
    for step in (7, 0, 30, 7):  # any order, any instance: a resumed run sees the same batches
        for key in ("input_ids", "segment_ids", "positions"):
            np.testing.assert_array_equal(a.batch(step)[key], b.batch(step)[key])
    assert not np.array_equal(a.batch(0)["input_ids"], make_batcher(examples, seed=4).batch(0)["input_ids"])
    assert a.state(5) == {"next_step": 5, "fingerprint": a.fingerprint()}
    with pytest.raises(ValueError, match="another data stream"):
        make_batcher(examples[:50]).check_state(a.state(5), "checkpoint step 5")


def test_two_processes_split_the_data_without_overlap():
    examples = [np.array([100 + i], np.int32) for i in range(64)]  # distinct one-token examples
    shards = [make_batcher(examples, pack=False, process_index=p, process_count=2) for p in (0, 1)]
    seen = {0: [], 1: []}
    for step in range(64 // 8):  # one epoch
        for p, shard in enumerate(shards):
            batch = shard.batch(step)
            assert batch["input_ids"].shape == (4, 16)
            seen[p].extend(int(x) for x in batch["input_ids"][:, 1])
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == [100 + i for i in range(64)]
    whole = make_batcher(examples, pack=False)  # and the union equals the single-process batch
    np.testing.assert_array_equal(np.concatenate([s.batch(3)["input_ids"] for s in shards]),
                                  whole.batch(3)["input_ids"])


def test_word_ids_for_whole_word_masking():
    examples = [np.array([10, 11, 12, 13, 14], np.int32)]
    starts = [np.array([True, False, True, True, False])]
    b = make_batcher(examples, pack=False, batch_size=1, word_starts=starts)
    row = b.batch(0)
    np.testing.assert_array_equal(row["word_ids"][0, :7], [0, 1, 1, 2, 3, 3, 0])


def test_word_starts_split_unspaced_scripts_per_character():
    """A Chinese or Thai sentence has one "▁" at its start; its characters must still be words of their own."""
    from atm.data.vocab import starts_word

    assert [starts_word(p) for p in ["▁北", "京", "的", "▁เขา", "กิน", "の"]] == [True] * 6
    assert [starts_word(p) for p in ["ing", "ung", "한", "ی"]] == [False] * 4  # spaced scripts keep "▁" alone
    assert starts_word("Ġthe", "Ġ") and not starts_word("▁the", "Ġ")


def test_whole_word_masking_masks_words_whole():
    import jax
    import jax.numpy as jnp
    from atm.objectives.mlm import mask_tokens

    rng = np.random.default_rng(0)
    batch, length = 64, 64
    word_ids = np.sort(rng.integers(1, 20, (batch, length)), axis=1)  # words of 1-6 pieces
    ids = jnp.asarray(rng.integers(10, 500, (batch, length)), jnp.int32)
    out = mask_tokens(jax.random.key(0), ids, jnp.ones((batch, length), bool), num_slots=10, mask_rate=0.15,
                      mask_token_rate=0.8, random_token_rate=0.1, mask_id=4, random_low=5, vocab_size=500,
                      word_ids_BxL=jnp.asarray(word_ids))
    pos, w = np.asarray(out["masked_positions"]), np.asarray(out["masked_weights"]).astype(bool)
    whole, partial = 0, 0
    for r in range(batch):
        chosen = set(pos[r][w[r]])
        for word in set(word_ids[r][list(chosen)]):
            members = set(np.flatnonzero(word_ids[r] == word))
            whole += members <= chosen
            partial += not members <= chosen
    assert partial <= batch  # at most the last word of a row is cut by the token budget
    assert whole > 2 * partial


def test_spoken_share():
    rows = [("Set an alarm for 7 am, please!", "en")] * 2000
    out = sources.apply_spoken_share(rows, 0.7)
    spoken = sum(t == "set an alarm for seven am please" for t in out)
    assert abs(spoken / len(out) - 0.7) < 0.03
    assert out == sources.apply_spoken_share(rows, 0.7)  # deterministic


def test_missing_files_name_the_config_key(tmp_path):
    from atm.data.vocab import SentencePieceVocabulary
    with pytest.raises(FileNotFoundError, match="config.data.files"):
        sources.read_text_files(str(tmp_path / "nope*.txt"))
    with pytest.raises(FileNotFoundError, match="config.data.vocab"):
        SentencePieceVocabulary(str(tmp_path / "missing.model"))


def test_text_files_source_trains(tmp_path):
    from helpers import run_steps, tiny_config
    import jax
    from atm.data import synthetic
    (tmp_path / "en.txt").write_text("\n".join(synthetic.utterances(1500, seed=5, languages=("en",))))
    config = tiny_config(**{"data.source": "text_files", "data.files": str(tmp_path / "*.txt"), "train.steps": 6,
                            "optimizer.warmup_steps": 0})
    losses, _ = run_steps(config, str(tmp_path / "run"), jax.devices()[:1])
    assert losses[-1] < losses[0]


# ----------------------------------------------------------------------------- real data
def test_real_massive_text_source_counts(data_dir):
    config_rows, malformed = sources.load_texts(_data_config(data_dir, "massive_text_en_us"))
    assert len(config_rows) == 11514 and malformed == 0  # MASSIVE en-US train (SOURCE.md)


def test_real_mixture_rates_upsample_small_languages(data_dir):
    rows, _ = sources.load_texts(_data_config(data_dir, "massive_text", num_examples=6000))
    by_language = {}
    for _, language in rows:
        by_language[language] = by_language.get(language, 0) + 1
    assert sum(by_language.values()) == 6000
    from atm.data import tasks
    rates = tasks.mixture_rates("massive_text", data_dir)
    for name, rate in rates.items():
        language = tasks.get_spec(name).language
        assert abs(by_language[language] / 6000 - rate) < 0.002


def _data_config(data_dir, task, num_examples=0):
    from atm.config import default_config
    data = default_config("mlm").data
    data.update(source="tasks", tasks=task, data_dir=data_dir, num_examples=num_examples, skip_malformed=False)
    return data


def test_real_data_kill_and_resume_is_bit_identical(data_dir, tmp_path):
    """The core loop's SIGKILL/resume on real data files: the data position is in the checkpoint."""
    files = os.path.join(data_dir, "mlm_text", "wikiann_sentences", "sw.txt")
    args = ["--config=configs/tiny_mlm.py", "--config.data.source=text_files", f"--config.data.files={files}",
            "--config.train.steps=6", "--config.checkpoint.every=3", "--config.train.log_every=1",
            "--config.train.eval_every=3", "--config.train.eval_batches=1", "--config.data.seq_len=32",
            "--config.train.batch_size=8", "--config.data.whole_word_masking=True"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)

    def run(workdir, *extra):
        return subprocess.run([sys.executable, "-m", "atm.main", f"--workdir={workdir}", *args, *extra], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=600)

    assert run(tmp_path / "a").returncode == 0
    assert run(tmp_path / "b", "--config.train.kill_at_step=3").returncode == -9
    resumed = run(tmp_path / "b")
    assert resumed.returncode == 0 and "Resumed from checkpoint at step 3" in resumed.stdout
    losses = [[json.loads(x)["loss"] for x in open(tmp_path / d / "metrics.jsonl")] for d in ("a", "b")]
    assert len(losses[0]) == 6 and losses[0] == losses[1]


def test_export_writes_the_configs_training_text_for_the_vocab_cli(tmp_path):
    from atm.data import export
    from atm.data.vocab import main as vocab_main
    import configs.tiny_mlm as tiny

    config = tiny.get_config()
    config.data.num_examples = 400
    out = tmp_path / "corpus.txt"
    assert export.export(config, str(out)) == 400
    lines = out.read_text(encoding="utf-8").splitlines()
    assert {line.split("\t")[0] for line in lines} == {"en", "de", "fr", "es"}
    spoken = sum(line.split("\t")[1] == line.split("\t")[1].lower() and "?" not in line for line in lines)
    assert spoken >= 0.6 * len(lines)  # the config's 70% spoken share is applied
    assert vocab_main([f"--input={out}", "--vocab_size=300", f"--out={tmp_path / 'v'}"]) == 0
    assert (tmp_path / "v.model").exists()
