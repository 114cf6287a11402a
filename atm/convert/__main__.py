"""Hugging Face checkpoints ⇄ atm workdirs.

    python -m atm.convert import --hf_dir=DIR --out=WORKDIR [--scan_layers] [--attention_impl=xla]
    python -m atm.convert export --workdir=WORKDIR --out=DIR [--model_type=bert|roberta|xlm-roberta|electra]

import: a BERT / RoBERTa / XLM-R / ELECTRA (generator or discriminator) / BERT-architecture MiniLM
directory (config.json, model.safetensors or pytorch_model.bin, tokenizer files) becomes an atm
workdir usable as `--config.init_from=WORKDIR` (see atm/convert/workdir.py), as a teacher, or
through `atm.from_pretrained(WORKDIR)`. Reading safetensors needs no torch.
export: an imported or atm-trained workdir (its latest checkpoint) becomes a directory that
transformers' `AutoModel*.from_pretrained` loads. An ELECTRA pretraining run (config.objective=electra)
writes its discriminator as ElectraForPreTraining in OUT and its generator as ElectraForMaskedLM in OUT/generator.
"""
from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m atm.convert", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    to_atm = commands.add_parser("import", help="Hugging Face directory → atm workdir")
    to_atm.add_argument("--hf_dir", required=True)
    to_atm.add_argument("--out", required=True, help="the atm workdir to create")
    to_atm.add_argument("--scan_layers", action="store_true", help="stack the layers (config.model.scan_layers)")
    to_atm.add_argument("--attention_impl", default=None, help="config.model.attention_impl")
    to_hf = commands.add_parser("export", help="atm workdir → Hugging Face directory")
    to_hf.add_argument("--workdir", required=True)
    to_hf.add_argument("--out", required=True)
    to_hf.add_argument("--model_type", default=None, help="default: the imported one, else guessed from the config")
    args = parser.parse_args(argv)

    from atm.convert import workdir

    start = time.time()
    try:
        if args.command == "import":
            overrides = {"scan_layers": args.scan_layers}
            if args.attention_impl:
                overrides["attention_impl"] = args.attention_impl
            record = workdir.import_hf_dir(args.hf_dir, args.out, **overrides)
            print(json.dumps({"imported": args.hf_dir, "workdir": args.out, "model_type": record["model_type"],
                              "head": record["head"], "tokenizer_files": record["tokenizer_files"],
                              "seconds": round(time.time() - start, 2)}))
            print(f"Start from it with --config.init_from={args.out} and its model shape and vocabulary, e.g. "
                  f"--config=configs/finetune/from_workdir.py:{args.out}")
        else:
            hf_config = workdir.export_workdir(args.workdir, args.out, args.model_type)
            print(json.dumps({"exported": args.workdir, "out": args.out, "model_type": hf_config["model_type"],
                              "architectures": hf_config["architectures"], "seconds": round(time.time() - start, 2)}))
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as e:
        print(f"atm.convert: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
