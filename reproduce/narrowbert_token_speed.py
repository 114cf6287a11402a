"""NarrowBERT on a token task: fine-tuning steps of MASSIVE intent + slots, side by side.

    python -m reproduce.narrowbert_token_speed [--steps=10] [--seq_len=64] [--arrangement=1sf:3sf]

Times, interleaved on the same real batches (atm.bench.time_runners), one fine-tuning step of
  bert        all layers over every token;
  narrow/all  the arrangement with slot logits at every position (finetune.token_query_slots=0);
  narrow/S    the arrangement on S = [CLS] + each word's first subword (token_query_slots = the
              longest training row's word count + 1),
at the BERT-small shape (4 × 256, FFN 1024; the vocabulary trained on MASSIVE en-US train text), and
prints one JSON line with the step times and the speed-ups over bert.
"""
from __future__ import annotations

import argparse
import json
import os


def main(argv=None):
    import jax

    from atm import bench, objectives
    from atm.config import default_config
    from atm.train import build

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--seq_len", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--arrangement", default="1sf:3sf")
    parser.add_argument("--workdir", default="workdirs/narrowbert_token_speed")
    args = parser.parse_args(argv)

    def config(arrangement, slots):
        c = default_config("finetune")
        c.model.update(num_layers=4, hidden_size=256, num_heads=4, ffn_size=1024, vocab_size=8000,
                       arrangement=arrangement, max_positions=max(128, args.seq_len))
        c.finetune.update(task="massive_en_us", token_query_slots=slots)
        c.data.update(vocab_size=8000, seq_len=args.seq_len)
        c.train.batch_size = args.batch
        return c

    finetune = objectives.get("finetune")
    # The data does not depend on the model: one load serves all three, and S is sized from it.
    vocab, train_data, _, _ = finetune.build_data(config("", 0), args.workdir)
    slots = max(train_data.words_per_row()) + 1
    runners = {}
    for name, arrangement, s in (("bert", "", 0), ("narrow/all", args.arrangement, 0),
                                 ("narrow/S", args.arrangement, slots)):
        c = config(arrangement, s)
        trainer = build(c, args.workdir, vocab=vocab, train_data=train_data).trainer
        batch = trainer.global_batch(train_data.batch(0))
        holder = {"state": trainer.init_state()}

        def step(trainer=trainer, holder=holder, batch=batch):
            holder["state"], metrics = trainer.train_step(holder["state"], batch)
            return metrics
        runners[name] = bench.Runner(name, step, jax.block_until_ready, lambda t: t)
    timings = bench.time_runners(list(runners.values()), args.steps, warmup=2)
    line = {"task": "massive_en_us intent + slots", "arrangement": args.arrangement, "batch": args.batch,
            "seq_len": args.seq_len, "token_query_slots": slots, "load_avg_1m": round(os.getloadavg()[0], 2)}
    for name, timing in zip(runners, timings):
        line[f"{name}_step_s"] = round(timing["step_s"], 4)
    for name in ("narrow/all", "narrow/S"):
        line[f"speedup_{name}"] = round(line["bert_step_s"] / line[f"{name}_step_s"], 3)
    print(json.dumps(line), flush=True)
    return line


if __name__ == "__main__":
    main()
