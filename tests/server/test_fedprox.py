"""Flower's FedProx with the real ClientApp: the proximal term travels and acts; μ = 0 is FedAvg."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.serverapp.strategy import FedAvg, FedProx

from fednas.config import parse_config
from fednas.federated import initial_arrays
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


def _global(keys: dict, mu: float, steps: int) -> dict[str, np.ndarray]:
    """The global model after one round of FedProx (μ) with ``steps`` local steps, by array name."""
    result, grid = run_strategy(RoundBook(FedProx(**_kwargs(), proximal_mu=mu)), {**keys, "local-steps": steps},
                                CLIENTS, 1)
    assert {m.content["config"]["proximal-mu"] for m in grid.sent} == {mu}  # what the clients were told
    return {k: v.numpy() for k, v in result.arrays.items()}


@pytest.mark.parametrize("on", ["theta", "alpha"])
def test_a_positive_mu_adds_its_proximal_step_to_the_second_local_step(on):
    # By hand (Li et al. 2020): the term mu/2 ||w - w0||^2 adds mu (w - w0) to w's gradient. At
    # the first local step w = w0: nothing. The second starts from the same w1 with or without
    # mu (same batches, seeds, momentum buffer), so SGD's step differs by exactly
    # -lr mu (w1 - w0), per client, and FedAvg being linear, for the global model too, where
    # w1 is the global model after one local step. Everything else is the same bit for bit.
    keys = {**FLAT, "theta-grad-clip": 0.0, "proximal-alpha": on == "alpha"}  # clipping is not linear
    if on == "alpha":
        keys.update({"alpha-optimizer": "sgd", "alpha-lr": 0.5})  # Adam's step is not linear in the gradient
    mu, lr = 0.7, keys["alpha-lr" if on == "alpha" else "theta-lr"]
    start = {k: np.asarray(v) for k, v in initial_arrays(parse_config(keys)).items()}  # what round 1 sends
    one = _global(keys, 0.0, 1)
    plain, prox = _global(keys, 0.0, 2), _global(keys, mu, 2)
    alpha = {k for k in start if k.startswith("alpha")}
    buffers = {k for k in start if "running_" in k}
    moved = alpha if on == "alpha" else set(start) - alpha - buffers
    # the predicted shift must stand well above the tolerance, or the check below says nothing
    assert moved and max(float(np.abs(lr * mu * (one[k] - start[k])).max()) for k in moved) > 100 * 1e-6
    for k in start:
        if k in moved:
            expected = plain[k] - lr * mu * (one[k].astype(np.float64) - start[k])
            np.testing.assert_allclose(prox[k], expected, rtol=1e-4, atol=1e-6, err_msg=k)
        elif on == "theta":
            # without the term on alpha, alpha and the BatchNorm statistics never see mu
            np.testing.assert_array_equal(prox[k], plain[k], err_msg=k)
