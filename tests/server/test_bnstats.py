"""Pooled BatchNorm statistics around a real Flower strategy, with real ClientApps, in one process."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg

from clients.client_app import app
from fednas.batchnorm import is_statistic, pool_statistics
from fednas.config import parse_config
from fednas.federated import client_statistics
from server.bnstats import PooledStatistics
from server.strategies import RoundBook
from tests.server.inprocess_grid import run_strategy

FLAT = {"dag-nodes": 3, "channels": 4, "local-steps": 3, "batch-size": 8, "alpha-batch-size": 4, "max-samples": 300}
CLIENTS = 3


def _run(strategy, cfg, query=None, rounds=1):
    return run_strategy(strategy, FLAT, CLIENTS, rounds, query=query)


def _fedavg():
    # RoundBook: replies in partition order, so that FedAvg's sums do not depend on sampling order
    return RoundBook(FedAvg(fraction_evaluate=0.0, min_train_nodes=CLIENTS, min_available_nodes=CLIENTS))


@pytest.fixture(scope="module")
def cfg():
    return parse_config(FLAT)


@pytest.fixture(scope="module")
def runs(cfg):
    return _run(_fedavg(), cfg)[0], _run(PooledStatistics(_fedavg()), cfg)[0]


def test_only_the_statistics_change_and_they_are_the_pooled_ones_of_the_aggregate(cfg, runs):
    plain, pooled = (r.arrays.to_torch_state_dict() for r in runs)
    assert plain.keys() == pooled.keys()
    for k in plain:
        if not is_statistic(k):
            assert torch.equal(plain[k], pooled[k]), k
    # independently: every client's pass under the aggregate, pooled by sample count
    parts = [client_statistics(cfg, cfg.search, plain, partition_id=p, num_clients=CLIENTS, server_round=1)
             for p in range(CLIENTS)]
    expected = pool_statistics(parts)
    assert set(expected) == {k for k in plain if is_statistic(k)}
    for k, v in expected.items():
        torch.testing.assert_close(pooled[k], v, msg=k)
        assert not torch.allclose(plain[k], v), k  # FedAvg's average of moving averages is something else
    assert runs[1].train_metrics_clientapp[1]["bn-clients"] == CLIENTS


def _broken(pid: int, garbage: bool):
    def query(msg: Message, context):
        if int(context.node_config["partition-id"]) != pid:
            return app(msg, context)
        if not garbage:
            raise RuntimeError("this client fails its statistics")
        reply = app(msg, context)
        stats = reply.content["statistics"].to_numpy_ndarrays()
        names = list(reply.content["statistics"].keys())
        reply.content["statistics"] = ArrayRecord({n: np.full_like(a, np.nan) for n, a in zip(names, stats)})
        return reply
    return query


@pytest.mark.parametrize("garbage", [False, True])
def test_a_client_that_fails_or_lies_is_left_out(cfg, garbage, caplog):
    result, _ = _run(PooledStatistics(_fedavg()), cfg, query=_broken(1, garbage))
    assert result.train_metrics_clientapp[1]["bn-clients"] == CLIENTS - 1
    arrays = result.arrays.to_torch_state_dict()
    assert all(torch.isfinite(v).all() for v in arrays.values())
    assert "left out" in caplog.text


def test_without_any_usable_reply_the_aggregated_statistics_stay(cfg, runs):
    def silent(msg, context):
        return Message(RecordDict({"metrics": MetricRecord({"bn-samples": 0})}), reply_to=msg)

    result, _ = _run(PooledStatistics(_fedavg()), cfg, query=silent)
    plain = runs[0].arrays.to_torch_state_dict()
    for k, v in result.arrays.to_torch_state_dict().items():
        assert torch.equal(v, plain[k]), k
    assert result.train_metrics_clientapp[1]["bn-clients"] == 0
