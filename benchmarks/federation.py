"""Federated overhead and scaling: ``flwr run`` through the launcher against a plain loop.

The same run configuration on both sides (the launcher's ``prepare`` builds it for both):
the plain loop (:mod:`benchmarks.loop`, a fresh process, one client after the other on
one torch thread) against ``flwr run`` with 1 Ray CPU (one client at a time, one CPU and so
one torch thread per client, as Ray sets ``OMP_NUM_THREADS``), and with 2 Ray CPUs for the
scaling figure. Federated evaluation and central evaluation are off on both sides so
that the work compared is the local search and FedAvg.

Where the time goes in a Flower run:

- ``start-up + teardown`` = the launcher's wall time minus the in-run time: the SuperLink,
  ``flwr run`` packaging the app, the simulation process, Ray, the ServerApp waiting for the
  nodes, and shutting all of it down;
- ``in-run`` = ``rounds.csv``'s ``seconds`` at the last round, counted by the ServerApp
  from the moment every node is connected: every round and nothing of the above;
- ``round 1`` holds the Ray workers' own start-up (a fresh process importing torch, Flower
  and the ClientApp, then loading the data); the loop's first round loads the data too.

So the overhead ratio (the target: "Ray start-up excluded") compares rounds 2..R: Flower's
sum of per-round seconds (``rounds.csv``) over the loop's. The ratios with round 1 and
with everything are printed beside it. The loop runs before and after the Flower runs and
their mean is used, so that load drifting on a shared machine hits both sides alike.
Scaling compares client rounds per minute over rounds 2..R with 1 and 2 Ray CPUs; a
probe before and after (two CPU-bound one-thread processes against one) shows how much of
a second core the machine had to give meanwhile. ``CPU s`` sums the CPU time of every
process of a side (Flower: all processes it started, start-up included).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, PeakMemory, mb, median, parallelism_probe, table
from fednas.rundir import read_rows
from simulations.launcher import PROJECT_ROOT, launch


def workload(args: Any) -> list[str]:
    """The run configuration both sides share (``--set`` items)."""
    return [f"num-server-rounds={args.rounds}", f"dag-nodes={args.fed_dag_nodes}", f"local-steps={args.local_steps}",
            "fraction-evaluate=0.0", "central-eval=false", "run-name=benchmark",
            # no BatchNorm statistics pass or query: the plain loop does none either
            "bn-statistics=ema",
            f"output-dir={RESULTS / 'runs'}", f"device={args.device}"]


def plain_loop(args: Any) -> dict[str, Any]:
    """The loop in a fresh process; its memory is the peak PSS of that process."""
    spec = {"sets": workload(args), "clients": args.clients, "threads": 1}
    with PeakMemory(tree=True, include_self=False) as mem:
        out = subprocess.run([sys.executable, "-m", "benchmarks.loop", json.dumps(spec)], cwd=PROJECT_ROOT,
                             capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"the plain loop failed:\n{out.stderr[-3000:]}")
    data = json.loads(out.stdout.strip().splitlines()[-1])
    rounds = data["round-seconds"]
    return {"side": "plain loop", "in-run-s": sum(rounds), "round1-s": rounds[0],
            "later-rounds-s": median(rounds[1:]), "round-seconds": rounds, "peak-mb": mb(mem.peak),
            "peak-rss-mb": round(data["peak-rss-mb"], 1), "torch-threads": data["threads"],
            "cpu-s": sum(mem.cpu_seconds.values())}


def flower_run(args: Any, ray_cpus: int) -> dict[str, Any]:
    """One ``flwr run`` through the launcher; its memory is the peak PSS of every process it starts."""
    log_dir = RESULTS / "runs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"flwr-{ray_cpus}cpu.log"
    gpus = args.gpus_per_client if args.device == "cuda" else 0.0
    with open(log_path, "w") as stream, PeakMemory(tree=True, include_self=False) as mem:
        result = launch(None, workload(args), clients=args.clients, cpus_per_client=1.0, gpus_per_client=gpus,
                        ray_cpus=ray_cpus, stream=stream)
    if result.returncode != 0:
        raise RuntimeError(f"flwr run with {ray_cpus} Ray CPU(s) did not complete ({result.status}); see {log_path}")
    seconds = [float(r["seconds"]) for r in read_rows(Path(result.run_dir) / "rounds.csv")]
    rounds = [seconds[0]] + [b - a for a, b in zip(seconds, seconds[1:])]
    return {"side": f"flwr run, {ray_cpus} Ray CPU{'s' if ray_cpus > 1 else ''}", "ray-cpus": ray_cpus,
            "total-s": result.seconds, "startup-teardown-s": result.seconds - seconds[-1],
            "superlink-start-s": result.timings.get("superlink-start"), "in-run-s": seconds[-1],
            "round1-s": rounds[0], "later-rounds-s": median(rounds[1:]), "round-seconds": rounds,
            "peak-mb": mb(mem.peak), "peak-mb-by-process": {k: mb(v) for k, v in sorted(mem.by_name.items())},
            "cpu-s": sum(mem.cpu_seconds.values()),
            "cpu-s-by-process": {k: round(v, 1) for k, v in sorted(mem.cpu_seconds.items())},
            "run-dir": str(result.run_dir), "log": str(log_path)}


def run(args: Any, overhead: bool = True, scaling: bool = True) -> dict[str, Any]:
    """Loop, Flower with 1 Ray CPU, Flower with 2 (scaling), loop again; prints the tables."""
    if args.rounds < 2:
        raise SystemExit("error: --rounds must be >= 2 (round 1 holds the Ray workers' start-up and is shown apart)")
    sides: list[dict[str, Any]] = []
    probes = [parallelism_probe()] if scaling else []
    loops = [plain_loop(args)] if overhead else []
    one = flower_run(args, 1)
    two = flower_run(args, 2) if scaling else None
    if overhead:
        loops.append(plain_loop(args))
    if scaling:
        probes.append(parallelism_probe())
    sides = [*loops[:1], one, *([two] if two else []), *loops[1:]]
    print(f"\nfederated search: {args.clients} clients x {args.rounds} rounds, dag P={args.fed_dag_nodes}, "
          f"{args.local_steps} local steps, {args.device}; seconds")
    print(table(([s["side"], s.get("total-s"), s.get("startup-teardown-s"), s["in-run-s"], s["round1-s"],
                  s["later-rounds-s"], s["cpu-s"], s["peak-mb"]] for s in sides),
                ["", "total", "start-up+teardown", "in-run", "round 1", "later rounds (median)", "CPU s",
                 "peak MB"]))
    out: dict[str, Any] = {"clients": args.clients, "rounds": args.rounds, "dag-nodes": args.fed_dag_nodes,
                           "local-steps": args.local_steps, "sides": sides}
    if overhead:
        loop_later = sum(_later(s) for s in loops) / len(loops)
        loop_in_run = sum(s["in-run-s"] for s in loops) / len(loops)
        out["overhead"] = _later(one) / loop_later
        out["overhead-with-round1"] = one["in-run-s"] / loop_in_run
        out["overhead-with-startup"] = one["total-s"] / loop_in_run
        print(f"\noverhead, flwr run / plain loop: {out['overhead']:.2f}x over rounds 2-{args.rounds} "
              f"(Ray start-up excluded); {out['overhead-with-round1']:.2f}x with round 1 (Ray workers starting); "
              f"{out['overhead-with-startup']:.2f}x with start-up and teardown ({one['startup-teardown-s']:.1f} s)")
    if two:
        steady = args.clients * (args.rounds - 1) * 60
        out["clients-per-minute"] = {"1": steady / _later(one), "2": steady / _later(two)}
        out["scaling"] = _later(one) / _later(two)
        out["scaling-with-round1"] = one["in-run-s"] / two["in-run-s"]
        out["scaling-with-startup"] = one["total-s"] / two["total-s"]
        out["machine-parallelism"] = probes
        print(f"machine check: two CPU-bound 1-thread processes run {min(probes):.2f}-{max(probes):.2f}x as fast "
              "as one right now (2.0 when the second core is free): the ceiling of the scaling below")
        print(f"scaling: {out['clients-per-minute']['1']:.1f} -> {out['clients-per-minute']['2']:.1f} client rounds "
              f"per minute with 1 -> 2 Ray CPUs over rounds 2-{args.rounds}: {out['scaling']:.2f}x "
              f"({out['scaling-with-round1']:.2f}x with round 1, {out['scaling-with-startup']:.2f}x with start-up)")
    return out


def _later(side: dict[str, Any]) -> float:
    """Seconds of rounds 2..R."""
    return sum(side["round-seconds"][1:])
