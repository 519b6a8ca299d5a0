"""Delta replies through a real Flower strategy, the real ClientApp (with its mods) and the eavesdropper."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord
from flwr.serverapp.strategy import FedAvg, FedAvgM

from clients.client_app import app
from fednas.captures import CaptureStore
from fednas.config import parse_config
from fednas.federated import client_train, initial_arrays
from server.deltas import DeltaReplies
from server.eavesdrop import Eavesdropper
from server.strategies import RoundBook
from tests.server.inprocess_grid import run_strategy

FLAT = {"dag-nodes": 3, "channels": 4, "local-steps": 3, "batch-size": 8, "alpha-batch-size": 4, "max-samples": 300,
        "theta-lr": 0.1, "alpha-lr": 0.01}
CLIENTS = 2


def _run(strategy, client=None, rounds=2):
    result, grid = run_strategy(RoundBook(strategy), FLAT, CLIENTS, rounds, train=client)
    return result.arrays.to_torch_state_dict(), grid


def _kwargs():
    return {"fraction_evaluate": 0.0, "min_train_nodes": CLIENTS, "min_available_nodes": CLIENTS}


@pytest.mark.parametrize("cls", [FedAvg, FedAvgM])
def test_deltas_give_the_global_model_of_weights_up_to_rounding(cls, tmp_path):
    weights, _ = _run(cls(**_kwargs()))
    store = CaptureStore(tmp_path)
    deltas, grid = _run(Eavesdropper(DeltaReplies(cls(**_kwargs())), store))
    assert {m.content["config"]["reply"] for m in grid.sent} == {"delta"}
    assert weights.keys() == deltas.keys()
    for k in weights:
        np.testing.assert_allclose(deltas[k].numpy(), weights[k].numpy(), rtol=1e-5, atol=1e-7, err_msg=k)
    assert not np.array_equal(deltas["alpha"].numpy(), initial_arrays(parse_config(FLAT))["alpha"].numpy())
    # the eavesdropper outside saw Δα and stored α_t2 = α_t1 + Δα: the client's new α, as with weights replies
    cfg = parse_config(FLAT)
    assert len(store.ids()) == 2 * CLIENTS
    for cid in store.ids():
        c = store.load(cid)
        assert c.status == "ok"
        sent = {k: torch.as_tensor(v) for k, v in {**c.alpha_t1, **c.theta_t1}.items()}
        own = client_train(cfg, cfg.search, sent, partition_id=c.partition_id, num_clients=CLIENTS,
                           server_round=c.round)
        np.testing.assert_allclose(c.alpha_t2["alpha"], own.arrays["alpha"].numpy(), rtol=1e-5, atol=1e-8)


def test_an_update_that_cannot_become_weights_is_left_out(caplog):
    def broken(msg, context):
        out = app(msg, context)
        if int(context.node_config["partition-id"]) == 1:
            record = out.content["arrays"]
            out.content["arrays"] = ArrayRecord({k: Array(np.zeros(3, np.float32)) for k in record.keys()})
        return out
    arrays, grid = _run(DeltaReplies(FedAvg(**_kwargs())), client=broken, rounds=1)
    # FedAvg of the one reply left, partition 0's: the global model is that client's own round
    cfg = parse_config(FLAT)
    own = client_train(cfg, cfg.search, initial_arrays(cfg), partition_id=0, num_clients=CLIENTS, server_round=1)
    assert arrays.keys() == own.arrays.keys()
    for k in arrays:
        np.testing.assert_allclose(arrays[k].numpy(), own.arrays[k].numpy(), rtol=1e-5, atol=1e-7, err_msg=k)
    left_out = [r for r in caplog.records if "left out" in r.getMessage()]
    assert len(left_out) == 1 and "node 1002" in left_out[0].getMessage()  # partition 1's node, and only it
