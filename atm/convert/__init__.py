"""Checkpoint import/export. `hf`: Hugging Face BERT / RoBERTa / XLM-R / ELECTRA / MiniLM checkpoints;
`workdir`: HF directory ⇄ atm workdir (`python -m atm.convert import|export`); `pretrained`: `atm.from_pretrained`."""
from atm.convert.hf import (  # noqa: F401
    ARCHITECTURES,
    convert_state_dict,
    encoder_config_from_hf,
    from_hf_model,
    hf_state_dict_from_params,
    params_from_hf,
    read_hf_dir,
)
