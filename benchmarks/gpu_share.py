"""Ray over one GPU: clients sharing it (``--gpus-per-client`` 0.25 and 0.125) against the CPU run.

``python -m benchmarks.gpu_share [--clients 8] [--rounds 4] [--shares 0.25,0.125] [--quick]``

Needs a CUDA GPU: without one it stops at once with an error (exit status 2), before
anything starts. Three federated runs of the same workload through the launcher: on CPUs
(one Ray CPU a client, ``device = "cpu"``), then with each GPU share (``device = "cuda"``,
one Ray CPU and the share of the GPU a client, so 1/share clients train on the GPU at
once). Every client round of a GPU run must really have run on CUDA: ``device = "cuda"``
makes a client that sees no GPU fail instead of falling back to the CPU, and the
eavesdropper records each (round, client)'s reply metrics, whose ``on-cuda`` must be 1; a
failed round or a client round off the GPU is an error. Printed: client rounds per minute
over rounds 2..R (round 1 holds Ray's workers starting) and the ratio to the CPU run;
results go to ``benchmarks/results/gpu-share-*.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, machine, resolve_device, table, write_results
from fednas.overrides import dag_nodes_option
from fednas.rundir import read_rows
from simulations.launcher import launch


def workload(args: Any, device: str) -> list[str]:
    """The run configuration every side shares (``--set`` items)."""
    return [f"num-server-rounds={args.rounds}", f"dataset={args.dataset}", f"dag-nodes={args.dag_nodes}",
            f"channels={args.channels}", f"local-steps={args.local_steps}", f"batch-size={args.batch_size}",
            "fraction-evaluate=0.0", "central-eval=false", "eavesdrop=true", "attack-online=false",
            f"device={device}", "run-name=gpu-share", f"output-dir={args.results / 'runs'}"]


def on_cuda(run_dir: Path) -> tuple[int, int]:
    """(client rounds that report on-cuda = 1, client rounds captured)."""
    metas = [json.loads(p.read_text()) for p in (run_dir / "captures").glob("r*-n*.json")]
    return sum(1 for m in metas if m.get("metrics", {}).get("on-cuda") == 1.0), len(metas)


def one_run(args: Any, device: str, share: float) -> dict[str, Any]:
    log_path = args.results / "runs" / f"gpu-share-{device}-{share}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as stream:
        result = launch(None, workload(args, device), clients=args.clients, cpus_per_client=1.0,
                        gpus_per_client=share, stream=stream)
    side = f"{device}, {share} GPU a client" if share else "cpu"
    if result.returncode != 0:
        raise SystemExit(f"error: the {side} run did not complete ({result.status}); see {log_path}")
    rows = read_rows(result.run_dir / "rounds.csv")
    failed = sum(int(float(r["failed"] or 0)) for r in rows)
    cuda, captured = on_cuda(result.run_dir)
    if failed or captured != args.clients * args.rounds:
        raise SystemExit(f"error: the {side} run lost client rounds ({failed} failed, {captured} captured of "
                         f"{args.clients * args.rounds}); see {log_path}")
    if device == "cuda" and cuda != captured:
        raise SystemExit(f"error: {captured - cuda} of {captured} client rounds of the {side} run did not run on "
                         f"CUDA; see {result.run_dir / 'captures'}")
    seconds = [float(r["seconds"]) for r in rows]
    later = seconds[-1] - seconds[0]  # rounds 2..R
    return {"side": side, "device": device, "gpus-per-client": share, "on-cuda": f"{cuda}/{captured}",
            "total-s": round(result.seconds, 1), "round1-s": seconds[0], "later-rounds-s": later,
            "client-rounds-per-min": args.clients * (args.rounds - 1) * 60 / later,
            "rounds-per-min": (args.rounds - 1) * 60 / later, "run-dir": str(result.run_dir), "log": str(log_path)}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_share", description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--shares", default="0.25,0.125", help="GPU shares a client, comma-separated")
    p.add_argument("--dataset", default="mnist-5k")
    dag_nodes_option(p, type=int, default=8, help="P of the dag supernet")
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--local-steps", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--quick", action="store_true", help="4 clients, 2 rounds, digits: a smoke run")
    p.add_argument("--results", type=Path, default=RESULTS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        resolve_device("cuda")  # no GPU: a clear error before anything starts
    except SystemExit as err:
        print(f"{err}\nbenchmarks.gpu_share runs clients on a shared GPU: run it on a machine with one.",
              file=sys.stderr)
        return 2
    if args.quick:
        args.clients, args.rounds, args.dataset, args.local_steps = 4, 2, "digits", 2
    if args.rounds < 2:
        print("error: --rounds must be >= 2 (round 1 holds Ray's workers starting and is left out)", file=sys.stderr)
        return 2
    shares = [float(s) for s in args.shares.split(",") if s.strip()]
    sides = [one_run(args, "cpu", 0.0)] + [one_run(args, "cuda", s) for s in shares]
    cpu = sides[0]["client-rounds-per-min"]
    for s in sides:
        s["ratio-to-cpu"] = s["client-rounds-per-min"] / cpu
    print(f"\n{args.clients} clients x {args.rounds} rounds, {args.dataset}, dag P={args.dag_nodes}, C={args.channels}, "
          f"{args.local_steps} local steps, batch {args.batch_size}; rounds 2..{args.rounds}")
    print(table(([s["side"], s["on-cuda"], s["rounds-per-min"], s["client-rounds-per-min"], s["ratio-to-cpu"],
                  s["round1-s"], s["total-s"]] for s in sides),
                ["", "on CUDA", "rounds/min", "client rounds/min", "x CPU", "round 1 s", "total s"]))
    print("results:", write_results("gpu-share", {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()},
                                                  "sides": sides}, args.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
