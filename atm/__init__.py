"""atm: pretrain, distil and fine-tune transformer encoders in JAX/Flax."""
import contextlib
import os
import sys

# TensorFlow (pulled in by seqio, tfds and clu) is only used on the host; keep its Python-side logging quiet.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def stderr_fd_silenced():
    """File descriptor 2 points at /dev/null inside the block (C++ libraries write there directly).

    `ATM_VERBOSE=1` leaves it alone, to see what a library says while loading."""
    if os.environ.get("ATM_VERBOSE"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow():
    """`tensorflow`, imported without its start-up lines on the console.

    TensorFlow's shared libraries log through absl before `absl::InitializeLog()` (oneDNN's "custom operations
    are on", cudart_stub's "Could not find cuda drivers", one set per library), which TF_CPP_MIN_LOG_LEVEL does
    not reach; so the first import runs with stderr's descriptor silenced. An import error still raises here,
    with its message. Call it before anything that imports TensorFlow (seqio, clu, tfds).
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with stderr_fd_silenced():
        import tensorflow
    return tensorflow


def from_pretrained(path: str, **overrides):
    """An atm workdir or a Hugging Face directory → model, params and tokenizer (atm/convert/pretrained.py)."""
    from atm.convert.pretrained import from_pretrained as load

    return load(path, **overrides)
