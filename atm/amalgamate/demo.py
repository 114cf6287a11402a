"""A generated intent data set for trying amalgamation without real data (the notebook and the tests):
six intents in two scenarios (travel_*, home_*), written as a BIO folder (every slot O)."""
from __future__ import annotations

import os
import random

CITIES = ["boston", "denver", "dallas", "atlanta", "seattle", "miami", "chicago", "phoenix"]
DAYS = ["monday", "tuesday", "friday", "sunday"]
TEMPLATES = {
    "travel_flight": ["show me flights from {a} to {b}", "i want to fly from {a} to {b} on {d}"],
    "travel_fare": ["how much is a ticket to {b}", "what is the cheapest fare from {a} to {b}"],
    "travel_hotel": ["book a hotel room in {b}", "find me a hotel in {b} for {d}"],
    "home_lights": ["turn off the lights in the kitchen", "switch the bedroom lights on"],
    "home_alarm": ["set an alarm for {d} morning", "wake me up at seven on {d}"],
    "home_music": ["play some jazz music", "put on my {d} playlist"],
}


def write_intent_folder(root, n_train: int = 480, n_eval: int = 120, seed: int = 0, shuffle_labels: bool = False):
    """train/dev/test of the six intents under `root` (a str or Path; returned as given);
    `shuffle_labels` permutes the train split's labels (its text unchanged)."""
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
        folder = os.path.join(str(root), split)
        os.makedirs(folder, exist_ok=True)
        for name, lines in (("seq.in", [" ".join(w) for w, _ in rows]), ("seq.out", [" ".join("O" for _ in w)
                                                                                   for w, _ in rows]),
                            ("label", labels)):
            with open(os.path.join(folder, name), "w") as f:
                f.write("\n".join(lines) + "\n")
    return root
