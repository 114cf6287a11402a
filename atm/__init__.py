"""atm: pretrain, distil and fine-tune transformer encoders in JAX/Flax."""
import os

# TensorFlow (pulled in by seqio, tfds and clu) is only used on the host; keep it quiet.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def from_pretrained(path: str, **overrides):
    """An atm workdir or a Hugging Face directory → model, params and tokenizer (atm/convert/pretrained.py)."""
    from atm.convert.pretrained import from_pretrained as load

    return load(path, **overrides)
