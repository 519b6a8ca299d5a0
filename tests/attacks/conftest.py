"""A finished run directory made without Flower: real client rounds, FedAvg by hand, RunLog."""

from __future__ import annotations

from pathlib import Path

import pytest

from attacks.runner import one_thread  # the session fixture runs before the autouse one
from fednas.config import Config, parse_config
from fednas.federated import client_train, initial_arrays
from fednas.runlog import RunLog

MINI_RUN = {"dag-nodes": 3, "channels": 4, "local-steps": 2, "num-server-rounds": 1, "batch-size": 16,
            "alpha-batch-size": 16, "max-samples": 400, "seed": 3}


def make_run_dir(path: Path, cfg: Config, clients: int = 2) -> Path:
    """Run ``num-server-rounds`` rounds of every client and FedAvg (equal weights), as the
    ServerApp would, and write the run directory through :class:`RunLog`."""
    log = RunLog(cfg, path, {"supernodes": clients})
    arrays = initial_arrays(cfg)
    for rnd in range(1, cfg.fed.num_server_rounds + 1):
        replies = [client_train(cfg, cfg.search, arrays, partition_id=p, num_clients=clients, server_round=rnd)
                   for p in range(clients)]
        arrays = {k: sum(r.arrays[k] for r in replies) / clients for k in arrays}
    log.finish({k: v.numpy() for k, v in arrays.items()})
    return path



@pytest.fixture(scope="session")
def mini_run(tmp_path_factory) -> Path:
    """A completed 2-client, 1-round run directory (digits, 3-node dag)."""
    with one_thread():
        return make_run_dir(tmp_path_factory.mktemp("run"), parse_config(MINI_RUN))
