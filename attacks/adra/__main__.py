"""``python -m attacks.adra RUN_DIR [--set key=value ...] [options]``: re-attack a run's stored captures.

Re-runs an attack configuration on a run's stored captures and writes a new leakage
folder beside the run's (``leakage``, else ``leakage-1``, ``leakage-2``...: an existing
one is never overwritten). Only attack keys (``adra-*``, ``knows-weights``, ...) can be
changed: the captures were made under the run's own search space and data; ``--device``
picks where the attack runs (victim, solver, identifiability). Progress: tqdm bars on
stderr, one per capture in flight (stage, iteration, best match, ETA). The last line
printed is the new folder. Exit status: 0 done, 1 no capture could be attacked (the report
says why), 2 bad arguments, run directory, manifest or model (checked before any capture).
A capture whose files are unreadable is skipped, with its path and reason in the report.

Captures of another Flower app (made with ``server.plugin.eavesdrop``) are attacked on the
app's own network: ``--model package.module:factory`` (or the model the captures' manifest
names), with ``--data``/``--aux`` for scoring and a learned prior. The contract of each is in
``attacks.foreign`` and docs/plugin.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from fednas.config import GROUP_KEYS, KEY_BY_NAME, ConfigError, canonical_keys, parse_config
from fednas.overrides import parse_override
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
    p.add_argument("--out", default="leakage",
                   help="name of the new folder inside the run directory (suffixed when taken)")
    g = p.add_argument_group("another app's captures (server.plugin.eavesdrop; docs/plugin.md)")
    g.add_argument("--model", help="package.module:factory returning the victim's torch network with named alpha "
                                   "parameters (default: the model the captures' manifest names)")
    g.add_argument("--data", help="package.module:function returning (images, labels) that the clients' audit "
                                  "records index: scores the reconstructions")
    g.add_argument("--aux", help="package.module:function returning the attacker's own (images, labels): "
                                 "aux-screened starts and the PCA prior (without it adra-init is noise)")
    g.add_argument("--input-shape", type=_shape, help="C,H,W of the victim's input when the manifest lacks it")
    g.add_argument("--classes", type=int, help="the victim's classes when the manifest lacks them")
    return p


def _shape(text: str) -> tuple[int, int, int]:
    try:
        c, h, w = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected C,H,W (three integers), got {text!r}") from None
    return c, h, w


def load_settings(run_dir: Path, sets: list[str], foreign: bool = False, aux: bool = False) -> dict:
    """The run's flat config with the ``--set`` attack keys applied (validated).

    Another app's run has no config.json: its attack starts from the schema's defaults,
    with ``adra-init = noise``, no learned prior unless ``--aux`` gives the attacker's pool
    (``aux``; a ``--set`` that asks for one without it is an error now, not once per
    capture) and no identifiability (it needs this project's dataset).
    """
    path = run_dir / "config.json"
    if foreign:
        flat = {"adra-init": "noise", "attack-identifiability": False, **({} if aux else {"adra-prior": "none"})}
    elif path.is_file():
        flat = canonical_keys(json.loads(path.read_text())["config"], str(path))
    else:
        raise ConfigError(f"{run_dir} has no config.json: not a run directory of this project "
                          "(another app's captures: pass --model package.module:factory)")
    allowed = {k.name for k in GROUP_KEYS["attack"]}
    for item in sets:
        key, value = parse_override(item)
        if key not in KEY_BY_NAME:
            parse_config({key: value})  # names the unknown key and its near misses
        if key not in allowed:
            raise ConfigError(f"--set {key}: only attack keys can change offline ({', '.join(sorted(allowed))})")
        flat[key] = value
    flat = {k: v for k, v in flat.items() if k in KEY_BY_NAME}  # keys of an older schema are dropped
    flat = parse_config(flat, allow_unknown=False).flat()
    wants_aux = flat["adra-prior"] != "none" or flat["adra-init"] == "aux"
    if foreign and not aux and flat["adra-mode"] != "paper" and wants_aux:
        raise ConfigError(f"adra-prior = {flat['adra-prior']!r}, adra-init = {flat['adra-init']!r} need the "
                          "attacker's own images: pass --aux package.module:function, or --set adra-prior=none "
                          "adra-init=noise")
    return flat


def _check_device(name: str) -> None:
    if name == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"--device cuda, but torch {torch.__version__} sees no CUDA device here")


def foreign_target(run_dir: Path, args: argparse.Namespace):
    """The other app's target when ``--model`` is given or the manifest names a model; else None."""
    from attacks.foreign import ForeignTarget, load_callable
    from fednas.captures import CaptureStore

    manifest = CaptureStore(run_dir).manifest()
    if args.model is None and (manifest is None or manifest.model is None):
        return None
    target = ForeignTarget.from_run(run_dir, args.model, args.data, args.aux, args.input_shape, args.classes)
    target.spec()  # the contract is checked now, once: imports, input shape,
    target.check(manifest)  # α parameters named and shaped as the captured ones
    for ref, what in ((args.data, "data"), (args.aux, "aux")):
        if ref is not None:
            load_callable(ref, what)  # importable now, not after the attacks
    return target


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    run_dir = Path(args.run_dir).resolve()
    from attacks.foreign import TargetError
    from attacks.leakage import LeakageAudit
    from fednas.captures import CaptureStore
    from fednas.schema import SchemaError

    try:
        target = foreign_target(run_dir, args)
        flat = load_settings(run_dir, args.sets, foreign=target is not None, aux=args.aux is not None)
        if args.device:
            flat = parse_config({**flat, "device": args.device}).flat()
            _check_device(args.device)
    except (ConfigError, TargetError, SchemaError) as err:
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
    audit = LeakageAudit(run_dir, flat, out, workers, target, bars=True)
    print(f"attacking {len(ids)} captures of {run_dir} ({flat['attack']}, mode {flat['adra-mode']}) into {out}",
          file=sys.stderr)
    for cid in ids:
        audit.submit(cid)
    summary = audit.finish(emit=lambda line: print(line, file=sys.stderr), only=ids)
    print(json.dumps({k: summary.get(k) for k in ("success-rate", "identified-rate", "mean-psnr", "label-accuracy",
                                                   "attack-seconds-per-capture")}))
    print(out)
    if summary.get("status") == "failed":
        print(f"error: the leakage report failed ({summary.get('error')}); see {out / 'report.md'}", file=sys.stderr)
        return 1
    if not summary.get("attacked"):
        print(f"error: no capture could be attacked; the reasons are in {out / 'report.md'}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
