"""Checkpoint import/export. `hf`: Hugging Face BERT / RoBERTa / XLM-R masked-LM checkpoints."""
from atm.convert.hf import (  # noqa: F401
    encoder_config_from_hf,
    from_hf_model,
    hf_state_dict_from_params,
    params_from_hf,
)
