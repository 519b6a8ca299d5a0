"""The federated work without Flower: ``python -m benchmarks.loop '<json>'`` prints one JSON line.

What the ServerApp and ClientApps do each round, as plain calls in one fresh process:
every client's :func:`fednas.federated.client_train` from the global arrays, one after the
other, then FedAvg (weighted by ``num-examples``, as Flower's) and the round's genotype.
The run is configured exactly as the launcher configures its ``flwr run``.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch

from fednas.config import parse_config
from fednas.federated import ClientRound, client_train, genotype_of, initial_arrays
from fednas.stats import weighted_mean
from simulations.launcher import PROJECT_ROOT, prepare, pyproject_defaults


def fedavg(replies: Sequence[ClientRound]) -> dict[str, torch.Tensor]:
    """Weighted mean of the replies' arrays, weights = ``num-examples``."""
    weights = [float(r.metrics["num-examples"]) for r in replies]
    return {k: weighted_mean([r.arrays[k].double() for r in replies], weights).to(replies[0].arrays[k].dtype)
            for k in replies[0].arrays}


def run_loop(sets: list[str], clients: int, threads: int) -> dict[str, Any]:
    """Rounds of local search in a plain loop; per-round seconds and the process's peak RSS."""
    torch.set_num_threads(threads)
    overrides, federation = prepare(PROJECT_ROOT, None, sets, {"clients": clients})
    cfg = parse_config({**pyproject_defaults(PROJECT_ROOT), **overrides})
    t0 = time.perf_counter()
    arrays = initial_arrays(cfg)
    seconds = []
    for server_round in range(1, cfg.fed.num_server_rounds + 1):
        t = time.perf_counter()
        replies = [client_train(cfg, cfg.search, arrays, partition_id=pid, num_clients=federation.clients,
                                server_round=server_round) for pid in range(federation.clients)]
        arrays = fedavg(replies)
        genotype_of(cfg, arrays)
        seconds.append(time.perf_counter() - t)
    return {"round-seconds": seconds, "total-seconds": time.perf_counter() - t0, "threads": threads,
            "peak-rss-mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    print(json.dumps(run_loop(spec["sets"], spec["clients"], spec["threads"])))
