"""MUKA amalgamation (atm/objectives/amalgamate.py): the maths on hand-computed cases, Monte-Carlo passes
with dropout on, label subsets, and a miniature run where two teachers on disjoint label halves (one with
its own vocabulary) make a student over the union without a gold label."""
import os
import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from atm import train
from atm.data import labelled
from atm.objectives import amalgamate as am
from helpers import apply_overrides

CITIES = ["boston", "denver", "dallas", "atlanta", "seattle", "miami", "chicago", "phoenix"]
DAYS = ["monday", "tuesday", "friday", "sunday"]
TEMPLATES = {  # six intents, two "scenarios" (travel_*, home_*)
    "travel_flight": ["show me flights from {a} to {b}", "i want to fly from {a} to {b} on {d}"],
    "travel_fare": ["how much is a ticket to {b}", "what is the cheapest fare from {a} to {b}"],
    "travel_hotel": ["book a hotel room in {b}", "find me a hotel in {b} for {d}"],
    "home_lights": ["turn off the lights in the kitchen", "switch the bedroom lights on"],
    "home_alarm": ["set an alarm for {d} morning", "wake me up at seven on {d}"],
    "home_music": ["play some jazz music", "put on my {d} playlist"],
}


def write_intent_folder(root, n_train=480, n_eval=120, seed=0, shuffle_labels=False):
    """A BIO folder (slots all O) with the six intents above; shuffle_labels permutes the train labels."""
    rng = random.Random(seed)
    for split, n in (("train", n_train), ("dev", n_eval), ("test", n_eval)):
        rows = []
        for _ in range(n):
            intent = rng.choice(sorted(TEMPLATES))
            text = rng.choice(TEMPLATES[intent]).format(a=rng.choice(CITIES), b=rng.choice(CITIES), d=rng.choice(DAYS))
            rows.append((text.split(), intent))
        labels = [i for _, i in rows]
        if shuffle_labels and split == "train":
            random.Random(99).shuffle(labels)
        os.makedirs(root / split, exist_ok=True)
        (root / split / "seq.in").write_text("\n".join(" ".join(w) for w, _ in rows) + "\n")
        (root / split / "seq.out").write_text("\n".join(" ".join("O" for _ in w) for w, _ in rows) + "\n")
        (root / split / "label").write_text("\n".join(labels) + "\n")
    return root


def teacher_config(folder, subset, **overrides):
    import configs.muka.teacher as teacher
    c = teacher.get_config()
    c.model.update(num_layers=2, hidden_size=64, num_heads=4, ffn_size=128, vocab_size=200, max_positions=64,
                   hidden_dropout=0.1)
    c.finetune.update(task="", bio_folder=str(folder), label_subset=subset, eval_split="validation")
    c.data.update(vocab_size=200, seq_len=24)
    c.train.update(steps=100, batch_size=16, log_every=50, eval_every=100, eval_batches=-1)
    c.optimizer.update(learning_rate=3e-3, warmup_steps=10)
    c.checkpoint.every = 100
    return apply_overrides(c, overrides)


def student_config(teachers, **overrides):
    import configs.muka.amalgamate as amalgamate
    c = amalgamate.get_config()
    c.model.update(num_layers=2, hidden_size=64, num_heads=4, ffn_size=128, vocab_size=200, max_positions=64)
    c.amalgamate.update(teachers=teachers, mc_passes=4)
    c.data.update(vocab_size=200, seq_len=24)
    c.train.update(steps=150, batch_size=16, log_every=25, eval_every=150, eval_batches=-1)
    c.optimizer.update(learning_rate=3e-3, warmup_steps=10)
    c.checkpoint.every = 150
    return apply_overrides(c, overrides)


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """Two teachers on the two halves of the six intents; the second with its own, smaller vocabulary."""
    root = tmp_path_factory.mktemp("muka")
    folder = write_intent_folder(root / "intents")
    t1, t2 = str(root / "t1"), str(root / "t2")
    s1 = train.train_and_evaluate(teacher_config(folder, "part:1/2"), t1)
    s2 = train.train_and_evaluate(teacher_config(folder, "part:2/2", **{"data.vocab_size": 150,
                                                                        "model.vocab_size": 150}), t2)
    return {"root": root, "folder": folder, "t1": t1, "t2": t2, "summaries": (s1, s2)}
