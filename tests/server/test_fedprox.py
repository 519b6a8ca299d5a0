"""Flower's FedProx with the real ClientApp: the proximal term travels and acts; μ = 0 is FedAvg."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.serverapp.strategy import FedAvg, FedProx

from server.strategies import RoundBook
from tests.server.inprocess_grid import run_strategy

FLAT = {"dag-nodes": 3, "channels": 4, "local-steps": 3, "batch-size": 8, "alpha-batch-size": 4, "max-samples": 300,
        "theta-lr": 0.1, "alpha-lr": 0.01, "proximal-alpha": True}
CLIENTS = 2


def _run(strategy, rounds=2):
    result, grid = run_strategy(RoundBook(strategy), FLAT, CLIENTS, rounds)
    return result.arrays.to_numpy_ndarrays(), grid


def _kwargs():
    return {"fraction_evaluate": 0.0, "min_train_nodes": CLIENTS, "min_available_nodes": CLIENTS}


@pytest.fixture(scope="module")
def fedavg():
    return _run(FedAvg(**_kwargs()))[0]


def test_mu_zero_is_fedavg_exactly(fedavg):
    prox, grid = _run(FedProx(**_kwargs(), proximal_mu=0.0))
    assert all(m.content["config"]["proximal-mu"] == 0.0 for m in grid.sent)  # the clients built the term
    for a, b in zip(fedavg, prox):
        np.testing.assert_array_equal(a, b)


def test_a_positive_mu_reaches_the_clients_and_changes_the_model(fedavg):
    prox, grid = _run(FedProx(**_kwargs(), proximal_mu=1.0))
    assert {m.content["config"]["proximal-mu"] for m in grid.sent} == {1.0}
    assert any(not np.array_equal(a, b) for a, b in zip(fedavg, prox))
