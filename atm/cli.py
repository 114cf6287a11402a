"""What the command-line tools that take `--config=configs/X.py [--config.a.b=v ...]` share (atm.main,
atm.aot): loading the config flag and turning a bad file or override into one line and exit code 2."""
from __future__ import annotations

import sys
from typing import Callable

from absl import app, flags

from atm import config as atm_config


def load_config_or_exit(prog: str = "atm"):
    """The --config file's ConfigDict; a file that is missing or fails to load exits 2 with one line."""
    try:
        config = flags.FLAGS.config
        config.objective  # noqa: B018  (a config that failed to load raises on first use)
        return config
    except Exception as e:  # noqa: BLE001  (a config file can fail in any way; show its message, not a traceback)
        message = str(e).split("earlier failure to load:")[-1]
        print(f"{prog}: error: --config={flags.FLAGS['config'].serialize().split('=', 1)[-1]}: "
              f"{' '.join(message.split())}", file=sys.stderr, flush=True)
        sys.exit(2)


def run(main: Callable, prog: str = "atm"):
    """app.run(main); an unknown --config.x.y override exits 2 naming it (ml_collections names the nearest)."""
    main_started = []

    def started_main(argv):
        main_started.append(True)
        return main(argv)

    try:
        app.run(started_main)
    except (AttributeError, KeyError) as e:
        if main_started:  # raised by the program itself, not by parsing a --config.x.y override
            raise
        overrides = [a.split("=")[0] for a in sys.argv[1:] if a.startswith("--config.")]
        renamed = [m for m in map(atm_config.renamed_key_message, overrides) if m]
        if renamed:
            print(f"{prog}: error: {'; '.join(renamed)}", file=sys.stderr)
            sys.exit(2)
        while isinstance(e, BaseException) and e.args:  # ml_collections wraps a KeyError in an AttributeError
            e = e.args[0]
        message = " ".join(str(e).split())
        print(f"{prog}: error: unknown config key among {', '.join(overrides)}: {message}", file=sys.stderr)
        sys.exit(2)
