"""The paradigm registry, its config keys, and every paradigm through fednas.federated's helpers
(the DARTS round itself: test_darts_round.py)."""

import numpy as np
import pytest
import torch

from fednas.config import PARADIGMS as CONFIG_PARADIGMS
from fednas.config import ConfigError, parse_config
from fednas.data import client_data, make_pools
from fednas.federated import client_train, round_seed
from fednas.paradigms import PARADIGMS, get_paradigm
from fednas.paradigms.base import STATE_PREFIX, split_state
from fednas.paradigms.federation import fedavg, run_federation

TINY = {"dag-nodes": 3, "channels": 4, "local-steps": 2, "batch-size": 8, "alpha-batch-size": 4, "max-samples": 300,
        "enas-controller-steps": 1, "enas-num-aggregate": 2, "enas-derive-samples": 3, "enas-lstm-size": 8,
        "smash-candidates": 4, "smash-hyper-channels": 8}


def test_the_config_offers_exactly_the_registered_paradigms():
    assert CONFIG_PARADIGMS is PARADIGMS and tuple(PARADIGMS) == ("darts", "pdarts", "enas", "smash")
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


def test_fedavg_weights_replies_by_examples():
    out = fedavg([({"a": np.array([1.0, 2.0])}, 1.0), ({"a": np.array([4.0, 8.0])}, 3.0)])
    np.testing.assert_allclose(out["a"], [3.25, 6.5])


@torch.no_grad()
def _by_hand(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` in eval mode, one forward over the whole set."""
    model.eval()
    logits = model(x)
    return float(torch.nn.functional.cross_entropy(logits, y)), float((logits.argmax(1) == y).double().mean())


@pytest.mark.parametrize("name", ["pdarts", "enas", "smash"])
def test_every_paradigm_runs_through_the_project_federated_helpers(name):
    # What the ClientApp and ServerApp call (fednas.federated, dispatched by the paradigm key)
    # gives what the paradigm's own round gives, and accuracies a forward pass by hand gives.
    from fednas.federated import central_evaluate, client_evaluate, genotype_of, initial_arrays

    cfg = parse_config({**TINY, "paradigm": name})
    paradigm = get_paradigm(name)
    arrays = initial_arrays(cfg)
    model_arrays, state = paradigm.server_configure(cfg, 1, {k: v.numpy() for k, v in arrays.items()})
    sent = {**model_arrays, **state}
    torch.manual_seed(0)  # P-DARTS's skip-connect dropout draws from torch's global generator
    result = client_train(cfg, cfg.search, sent, partition_id=0, num_clients=2, server_round=1)
    dataset, split = client_data(cfg.data, cfg.run.seed, 0, 2)
    torch.manual_seed(0)
    own = paradigm.client_round(cfg, cfg.search, sent, dataset, split, seed=round_seed(cfg, 1, 0), partition_id=0,
                                server_round=1)
    timeless = [{k: v for k, v in r.metrics.items() if k != "train-seconds"} for r in (result, own)]
    assert result.arrays.keys() == own.arrays.keys() and timeless[0] == timeless[1]
    for k in own.arrays:
        torch.testing.assert_close(result.arrays[k], own.arrays[k], rtol=0, atol=0)
    assert not any(k.startswith(STATE_PREFIX) for k in result.arrays)  # the server state is never sent back
    alpha = [k for k in result.arrays if k.startswith("alpha")]
    assert alpha and any(not np.array_equal(result.arrays[k].numpy(), sent[k]) for k in alpha)  # it searched
    new = {**{k: v.numpy() for k, v in result.arrays.items()}, **state}
    model = paradigm.model(cfg, dataset.spec, new)
    _, other = client_data(cfg.data, cfg.run.seed, 1, 2)
    idx = other.test if len(other.test) else other.alpha
    loss, acc = _by_hand(model, dataset.x[idx], dataset.y[idx])
    got = client_evaluate(cfg, new, partition_id=1, num_clients=2)
    assert got["num-examples"] == len(idx)
    assert got["eval-acc"] == pytest.approx(acc, abs=1e-12) and got["eval-loss"] == pytest.approx(loss, rel=1e-5)
    test = make_pools(len(dataset), cfg.data, cfg.run.seed).test
    loss, acc = _by_hand(model, dataset.x[test], dataset.y[test])
    got = central_evaluate(cfg, new)
    assert got["central-acc"] == pytest.approx(acc, abs=1e-12) and got["central-loss"] == pytest.approx(loss, rel=1e-5)
    assert genotype_of(cfg, new) == paradigm.genotype(cfg, dataset.spec, new)
    assert genotype_of(cfg, new).space == "dag"


def test_a_client_keeping_its_own_weights_restarts_them_at_a_stage_change():
    cfg = parse_config({**TINY, "paradigm": "pdarts", "share-weights": False, "num-server-rounds": 2})
    seen = []
    arrays = run_federation(cfg, 2, lambda r, a, replies: seen.append(replies))
    assert not any(not k.startswith(("alpha", STATE_PREFIX)) for k in arrays)  # θ never left the clients
    model_arrays, _ = split_state(arrays)
    assert model_arrays["alpha"].shape == (3, 5)
    assert all(rep.theta for rep in seen[-1])


@pytest.mark.parametrize("name", ["enas", "smash"])
def test_a_round_without_a_proximal_term_refuses_fedprox(name):
    cfg = parse_config({**TINY, "paradigm": name})
    dataset, split = client_data(cfg.data, cfg.run.seed, 0, 2)
    arrays = get_paradigm(name).initial_arrays(cfg, dataset.spec)
    with pytest.raises(ValueError, match=f"paradigm '{name}' has no proximal term"):
        get_paradigm(name).client_round(cfg, cfg.search, arrays, dataset, split, seed=0, proximal_mu=0.1)
