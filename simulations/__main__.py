"""``python -m simulations run [EXPERIMENT.toml] [--clients N] [--gpus-per-client X] [--set key=value ...]``.

Runs one federated search through ``flwr run`` and prints the run directory as the last
line of its output. Exit status: 0 when the run completed, 1 when it failed, 2 for a
configuration error (found before anything starts).

``python -m simulations derive RUN_DIR [--set key=value ...]`` trains a finished search's
final genotype from scratch against random genotypes (``derive-*`` keys) and writes
``RUN_DIR/derived/``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from fednas.config import ConfigError
from fednas.data import DatasetMissing
from simulations.launcher import LaunchError, launch, parse_set


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m simulations", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one federated search through flwr run")
    run.add_argument("experiment", nargs="?", help="TOML file of config overrides (and an optional [federation] table)")
    run.add_argument("--clients", type=int, help="number of simulated clients (SuperNodes); default 3")
    run.add_argument("--cpus-per-client", type=float, help="Ray CPUs reserved per client (default 1)")
    run.add_argument("--gpus-per-client", type=float, help="Ray GPUs per client, e.g. 0.5 puts two clients on a GPU (default 0)")
    run.add_argument("--ray-cpus", type=int, help="CPUs Ray may use in all (default: the machine's)")
    run.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                     help="override one config key (repeatable), e.g. --set nodes=16")
    derive = sub.add_parser("derive", help="train a finished search's genotype from scratch, against random ones")
    derive.add_argument("run_dir", help="the run directory of a finished search")
    derive.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a derive-* key (repeatable), e.g. --set derive-rounds=30")
    return parser


def derive_command(args: argparse.Namespace) -> int:
    """Run derive on a finished search; print the comparison and the output folder."""
    from fednas.derive import DeriveInputError, derive_run

    try:
        overrides = dict(parse_set(s) for s in args.sets)
        out = derive_run(args.run_dir, overrides)
    except (ConfigError, DeriveInputError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    m = json.loads((out / "metrics.json").read_text())
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731 (JSON has no NaN: null)
    print(f"searched: test accuracy {fmt(m['test-acc'])} ({m['params']} parameters); random genotypes "
          f"(n = {m['random-n']}): {fmt(m['random-test-acc-mean'])} ± {fmt(m['random-test-acc-std'])}")
    print(out)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.command == "derive":
        return derive_command(args)
    try:
        result = launch(args.experiment, args.sets, clients=args.clients, cpus_per_client=args.cpus_per_client,
                        gpus_per_client=args.gpus_per_client, ray_cpus=args.ray_cpus)
    except (ConfigError, DatasetMissing) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except LaunchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if result.returncode != 0:
        print(f"run {result.run_id} did not complete (status: {result.status}); see {result.run_dir}", file=sys.stderr)
    else:
        summary = json.loads((result.run_dir / "summary.json").read_text())
        print(f"run {result.run_id} completed in {result.seconds:.1f} s (status: {result.status}); "
              f"central accuracy {summary.get('final-central-acc')}")
        print("final genotype:\n" + str(summary.get("genotype")))
    print(result.run_dir)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
