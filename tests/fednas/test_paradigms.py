"""The paradigm registry, its config keys, and DARTS through the paradigm interface."""

import numpy as np
import pytest
import torch

from fednas.config import PARADIGMS as CONFIG_PARADIGMS
from fednas.config import ConfigError, parse_config
from fednas.data import client_data
from fednas.federated import client_train, round_seed
from fednas.paradigms import PARADIGMS, get_paradigm
from fednas.paradigms.base import STATE_PREFIX, split_state
from fednas.paradigms.federation import fedavg, run_federation

TINY = {"dag-nodes": 3, "channels": 4, "local-steps": 2, "batch-size": 8, "alpha-batch-size": 4, "max-samples": 300,
        "enas-controller-steps": 1, "enas-num-aggregate": 2, "enas-derive-samples": 3, "enas-lstm-size": 8,
        "smash-candidates": 4, "smash-hyper-channels": 8}


def test_the_config_offers_exactly_the_registered_paradigms():
    assert tuple(PARADIGMS) == CONFIG_PARADIGMS
    assert parse_config({}).paradigm.paradigm == "darts"


def test_an_unknown_paradigm_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown paradigm 'nasnet'; choose one of: darts, pdarts, enas, smash"):
        get_paradigm("nasnet")
    with pytest.raises(ConfigError, match="'paradigm' = 'nasnet' is not allowed"):
        parse_config({"paradigm": "nasnet"})


@pytest.mark.parametrize("flat, message", [
    ({"paradigm": "smash", "dp-sgd": True}, "no alpha step for 'dp-sgd'"),
    ({"paradigm": "enas", "space": "darts"}, "built for 'space' = dag only"),
    ({"paradigm": "pdarts", "strategy": "fedavgm"}, "FedAvgM's server momentum"),
    ({"paradigm": "pdarts", "dp-sgd": True, "dp-sgd-batchnorm": "example"}, "skip-connect dropout"),
    ({"pdarts-keep": "5,5,1"}, "'pdarts-keep' = '5,5,1': expected decreasing counts"),
    ({"pdarts-dropout": "0.1,0.4"}, "'pdarts-dropout' = '0.1,0.4': one value per stage"),
    ({"pdarts-dag-cells": "1,x,3"}, "'pdarts-dag-cells' = '1,x,3': expected comma-separated ints"),
    ({"paradigm": "enas", "alpha-order": "second"}, "has no alpha gradient"),
])
def test_impossible_combinations_fail_when_the_config_is_parsed(flat, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(flat)


def test_the_darts_paradigm_is_the_projects_darts_round():
    cfg = parse_config(TINY)
    dataset, split = client_data(cfg.data, cfg.run.seed, 1, 2)
    arrays = get_paradigm("darts").initial_arrays(cfg, dataset.spec)
    ours = get_paradigm("darts").client_round(cfg, cfg.search, arrays, dataset, split, seed=round_seed(cfg, 1, 1),
                                              partition_id=1, server_round=1)
    project = client_train(cfg, cfg.search, arrays, partition_id=1, num_clients=2, server_round=1)
    assert ours.arrays.keys() == project.arrays.keys()
    for k in ours.arrays:
        torch.testing.assert_close(ours.arrays[k], project.arrays[k], rtol=0, atol=0)
    assert ours.audit == project.audit


def test_fedavg_weights_replies_by_examples():
    out = fedavg([({"a": np.array([1.0, 2.0])}, 1.0), ({"a": np.array([4.0, 8.0])}, 3.0)])
    np.testing.assert_allclose(out["a"], [3.25, 6.5])


@pytest.mark.parametrize("name", ["pdarts", "enas", "smash"])
def test_every_paradigm_runs_through_the_project_federated_helpers(name):
    # what the ClientApp and ServerApp call: fednas.federated, dispatched by the paradigm key
    from fednas.federated import central_evaluate, client_evaluate, genotype_of, initial_arrays

    cfg = parse_config({**TINY, "paradigm": name})
    arrays = initial_arrays(cfg)
    assert all(isinstance(v, torch.Tensor) for v in arrays.values())
    paradigm = get_paradigm(name)
    model_arrays, state = paradigm.server_configure(cfg, 1, {k: v.numpy() for k, v in arrays.items()})
    sent = {**model_arrays, **state}
    result = client_train(cfg, cfg.search, sent, partition_id=0, num_clients=2, server_round=1)
    assert not any(k.startswith(STATE_PREFIX) for k in result.arrays)  # the server state is never sent back
    assert any(k.startswith("alpha") for k in result.arrays)  # architecture-level state is
    new = {**{k: v.numpy() for k, v in result.arrays.items()}, **state}
    assert 0 <= client_evaluate(cfg, new, partition_id=1, num_clients=2)["eval-acc"] <= 1
    assert 0 <= central_evaluate(cfg, new)["central-acc"] <= 1
    assert genotype_of(cfg, new).space == "dag"


def test_a_client_keeping_its_own_weights_restarts_them_at_a_stage_change():
    cfg = parse_config({**TINY, "paradigm": "pdarts", "share-weights": False, "num-server-rounds": 2})
    seen = []
    arrays = run_federation(cfg, 2, lambda r, a, replies: seen.append(replies))
    assert not any(not k.startswith(("alpha", STATE_PREFIX)) for k in arrays)  # θ never left the clients
    model_arrays, _ = split_state(arrays)
    assert model_arrays["alpha"].shape == (3, 5)
    assert all(rep.theta for rep in seen[-1])
