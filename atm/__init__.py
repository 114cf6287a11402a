"""atm: pretrain, distil and fine-tune transformer encoders in JAX/Flax."""
import os

# TensorFlow (pulled in by seqio, tfds and clu) is only used on the host; keep it quiet.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
