"""``python -m attacks.adra RUN_DIR [--set key=value ...] [--workers N] [--limit N] [--device D]``.

Re-runs an attack configuration on a run's stored captures and writes a new leakage
folder beside the run's (``leakage``, else ``leakage-1``, ``leakage-2``...: an existing
one is never overwritten). Only attack keys (``adra-*``, ``knows-weights``, ...) can be
changed: the captures were made under the run's own search space and data; ``--device``
picks where the attack runs (victim, solver, identifiability). Progress: tqdm bars on
stderr, one per capture in flight (stage, iteration, best match, ETA). The last line
printed is the new folder. Exit status: 0 done, 2 bad arguments or run directory.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from fednas.config import GROUP_KEYS, KEY_BY_NAME, ConfigError, parse_config
from fednas.rundir import unique_path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m attacks.adra", description=__doc__.splitlines()[0])
    p.add_argument("run_dir", help="a run directory holding captures/ (made with eavesdrop = true)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="change one attack key (repeatable), e.g. --set adra-mode=paper")
    p.add_argument("--workers", type=int, help="worker processes (default: the run's attack-workers; 0: this process)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"),
                   help="where the attack runs (default: the run's device key; auto: CUDA when torch sees a GPU)")
    p.add_argument("--limit", type=int, default=0, help="attack only the first N captures (0: all)")
    p.add_argument("--rounds", default="", help="comma-separated rounds to attack (default: all)")
    p.add_argument("--out", default="leakage", help="name of the new folder inside the run directory (suffixed when taken)")
    return p


def _value(key: str, text: str):
    from simulations.launcher import parse_value

    return text.strip('"') if KEY_BY_NAME[key].kind is str else parse_value(text)


def load_settings(run_dir: Path, sets: list[str]) -> dict:
    """The run's flat config with the ``--set`` attack keys applied (validated)."""
    path = run_dir / "config.json"
    if not path.is_file():
        raise ConfigError(f"{run_dir} has no config.json: not a run directory")
    flat = dict(json.loads(path.read_text())["config"])
    allowed = {k.name for k in GROUP_KEYS["attack"]}
    for item in sets:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            raise ConfigError(f"--set {item!r}: expected key=value")
        if key not in KEY_BY_NAME:
            parse_config({key: value})  # names the unknown key and its near misses
        if key not in allowed:
            raise ConfigError(f"--set {key}: only attack keys can change offline ({', '.join(sorted(allowed))})")
        flat[key] = _value(key, value.strip())
    flat = {k: v for k, v in flat.items() if k in KEY_BY_NAME}  # keys of an older schema are dropped
    return parse_config(flat, allow_unknown=False).flat()


def _check_device(name: str) -> None:
    if name == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"--device cuda, but torch {torch.__version__} sees no CUDA device here")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    run_dir = Path(args.run_dir).resolve()
    from attacks.captures import CaptureStore
    from attacks.leakage import LeakageAudit

    try:
        flat = load_settings(run_dir, args.sets)
        if args.device:
            flat = parse_config({**flat, "device": args.device}).flat()
            _check_device(args.device)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    store = CaptureStore(run_dir)
    ids = store.ids()
    if args.rounds:
        wanted = {int(r) for r in args.rounds.split(",") if r.strip()}
        ids = [i for i in ids if int(i[1:].split("-")[0]) in wanted]
    if args.limit > 0:
        ids = ids[: args.limit]
    if not ids:
        print(f"error: no captures to attack in {store.dir}", file=sys.stderr)
        return 2
    out = unique_path(run_dir / args.out)
    workers = flat["attack-workers"] if args.workers is None else args.workers
    audit = LeakageAudit(run_dir, flat, out, workers, bars=True)
    print(f"attacking {len(ids)} captures of {run_dir} ({flat['attack']}, mode {flat['adra-mode']}) into {out}",
          file=sys.stderr)
    for cid in ids:
        audit.submit(cid)
    summary = audit.finish(emit=lambda line: print(line, file=sys.stderr), only=ids)
    print(json.dumps({k: summary.get(k) for k in ("success-rate", "identified-rate", "mean-psnr", "label-accuracy",
                                                   "attack-seconds-per-capture")}))
    print(out)
    return 0 if summary.get("status") != "failed" else 1


if __name__ == "__main__":
    sys.exit(main())
