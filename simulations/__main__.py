"""``python -m simulations run [EXPERIMENT.toml] [--clients N] [--gpus-per-client X] [--set key=value ...]``.

Runs one federated search through ``flwr run`` (Flower's simulation engine on Ray, or with
``--deployment`` a SuperLink and one SuperNode per client on this machine) and prints the
run directory as the last line of its output. Exit status: 0 when the run completed, 1
when it failed, 2 for a configuration error (found before anything starts), 130 (SIGINT,
Ctrl-C) or 143 (SIGTERM) when it was stopped: the run is stopped with all its processes
(on either engine) and ``summary.json`` says ``interrupted``.

``python -m simulations stop-superlink [--port N]`` stops the local SuperLink that plain
``flwr run`` started for this user (and what it runs), nobody else's.

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
from fednas.overrides import parse_overrides
from simulations.deployment import launch_deployment
from simulations.launcher import LaunchError, RunInterrupted, launch

RAY_OPTIONS = ("cpus_per_client", "gpus_per_client", "ray_cpus", "ray_address")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m simulations", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one federated search through flwr run")
    run.add_argument("experiment", nargs="?", help="TOML file of config overrides (and an optional [federation] table)")
    run.add_argument("--clients", type=int, help="number of simulated clients (SuperNodes); default 3")
    run.add_argument("--cpus-per-client", type=float, help="Ray CPUs reserved per client (default 1)")
    run.add_argument("--gpus-per-client", type=float, help="Ray GPUs per client, e.g. 0.5 puts two clients on a GPU (default 0)")
    run.add_argument("--ray-cpus", type=int, help="CPUs Ray may use in all (default: the machine's)")
    run.add_argument("--ray-address", help="attach to this running Ray cluster (e.g. 10.0.0.1:6379) instead of "
                                           "starting one; its resources are those of its `ray start`s")
    run.add_argument("--deployment", action="store_true",
                     help="run on Flower's Deployment Engine: a SuperLink and one SuperNode per client on "
                          "127.0.0.1 (no Ray; the leakage report is unscored)")
    run.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                     help="override one config key (repeatable), e.g. --set dag-nodes=16")
    stop = sub.add_parser("stop-superlink", help="stop this user's local SuperLink started by plain flwr run")
    stop.add_argument("--port", type=int, default=None,
                      help="its HTTP port (default: $FLWR_LOCAL_SUPERLINK_HTTP_API_PORT, else 39091)")
    derive = sub.add_parser("derive", help="train a finished search's genotype from scratch, against random ones")
    derive.add_argument("run_dir", help="the run directory of a finished search")
    derive.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a derive-* key (repeatable), e.g. --set derive-rounds=30")
    return parser


def stop_superlink(port: int | None) -> int:
    """Stop the SuperLink listening on the local-SuperLink port, if it is this user's."""
    import os

    from simulations.processes import listening_process, stop_run_processes

    port = port or int(os.environ.get("FLWR_LOCAL_SUPERLINK_HTTP_API_PORT", "39091"))
    proc = listening_process(port)
    if proc is None or "flower-superlink" not in " ".join(proc.cmdline()):
        print(f"no SuperLink of yours listens on port {port}")
        return 1
    left = stop_run_processes([proc.pid])
    print(f"stopped the SuperLink (pid {proc.pid}) on port {port} and what it ran"
          + (f"; still running: {[p.pid for p in left]}" if left else ""))
    return 1 if left else 0


def derive_command(args: argparse.Namespace) -> int:
    """Run derive on a finished search; print the comparison and the output folder."""
    from fednas.derive import DeriveInputError, derive_run

    try:
        overrides = parse_overrides(args.sets)
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
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.command == "derive":
        return derive_command(args)
    if args.command == "stop-superlink":
        return stop_superlink(args.port)
    ray_given = [f"--{k.replace('_', '-')}" for k in RAY_OPTIONS if getattr(args, k) is not None]
    if args.deployment and ray_given:
        parser.error(f"{', '.join(ray_given)}: --deployment runs no Ray (each SuperNode is a process of its own)")
    try:
        if args.deployment:
            result = launch_deployment(args.experiment, args.sets, clients=args.clients)
        else:
            result = launch(args.experiment, args.sets, clients=args.clients, cpus_per_client=args.cpus_per_client,
                            gpus_per_client=args.gpus_per_client, ray_cpus=args.ray_cpus,
                            ray_address=args.ray_address)
    except (ConfigError, DatasetMissing) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except LaunchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except RunInterrupted as stop:
        result = stop.result
        summary = json.loads((result.run_dir / "summary.json").read_text())
        print(f"run {result.run_id} interrupted by {stop.name} after round {summary.get('last-finished-round')}; "
              f"its processes were stopped in {result.timings.get('stop', 0):.1f} s", file=sys.stderr)
        print(result.run_dir)
        return stop.exit_code
    except KeyboardInterrupt:  # before anything was started
        print("interrupted before the run started", file=sys.stderr)
        return 130
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
