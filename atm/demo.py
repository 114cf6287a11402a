"""`make demo`: MLM-pretrain the tiny encoder on atm's own generated utterances, then fill some masks.

    python -m atm.demo [--workdir=workdirs/demo]

Runs configs/tiny_mlm.py from scratch (the workdir is cleared first), prints
progress, a summary with the loss drop, and the model's guesses for masked words.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time

from absl import app, flags, logging

_WORKDIR = flags.DEFINE_string("workdir", "workdirs/demo", "Where the demo run writes.")

PROMPTS = ["set an alarm for [MASK] am", "what's the weather like in [MASK] tomorrow",
           "schalte das [MASK] aus", "pon una alarma a las [MASK]"]


def fill_masks(config, workdir: str, prompts: list[str]) -> list[str]:
    """Top guess for each [MASK] piece, from the final checkpoint."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from atm import train
    from atm.checkpoint import Checkpointer
    from atm.data.vocab import SentencePieceVocabulary

    vocab = SentencePieceVocabulary(os.path.join(workdir, "vocab.model"))
    built = train.build(config, workdir, vocab=vocab)
    objective, trainer = built.objective, built.trainer
    _, state, _ = Checkpointer(os.path.join(workdir, "checkpoints"), 1, False).restore_latest(trainer.abstract_state())
    out = []
    for prompt in prompts:
        pieces = [vocab.cls_id]
        for i, part in enumerate(prompt.split("[MASK]")):
            if i:
                pieces.append(vocab.mask_id)
            pieces.extend(vocab.encode(part.strip()) if part.strip() else [])
        pieces.append(vocab.sep_id)
        ids = jnp.asarray([pieces], jnp.int32)
        masked = jnp.asarray([[i for i, p in enumerate(pieces) if p == vocab.mask_id]], jnp.int32)
        logits = objective.eval_model.apply({"params": jax.device_get(state.params)}, ids,
                                            masked_positions_BxM=masked)
        guesses = [vocab.id_to_piece(int(i)).replace("▁", "") for i in np.argmax(logits[0], axis=-1)]
        filled = prompt
        for guess in guesses:
            filled = filled.replace("[MASK]", f"«{guess}»", 1)
        out.append(filled)
    return out


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    import configs.tiny_mlm as tiny_mlm
    from atm import train

    workdir = os.path.abspath(_WORKDIR.value)
    if os.path.exists(workdir):
        print(f"Removing the previous demo run in {workdir}")
        shutil.rmtree(workdir)
    config = tiny_mlm.get_config()
    print(f"atm demo: MLM pretraining of a tiny encoder on generated assistant utterances ({config.data.languages})")
    start = time.time()
    summary = train.train_and_evaluate(config, workdir)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    print("\n=== Demo summary ===")
    print(f"steps: {summary['step']}   wall time: {time.time() - start:.0f}s")
    print(f"train loss: {records[0]['loss']:.3f} (step {records[0]['step']}) -> {records[-1]['loss']:.3f} "
          f"(step {records[-1]['step']})")
    print(f"eval loss: {summary['eval_loss']:.3f}   eval masked-token accuracy: {summary['eval_accuracy']:.1%}")
    print(f"tokens/s: {summary['tokens_per_s']:.0f}")
    print("fill-mask with the trained model:")
    for line in fill_masks(config, workdir, PROMPTS):
        print(f"  {line}")
    print(f"outputs: {workdir}/metrics.jsonl, tensorboard/, checkpoints/, config.json")
    sys.stdout.flush()


if __name__ == "__main__":
    app.run(main)
