"""Many clients in one simulation: wall time per round and peak memory from 10 to 100 clients.

``python -m benchmarks.many_clients [--clients 10,30,100] [--sampled 10] [--rounds 6] [--ray-cpus 2]``

One federated run through the launcher per federation size N, with the same ``--sampled``
clients trained each round (``fraction-train`` = sampled / N), so that the work per round
stays fixed and what grows with N is the federation itself: the nodes Flower's simulation
keeps, the messages it routes, each client's partition. Per run: the median wall seconds
of rounds 2..R with a 95% t-interval over those rounds (round 1, where Ray's workers start,
apart), the clients' own train seconds per round (compute), and the peak memory summed
over every process of the run (PSS, so shared pages count once). Then three probes of
where the next bottleneck is, each measured here: a fresh process importing torch (what
every Ray worker pays once, and a Deployment-Engine ClientApp on every message), loading
and partitioning the data in a fresh process (once per worker process: ``client_data`` is
cached), and the server's FedAvg over ``--sampled`` replies of the run's real arrays.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, PeakMemory, loadavg, machine, mb, table, write_results
from fednas import stats
from fednas.overrides import dag_nodes_option
from fednas.rundir import read_rows
from simulations.launcher import PROJECT_ROOT, launch

def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval (:func:`fednas.stats.t_interval`; nan
    with fewer than 2 values)."""
    if len(values) < 2:
        return (values[0] if values else math.nan), math.nan
    lo, hi = stats.t_interval(values)
    return statistics.fmean(values), (hi - lo) / 2


def workload(args: Any, n: int) -> list[str]:
    return [f"num-server-rounds={args.rounds}", f"dag-nodes={args.dag_nodes}", f"channels={args.channels}",
            f"local-steps={args.local_steps}", f"fraction-train={args.sampled / n}",
            f"min-train-clients={args.sampled}", "fraction-evaluate=0.0", "min-evaluate-clients=0",
            "central-eval=false", f"max-samples={args.max_samples}", "run-name=many-clients",
            f"output-dir={args.results / 'runs'}"]


def one_size(args: Any, n: int) -> dict[str, Any]:
    log_path = args.results / "runs" / f"many-clients-{n}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    load0 = loadavg()
    with open(log_path, "w") as stream, PeakMemory(tree=True, include_self=False) as mem:
        result = launch(None, workload(args, n), clients=n, cpus_per_client=1.0, ray_cpus=args.ray_cpus, stream=stream)
    if result.returncode != 0:
        raise SystemExit(f"error: the run with {n} clients did not complete ({result.status}); see {log_path}")
    rows = read_rows(result.run_dir / "rounds.csv")
    seconds = [float(r["seconds"]) for r in rows]
    per_round = [seconds[0]] + [b - a for a, b in zip(seconds, seconds[1:])]
    later, ci = mean_ci(per_round[1:])
    sampled = [int(float(r["sampled"])) for r in rows]
    train = [float(r["train-seconds"]) * s for r, s in zip(rows, sampled)]  # mean over clients x clients
    return {"clients": n, "sampled": sampled, "round1-s": per_round[0], "round-s-mean": later, "round-s-ci95": ci,
            "round-s-median": statistics.median(per_round[1:]), "round-seconds": per_round,
            "client-train-s-per-round": statistics.fmean(train[1:]), "peak-mb": mb(mem.peak),
            "peak-mb-by-process": {k: mb(v) for k, v in sorted(mem.by_name.items())},
            "total-s": round(result.seconds, 1), "loadavg": [load0, loadavg()], "run-dir": str(result.run_dir)}


_IMPORT = "import time; t = time.perf_counter(); import torch; print(time.perf_counter() - t)"
_DATA = ("import json, sys, time; from fednas.config import parse_config; from fednas.data import client_data; "
         "cfg = parse_config(json.loads(sys.argv[1])); t = time.perf_counter(); "
         "client_data(cfg.data, cfg.run.seed, 0, int(sys.argv[2])); t1 = time.perf_counter(); "
         "client_data(cfg.data, cfg.run.seed, 1, int(sys.argv[2])); print(t1 - t, time.perf_counter() - t1)")


def _fresh(code: str, *argv: str) -> list[float]:
    out = subprocess.run([sys.executable, "-c", code, *argv], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    return [float(v) for v in out.stdout.split()]


def aggregation_seconds(args: Any, repeats: int = 5) -> list[float]:
    """FedAvg's aggregate_train over ``sampled`` replies carrying the run's real arrays (α and θ)."""
    from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
    from flwr.serverapp.strategy import FedAvg
    from flwr.supercore.task_identity import TaskIdentity

    from fednas.config import parse_config
    from fednas.federated import initial_arrays

    cfg = parse_config({"dag-nodes": args.dag_nodes, "channels": args.channels})
    if TaskIdentity._run_id is None:  # messages built outside a Flower runtime need a sender identity
        TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1
    arrays = initial_arrays(cfg)
    replies = []
    for i in range(args.sampled):
        content = RecordDict({"arrays": ArrayRecord(arrays), "metrics": MetricRecord({"num-examples": 10 + i}),
                              "client": ConfigRecord({"partition-id": i})})
        replies.append(Message(content=content, dst_node_id=0, message_type="train"))
    strategy = FedAvg()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        strategy.aggregate_train(1, replies)
        times.append(time.perf_counter() - t)
    return times


def probes(args: Any, n: int) -> dict[str, Any]:
    imports = [_fresh(_IMPORT)[0] for _ in range(args.probe_repeats)]
    cfg = json.dumps({"dag-nodes": args.dag_nodes, "max-samples": args.max_samples})
    data = [_fresh(_DATA, cfg, str(n)) for _ in range(args.probe_repeats)]
    return {"torch-import-s": mean_ci(imports), "data-first-call-s": mean_ci([d[0] for d in data]),
            "data-cached-call-s": mean_ci([d[1] for d in data]), "fedavg-s": mean_ci(aggregation_seconds(args))}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.many_clients", description=__doc__.splitlines()[0])
    p.add_argument("--clients", default="10,30,100", help="federation sizes, comma-separated")
    p.add_argument("--sampled", type=int, default=10, help="clients trained each round")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--ray-cpus", type=int, default=2)
    dag_nodes_option(p, type=int, default=4, help="P of the dag supernet")
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--local-steps", type=int, default=5)
    p.add_argument("--max-samples", type=int, default=0, help="0: the whole dataset (digits: 1,797)")
    p.add_argument("--probe-repeats", type=int, default=5)
    p.add_argument("--results", type=Path, default=RESULTS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sizes = [int(v) for v in args.clients.split(",") if v.strip()]
    if args.rounds < 3 or min(sizes) < args.sampled:
        print("error: --rounds must be >= 3 and every size >= --sampled", file=sys.stderr)
        return 2
    info = machine()
    runs = [one_size(args, n) for n in sizes]
    probe = probes(args, max(sizes))
    base = runs[0]
    print(f"\n{args.sampled} clients trained a round, {args.rounds} rounds, dag P={args.dag_nodes}, C={args.channels}, "
          f"{args.local_steps} local steps, {args.ray_cpus} Ray CPUs; round seconds over rounds 2..{args.rounds}")
    print(table(([r["clients"], f"{r['round-s-mean']:.2f} ± {r['round-s-ci95']:.2f}",
                  r["round-s-mean"] / base["round-s-mean"], r["client-train-s-per-round"], r["round1-s"],
                  r["peak-mb"], r["peak-mb"] / base["peak-mb"], f"{r['loadavg'][0][0]:.1f}-{r['loadavg'][1][0]:.1f}"]
                 for r in runs),
                ["clients", "s/round (95% CI)", "x first", "client train s/round", "round 1 s", "peak MB", "x first",
                 "load avg"]))
    print(table(([k, f"{v[0]:.4f} ± {v[1]:.4f}"] for k, v in probe.items()), ["probe (fresh process, mean)", "s"]))
    print("results:", write_results("many-clients", {"machine": info, "args": {k: str(v) for k, v in vars(args).items()},
                                                     "runs": runs, "probes": probe}, args.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
