"""Flower's FedProx with the real ClientApp: the proximal term travels and acts; μ = 0 is FedAvg."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord
from flwr.serverapp.strategy import FedAvg, FedProx

from clients.client_app import app
from fednas.config import parse_config, search_to_record
from fednas.federated import initial_arrays
from server.strategies import RoundBook
from tests.server.inprocess_grid import InProcessGrid

FLAT = {"nodes": 3, "channels": 4, "local-steps": 3, "batch-size": 8, "alpha-batch-size": 4, "max-samples": 300,
        "theta-lr": 0.1, "alpha-lr": 0.01, "proximal-alpha": True}
CLIENTS = 2


def _run(strategy, rounds=2):
    cfg = parse_config(FLAT)
    grid = InProcessGrid(cfg.flat(), CLIENTS, app)
    result = RoundBook(strategy).start(grid=grid, initial_arrays=ArrayRecord(initial_arrays(cfg)), num_rounds=rounds,
                                       train_config=ConfigRecord(search_to_record(cfg.search)))
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
