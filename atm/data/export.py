"""`python -m atm.data export --config=configs/X.py --out=FILE`: a config's training text, one row a line.

Lines are `LANG<TAB>text` (the convention `python -m atm.data.vocab` reads), after the config's
task rates and spoken-form share, so a vocabulary can be trained on exactly the corpus a run
trains on:

    python -m atm.data export --config=configs/atm_stage1_public.py --out=workdirs/vocab/stage1.txt
    python -m atm.data.vocab --input=workdirs/vocab/stage1.txt --vocab_size=8000 --out=workdirs/vocab/stage1
"""
from __future__ import annotations

import importlib.util
import os


def load_config(path: str, overrides=()):
    """`configs/X.py[:arg]` with `--config.a.b=v` overrides (typed as the value they replace), validated."""
    from atm import config as atm_config

    path, _, arg = path.partition(":")
    spec = importlib.util.spec_from_file_location("atm_user_config", path)
    if spec is None or not os.path.exists(path):
        raise FileNotFoundError(f"--config: {path} does not exist")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(arg) if arg else module.get_config()
    for item in overrides:
        key, eq, text = item.removeprefix("--config.").partition("=")
        node, *parents = config, *key.split(".")[:-1]
        for part in parents:
            node = node[part] if part in node else None
            if node is None:
                break
        leaf = key.split(".")[-1]
        if not eq or node is None or leaf not in node:
            raise ValueError(f"--config.{key}: not a config key (or no =value)")
        old = node[leaf]
        if isinstance(old, bool):
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"--config.{key}={text}: expected true or false")
            node[leaf] = text.lower() in ("true", "1")
        else:
            try:
                node[leaf] = type(old)(text) if isinstance(old, (int, float)) else text
            except ValueError:
                raise ValueError(f"--config.{key}={text}: expected a {type(old).__name__}") from None
    atm_config.validate(config)
    return config


def export(config, out: str) -> int:
    import re

    from atm.data import sources
    from atm.data.vocab import LANG_CODE

    rows, _ = sources.load_texts(config.data)
    texts = sources.apply_spoken_share(rows, config.data.spoken_share)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        for text, (_, language) in zip(texts, rows):
            prefix = f"{language}\t" if re.fullmatch(LANG_CODE, language) else ""  # no code: one group
            f.write(f"{prefix}{' '.join(text.split())}\n")
    return len(texts)


def main(args) -> int:
    n = export(load_config(args.config), args.out)
    print(f"wrote {n} lines to {args.out}")
    return 0
