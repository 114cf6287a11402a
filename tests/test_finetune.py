"""Fine-tuning: joint intent + slots learns on a BIO folder the test writes; init_from copies the encoder."""
import os
import random

import jax
import numpy as np
import pytest

from atm import objectives, train
from helpers import apply_overrides, tiny_config

CITIES = ["boston", "denver", "new york", "san francisco", "dallas", "miami", "seattle", "atlanta"]
DAYS = ["monday", "tuesday", "friday", "sunday"]


def write_bio_folder(root, n_train=400, n_eval=80, seed=0):
    """An ATIS-like folder: flight / fare / weather intents with city and day slots."""
    rng = random.Random(seed)

    def example():
        intent = rng.choice(["flight", "airfare", "weather"])
        a, b, day = rng.choice(CITIES), rng.choice(CITIES), rng.choice(DAYS)
        if intent == "flight":
            parts = [("show me flights from", "O"), (a, "fromloc"), ("to", "O"), (b, "toloc"), ("on", "O"), (day, "day")]
        elif intent == "airfare":
            parts = [("how much is a ticket to", "O"), (b, "toloc"), ("from", "O"), (a, "fromloc")]
        else:
            parts = [("what is the weather in", "O"), (b, "city"), (day, "day")]
        words, tags = [], []
        for text, slot in parts:
            for i, w in enumerate(text.split()):
                words.append(w)
                tags.append("O" if slot == "O" else ("B-" if i == 0 else "I-") + slot)
        return words, tags, intent

    for split, n in (("train", n_train), ("dev", n_eval), ("test", n_eval)):
        os.makedirs(root / split)
        rows = [example() for _ in range(n)]
        (root / split / "seq.in").write_text("\n".join(" ".join(w) for w, _, _ in rows) + "\n")
        (root / split / "seq.out").write_text("\n".join(" ".join(t) + " " for _, t, _ in rows) + "\n")
        (root / split / "label").write_text("\n".join(i for _, _, i in rows) + "\n")
    return root


def finetune_config(folder, **overrides):
    import configs.finetune.atis as atis
    c = atis.get_config()
    c.model.update(num_layers=2, hidden_size=64, num_heads=4, ffn_size=128, vocab_size=200)
    c.finetune.bio_folder = str(folder)
    c.finetune.eval_split = "validation"
    c.data.vocab_size = 200
    c.data.seq_len = 24
    c.train.update(steps=120, batch_size=16, log_every=40, eval_every=120)
    c.optimizer.update(learning_rate=3e-3, warmup_steps=10)
    c.checkpoint.every = 120
    return apply_overrides(c, overrides)


def test_joint_intent_and_slots_learn_on_any_bio_folder(tmp_path):
    folder = write_bio_folder(tmp_path / "mini_atis")
    summary = train.train_and_evaluate(finetune_config(folder), str(tmp_path / "run"))
    assert summary["eval_accuracy"] > 0.95, summary
    assert summary["eval_slot_f1"] > 0.9, summary
    assert summary["eval_semer"] < 0.2, summary
    assert summary["eval_frame_exact_match"] > 0.8, summary


def test_narrowbert_slots_learn_on_the_labelled_tokens_only(tmp_path):
    """NarrowBERT with S = [CLS] + each word's first subword (finetune.token_query_slots) learns intents and slots."""
    folder = write_bio_folder(tmp_path / "mini_atis")
    config = finetune_config(folder, **{"model.arrangement": "1sf:1sf", "finetune.token_query_slots": 12})
    summary = train.train_and_evaluate(config, str(tmp_path / "run"))
    assert summary["eval_accuracy"] > 0.9, summary
    assert summary["eval_slot_f1"] > 0.85, summary
    # atm.evaluate scores every position (another task's rows may not fit the slots): the same figures.
    from atm import evaluate
    row = evaluate.evaluate_run(str(tmp_path / "run"), split="validation", bio_folder=str(folder))["rows"][0]
    assert row["accuracy"] == pytest.approx(summary["eval_accuracy"], abs=1e-6)
    assert row["slot_f1"] == pytest.approx(summary["eval_slot_f1"], abs=1e-6)


def test_token_query_slots_too_few_for_a_row_is_named(tmp_path):
    folder = write_bio_folder(tmp_path / "mini_atis", n_train=40, n_eval=10)
    config = finetune_config(folder, **{"finetune.token_query_slots": 6})
    with pytest.raises(ValueError, match=r"token_query_slots=6: split 'train', row \d+ has \d+ words .*at least \d+"):
        objectives.get("finetune").build_data(config, str(tmp_path / "run"))


def test_init_from_copies_the_pretrained_encoder_and_keeps_fresh_heads(tmp_path):
    mlm = tiny_config(**{"train.steps": 2, "checkpoint.every": 2, "train.eval_every": 2})
    train.train_and_evaluate(mlm, str(tmp_path / "mlm"))
    folder = write_bio_folder(tmp_path / "mini_atis", n_train=40, n_eval=16)
    config = finetune_config(folder, **{"init_from": str(tmp_path / "mlm"),
                                        "data.vocab": str(tmp_path / "mlm" / "vocab.model")})
    config.model.update(mlm.model.to_dict())
    trainer = train.build(config, str(tmp_path / "ft"), devices=jax.devices()[:1]).trainer
    fresh = trainer.init_state()
    state = train.initialize_from(trainer, fresh, config.init_from)
    from atm.checkpoint import Checkpointer
    pretrained = Checkpointer(str(tmp_path / "mlm" / "checkpoints"), 1, False).restore_params(2)
    for a, b in zip(jax.tree_util.tree_leaves(jax.device_get(state.params["encoder"])),
                    jax.tree_util.tree_leaves(pretrained["encoder"])):
        np.testing.assert_array_equal(a, b)
    assert "intent" in state.params and "mlm_head" not in state.params

    config.model.hidden_size = 32  # another shape: a clear error naming the tensor
    config.model.num_heads = 2
    trainer = train.build(config, str(tmp_path / "ft"), devices=jax.devices()[:1]).trainer
    with pytest.raises(ValueError, match=r"config.init_from: .*encoder.*shape"):
        train.initialize_from(trainer, trainer.init_state(), config.init_from)


def test_a_run_keeps_its_vocabulary_and_init_from_inherits_it(tmp_path):
    import filecmp
    folder = write_bio_folder(tmp_path / "mini_atis", n_train=40, n_eval=16)
    first = finetune_config(folder, **{"train.steps": 2, "checkpoint.every": 2, "train.eval_every": 2})
    train.train_and_evaluate(first, str(tmp_path / "a"))  # trains its vocabulary into a/vocab.model
    second = finetune_config(folder, **{"data.vocab": str(tmp_path / "a" / "vocab.model")})
    objectives.get("finetune").build_data(second, str(tmp_path / "b"))  # a given vocabulary is copied in
    assert filecmp.cmp(tmp_path / "a" / "vocab.model", tmp_path / "b" / "vocab.model", shallow=False)

    child = finetune_config(folder, **{"init_from": str(tmp_path / "a")})
    train.inherit_vocab(child)
    assert child.data.vocab == str(tmp_path / "a" / "vocab.model")
    other = finetune_config(folder, **{"train.steps": 2, "data.vocab_size": 150})
    objectives.get("finetune").build_data(other, str(tmp_path / "c"))  # another vocabulary
    with pytest.raises(ValueError, match=r"is not the vocabulary of config.init_from"):
        train.inherit_vocab(finetune_config(folder, **{"init_from": str(tmp_path / "a"),
                                                       "data.vocab": str(tmp_path / "c" / "vocab.model")}))
    with pytest.raises(ValueError, match=r"differs from the vocabulary this run directory was started with"):
        objectives.get("finetune").build_data(
            finetune_config(folder, **{"data.vocab": str(tmp_path / "c" / "vocab.model")}), str(tmp_path / "a"))


def test_malformed_bio_row_names_file_and_line(tmp_path):
    from atm.objectives.finetune import FineTune
    folder = write_bio_folder(tmp_path / "bad", n_train=20, n_eval=5)
    lines = (folder / "train" / "seq.out").read_text().splitlines()
    lines[6] = lines[6] + " O"
    (folder / "train" / "seq.out").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"train/seq.out:7: field .seq.out.: 8 tags for the 7 words"):
        FineTune.build_data(finetune_config(folder), str(tmp_path / "w"))
    config = finetune_config(folder, **{"data.skip_malformed": True})
    _, train_data, _, stats = FineTune.build_data(config, str(tmp_path / "w2"))
    assert stats["data_rows"] == 19


def test_evaluate_cli_restores_a_run_and_reports(tmp_path):
    import json
    import subprocess
    import sys
    folder = write_bio_folder(tmp_path / "mini_atis", n_train=60, n_eval=20)
    train.train_and_evaluate(finetune_config(folder, **{"train.steps": 10, "checkpoint.every": 10,
                                                        "train.eval_every": 10}), str(tmp_path / "run"))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    out = subprocess.run([sys.executable, "-m", "atm.evaluate", f"--workdir={tmp_path / 'run'}", "--split=test"],
                         cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "slot_f1" in out.stdout and "semer" in out.stdout
    result = json.loads((tmp_path / "run" / "eval_mini_atis_test.json").read_text())
    assert result["rows"] == 20 and 0.0 <= result["slot_f1"] <= 1.0 and result["step"] == 10


def test_single_split_tasks_are_split_by_the_seeded_holdout_rule(data_dir, tmp_path):
    """XNLI has only dev here: 'train' and 'validation' are disjoint parts of it, the same every time."""
    from atm.data import labelled
    import configs.finetune.atis as atis

    config = atis.get_config()
    config.finetune.update(task="xnli_de", bio_folder="", eval_split="validation")
    config.data.data_dir = data_dir
    raws = lambda split: list(labelled._raw_rows(config.finetune, split, data_dir, False)[0])  # noqa: E731
    train_rows, eval_rows = raws("train"), raws("validation")
    assert len(train_rows) + len(eval_rows) == 2490  # XNLI dev rows per language (SOURCE.md)
    assert abs(len(eval_rows) / 2490 - 0.2) < 0.03
    key = lambda r: (r["premise"], r["hypothesis"])  # noqa: E731
    assert not {key(r) for r in train_rows} & {key(r) for r in eval_rows}
    assert [key(r) for r in raws("validation")] == [key(r) for r in eval_rows]

    from atm.objectives.finetune import FineTune
    config.data.seq_len = 64
    _, train_data, eval_data, stats = FineTune.build_data(config, str(tmp_path))
    batch = train_data.batch(0)
    assert stats["data_rows"] == len(train_rows) and stats["data_eval_rows"] == len(eval_rows)
    assert (batch["token_types"] == 1).any()  # premise and hypothesis are segments A and B
    assert set(batch["label"].tolist()) <= {0, 1, 2}


def test_evaluate_a_mixture_gives_one_row_per_language(data_dir, tmp_path):
    """An XNLI run trained on en is scored on the held-out part of each of the 15 languages."""
    from atm import evaluate
    import configs.finetune.atis as atis

    config = atis.get_config()
    config.model.update(num_layers=1, hidden_size=32, num_heads=2, ffn_size=64, vocab_size=300)
    config.finetune.update(task="xnli_en", bio_folder="", eval_split="validation")
    config.data.update(data_dir=data_dir, vocab_size=300, seq_len=32)
    config.train.update(steps=4, batch_size=8, eval_every=4, eval_batches=1)
    config.checkpoint.every = 4
    train.train_and_evaluate(config, str(tmp_path / "run"))
    result = evaluate.evaluate_run(str(tmp_path / "run"), "xnli", "validation")
    rows = result["rows"]
    assert [r["task"] for r in rows] == [f"xnli_{x}" for x in
                                         "ar bg de el en es fr hi ru sw th tr ur vi zh".split()]
    # The holdout rule picks the same row indices in every language (XNLI dev is parallel).
    assert len({r["rows"] for r in rows}) == 1 and 450 < rows[0]["rows"] < 550
    assert abs(result["mean"]["accuracy"] - np.mean([r["accuracy"] for r in rows])) < 1e-12
    table = evaluate.format_table(result)
    assert table.count("\n") == 15 + 2 and "| mean |" in table
    assert (tmp_path / "run" / "eval_xnli_validation.json").exists()
