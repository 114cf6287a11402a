"""Every paper's table in one command, and results/README.md: one line per claim with its verdict.

    python -m reproduce all [--only=atm,privileged,...] [--scale=1.0] [--seeds=N] [--smoke]
                            [--workdir=workdirs] [--results=results]
    python -m reproduce readme [--results=results]     # only rebuild results/README.md from the tables there

`all` runs the scripts of SCRIPTS in turn, each as `python -m reproduce.<script>` would with its own defaults
and `--workdir=<workdir>/reproduce_<script> --results=<results>/<script>` (ROaD starts from reproduce.electra's
runs there), then rebuilds the README. It resumes: a script skips every run that finished before (its
summary.json), so after an interruption the same command picks up where it stopped. A script that fails is
reported and the others still run; the command then exits 1. `--scale` multiplies every script's step counts
(10-100 on a GPU: the same tables at a larger size), `--seeds` overrides each script's seed count, `--smoke`
runs every script at a few steps. `make tables` is `python -m reproduce all`.

The README is written from each table's claims.json (reproduce/common.py `write_table`), which holds the
verdict lines of the table's claims section and the sentence saying how it was produced.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback

from reproduce import common

# script: (paper, the result folders it writes under --results, relative to its own folder)
SCRIPTS = {
    "atm": ("ATM: stage-2 pretraining and distillation (arXiv 2206.07808)", ("",)),
    "privileged": ("The Privileged Students: initialisation vs distillation (arXiv 2406.16524)", ("",)),
    "narrowbert": ("NarrowBERT: narrow attention and feed-forward after the first layer (arXiv 2301.04761)", ("",)),
    "electra": ("ELECTRA: replaced-token detection vs MLM at equal compute (arXiv 2003.10555)", ("",)),
    "road": ("ROaD: multi-task second step with KD from several teachers (arXiv 2103.08809)", ("",)),
    "muka": ("MUKA: amalgamating teachers of different label sets without labels (arXiv 2112.07327)", ("",)),
    "minilm": ("A real checkpoint (all-MiniLM-L6-v2): ATM stage 2 and the Privileged Students",
               ("stage2", "privileged")),
}


def script_argv(script: str, args) -> list[str]:
    """The command line `all` gives one script."""
    argv = [f"--workdir={os.path.join(args.workdir, 'reproduce_' + script)}",
            f"--results={os.path.join(args.results, script)}", f"--scale={args.scale}"]
    if args.seeds:
        argv.append(f"--seeds={args.seeds}")
    if args.smoke:
        argv.append("--smoke")
    if script == "road":  # ROaD's blocks start from the ELECTRA and MLM encoders reproduce.electra pretrained
        argv.append(f"--electra_workdir={os.path.join(args.workdir, 'reproduce_electra')}")
    return argv


def readme(results: str) -> str:
    """results/README.md from the claims.json of every table under `results`; returns its text."""
    lines = ["# Results: every paper's claims as the miniature tables judged them", "",
             "Written by `python -m reproduce readme` (and by `python -m reproduce all` after each script) from "
             "each table's claims.json. A verdict is one table's: read it with the table's notes, its scale and "
             "its seed spread.", ""]
    for script, (paper, folders) in SCRIPTS.items():
        lines += [f"## {paper}", ""]
        for folder in folders:
            where = os.path.join(script, folder) if folder else script
            path = os.path.join(results, where, "claims.json")
            if not os.path.exists(path):
                lines += [f"- `{where}/`: not run yet (`python -m reproduce.{script}`)."]
                continue
            with open(path) as f:
                record = json.load(f)
            notes = os.path.join(where, "NOTES.md")
            read_also = f" Read with [{notes}]({notes})." if os.path.exists(os.path.join(results, notes)) else ""
            lines += [f"From [{where}/{record['table']}]({where}/{record['table']}).{read_also} "
                      f"{record['produced_by']}", ""]
            lines += common.claim_bullets([(c["claim"], c["verdict"]) for c in record["claims"]])
            lines.append("")
        if lines[-1]:
            lines.append("")
    return common.write_table(os.path.join(results, "README.md"), lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("all", "readme"))
    parser.add_argument("--only", default=",".join(SCRIPTS), help=f"a subset of {','.join(SCRIPTS)}, in this order")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every script's step counts")
    parser.add_argument("--seeds", type=int, default=0, help="every script's seed count (0: each script's own)")
    parser.add_argument("--smoke", action="store_true", help="every script at a few steps")
    parser.add_argument("--workdir", default=os.path.join(common.REPO, "workdirs"))
    parser.add_argument("--results", default=os.path.join(common.REPO, "results"))
    args = parser.parse_args(argv)
    scripts = [s.strip() for s in args.only.split(",") if s.strip()]
    if unknown := [s for s in scripts if s not in SCRIPTS]:
        parser.error(f"--only: unknown {unknown} (scripts: {', '.join(SCRIPTS)})")
    if args.command == "readme":
        print(readme(args.results))
        return 0
    failed = []
    for script in scripts:
        argv = script_argv(script, args)
        print(f"=== python -m reproduce.{script} {' '.join(argv)}", flush=True)
        start = time.time()
        try:
            importlib.import_module(f"reproduce.{script}").main(argv)
        except Exception:  # one failed table must not cost the others: report it, go on, exit 1
            traceback.print_exc()
            failed.append(script)
        print(f"=== reproduce.{script}: {'failed' if script in failed else 'done'} after "
              f"{(time.time() - start) / 60:.1f} minutes", flush=True)
        readme(args.results)
    print(f"results/README.md written ({os.path.join(args.results, 'README.md')})"
          + (f"; failed: {', '.join(failed)}" if failed else ""), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
