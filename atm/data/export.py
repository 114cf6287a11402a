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


def load_config(path: str):
    spec = importlib.util.spec_from_file_location("atm_user_config", path)
    if spec is None or not os.path.exists(path):
        raise FileNotFoundError(f"--config: {path} does not exist")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


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
