"""``python -m attacks.amia RUN_DIR [--set key=value ...]``: attack a finished run's model.

Writes ``RUN_DIR/amia/`` (or ``amia-1/``, ... when taken) and prints it as the last line.
Only keys of the ``amia`` group can be set (the rest is fixed by the run's config.json).
Exit status: 0 done, 2 bad input (nothing written).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tomllib

from attacks.amia.data import AMIAInputError
from attacks.amia.runner import run_amia
from fednas.data import DatasetMissing


def parse_value(text: str) -> object:
    """A value as TOML reads it (``3``, ``0.5``, ``true``, ``"x"``); bare words are strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_sets(items: list[str]) -> dict[str, object]:
    """``key=value`` pairs, values read as TOML scalars (bare words are strings)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise AMIAInputError(f"--set {item!r}: expected key=value")
        value = value.strip()
        parsed = parse_value(value)
        out[key.strip()] = value.strip('"') if isinstance(parsed, str) else parsed
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m attacks.amia", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a completed run directory (config.json and model.npz)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override an amia key (repeatable), e.g. --set amia-shadows=cnn --set md=true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        out = run_amia(args.run_dir, parse_sets(args.sets))
    except (AMIAInputError, DatasetMissing) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print((out / "report.md").read_text())
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
