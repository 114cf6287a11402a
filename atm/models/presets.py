"""Model sizes. Names give non-embedding parameter counts where the papers do.

`tests/test_presets.py` checks each count within 3% of its name with
`jax.eval_shape`, so the large ones are never materialised. Non-embedding =
everything but the word/position/type embedding tables (12·L·d² + biases + LN).
The ATM teacher shapes are [unverified] (PAPERS.md): chosen so 12·L·d² ≈ N.
"""
from __future__ import annotations

_XLMR_VOCAB = 250_002
_ROBERTA_STYLE = dict(type_vocab_size=1, position_offset=2, layer_norm_eps=1e-5, max_positions=514)
_PRE_LN_TEACHER = dict(_ROBERTA_STYLE, pre_layer_norm=True, vocab_size=_XLMR_VOCAB, hidden_dropout=0.1,
                       attention_dropout=0.0, scan_layers=True, remat_policy="dots_no_batch")

PRESETS: dict[str, dict] = {
    # CPU-sized: the demo, the notebook and most tests.
    "tiny": dict(vocab_size=2000, num_layers=2, hidden_size=64, num_heads=4, ffn_size=256, max_positions=128,
                 type_vocab_size=2, hidden_dropout=0.0),
    # The fine-tuning configs' encoder and the miniature pretraining runs (0.8M non-embedding).
    "mini": dict(num_layers=4, hidden_size=128, num_heads=4, ffn_size=512),
    "small": dict(num_layers=4, hidden_size=512, num_heads=8, ffn_size=2048),
    "base": dict(num_layers=12, hidden_size=768, num_heads=12, ffn_size=3072),
    "large": dict(num_layers=24, hidden_size=1024, num_heads=16, ffn_size=4096),
    # ELECTRA discriminators (google-research/electra; configs/electra.py): factorised embeddings in small.
    "electra_small": dict(vocab_size=30522, num_layers=12, hidden_size=256, embedding_size=128, num_heads=4,
                          ffn_size=1024, max_positions=512),
    "electra_base": dict(vocab_size=30522, num_layers=12, hidden_size=768, num_heads=12, ffn_size=3072,
                         max_positions=512),
    # ATM teachers (non-embedding parameters in the name).
    "atm_700m": dict(_PRE_LN_TEACHER, num_layers=25, hidden_size=1536, num_heads=16, ffn_size=6144),
    "atm_2p3b": dict(_PRE_LN_TEACHER, num_layers=36, hidden_size=2304, num_heads=18, ffn_size=9216),
    "atm_9p3b": dict(_PRE_LN_TEACHER, num_layers=48, hidden_size=4032, num_heads=32, ffn_size=16128),
    # ATM students (non-embedding parameters in the name), post-LN, XLM-R vocabulary.
    "student_17m": dict(_ROBERTA_STYLE, vocab_size=_XLMR_VOCAB, num_layers=4, hidden_size=600, num_heads=12,
                        ffn_size=2400),
    "student_170m": dict(_ROBERTA_STYLE, vocab_size=_XLMR_VOCAB, num_layers=16, hidden_size=944, num_heads=16,
                         ffn_size=3776),
}

# The nominal non-embedding sizes the names promise (checked within 3% by the tests).
NOMINAL_NON_EMBEDDING = {
    "atm_700m": 700e6, "atm_2p3b": 2.3e9, "atm_9p3b": 9.3e9,
    "student_17m": 17e6, "student_170m": 170e6,
    "mini": 0.8e6, "small": 12.6e6, "base": 85e6, "large": 302e6,
}


def get(name: str) -> dict:
    if name not in PRESETS:
        import difflib
        near = difflib.get_close_matches(name, list(PRESETS), n=3)
        raise ValueError(f"unknown model preset {name!r}; did you mean {near}? (all: {sorted(PRESETS)})")
    return PRESETS[name]
