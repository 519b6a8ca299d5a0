"""``python -m attacks.amia RUN_DIR [--set key=value ...]``: attack a finished run's model.

Writes ``RUN_DIR/amia/`` (or ``amia-1/``, ... when taken) and prints it as the last line.
Only keys of the ``amia`` group can be set (the rest is fixed by the run's config.json).
Exit status: 0 done, 2 bad input (nothing written).
"""

from __future__ import annotations

import argparse
import logging
import sys

from attacks.amia.data import AMIAInputError
from attacks.amia.runner import run_amia
from fednas.config import ConfigError
from fednas.data import DatasetMissing
from fednas.overrides import parse_overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m attacks.amia", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a completed run directory (config.json and model.npz)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override an amia key (repeatable), e.g. --set amia-shadows=cnn --set md=true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        out = run_amia(args.run_dir, parse_overrides(args.sets))
    except (AMIAInputError, ConfigError, DatasetMissing) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print((out / "report.md").read_text())
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
