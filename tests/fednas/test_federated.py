import pytest
import torch

from fednas.batchnorm import calibration_batches, is_statistic, pool_statistics, recalibrate, statistics_state
from fednas.config import parse_config
from fednas.data import client_data, dataset_from_config, make_pools
from fednas.federated import (central_evaluate, client_evaluate, client_statistics, client_train, genotype_of,
                              initial_arrays, model_for, recalibrate_on_theta)
from tests import reference

BASE = {"channels": 4, "local-steps": 2, "batch-size": 8, "alpha-batch-size": 4, "max-samples": 300}


def _round(cfg, arrays, pid=0):
    return client_train(cfg, cfg.search, arrays, partition_id=pid, num_clients=2, server_round=1)


def test_a_client_round_is_reproducible_from_config_and_seed():
    cfg = parse_config({**BASE, "dag-nodes": 3})
    a, b = _round(cfg, initial_arrays(cfg)), _round(cfg, initial_arrays(cfg))
    for k in a.arrays:
        assert torch.equal(a.arrays[k], b.arrays[k]), k
    assert a.audit["alpha-indices"] == b.audit["alpha-indices"]
    other = _round(cfg, initial_arrays(cfg), pid=1)
    assert not torch.equal(a.arrays["alpha"], other.arrays["alpha"])


def test_the_darts_space_runs_a_federated_round():
    cfg = parse_config({**BASE, "space": "darts", "layers": 3})
    arrays = initial_arrays(cfg)
    out = _round(cfg, arrays)
    assert {"alpha_normal", "alpha_reduce"} <= set(out.arrays)
    assert not torch.equal(out.arrays["alpha_normal"], arrays["alpha_normal"])
    # the reported accuracies are the trained model's on the right data, counted independently
    pools = make_pools(len(dataset_from_config(cfg.data, cfg.run.seed)), cfg.data, cfg.run.seed)
    assert central_evaluate(cfg, out.arrays)["central-acc"] == reference.accuracy(cfg, out.arrays, pools.test)
    _, split = client_data(cfg.data, cfg.run.seed, 1, 2)
    assert client_evaluate(cfg, out.arrays, partition_id=1, num_clients=2)["eval-acc"] == \
        reference.accuracy(cfg, out.arrays, split.test)
    assert set(genotype_of(cfg, out.arrays).cells) == {"normal", "reduce"}


def test_without_shared_weights_only_alpha_travels():
    cfg = parse_config({**BASE, "dag-nodes": 3, "share-weights": False})
    arrays = initial_arrays(cfg)
    assert set(arrays) == {"alpha"}
    out = _round(cfg, arrays)
    assert set(out.arrays) == {"alpha"} and out.theta  # θ stays with the client


def _statistics(arrays):
    return {k: v for k, v in arrays.items() if is_statistic(k)}


def test_pooled_statistics_have_the_mean_of_a_pass_over_the_union_of_the_clients_d_theta():
    cfg = parse_config({**BASE, "dag-nodes": 3, "batch-size": 10})
    arrays = _round(cfg, initial_arrays(cfg)).arrays
    parts = [client_statistics(cfg, cfg.search, arrays, partition_id=p, num_clients=2) for p in range(2)]
    pooled = pool_statistics(parts)
    # the same batches, one pass over both clients' D^θ
    dataset, _ = client_data(cfg.data, cfg.run.seed, 0, 2)
    model = model_for(cfg, dataset.spec, "cpu")
    model.load_arrays(arrays)
    splits = [client_data(cfg.data, cfg.run.seed, p, 2)[1] for p in range(2)]
    batches = [b for s in splits for b in calibration_batches(dataset, s.theta, 10)]
    assert recalibrate(model, batches) == sum(n for _, n in parts) == sum(len(s.theta) for s in splits)
    union = statistics_state(model)
    for k, v in union.items():
        if k.endswith("running_mean"):
            torch.testing.assert_close(pooled[k], v, rtol=1e-4, atol=1e-5, msg=k)
        else:  # plus the spread of the two clients' means
            assert (pooled[k] >= v * (1 - 1e-5) - 1e-6).all(), k


@pytest.mark.parametrize("mode, share, recalibrated", [
    ("client", True, True), ("pooled", True, False), ("ema", True, False), ("pooled", False, True), ("ema", False, False),
])
def test_a_client_recalibrates_what_it_replies_or_keeps_when_asked(mode, share, recalibrated):
    cfg = parse_config({**BASE, "dag-nodes": 3, "bn-statistics": mode, "share-weights": share})
    out = _round(cfg, initial_arrays(cfg))
    theta = out.arrays if share else out.theta
    dataset, split = client_data(cfg.data, cfg.run.seed, 0, 2)
    model = model_for(cfg, dataset.spec, "cpu")
    model.load_arrays({**theta, **{k: v for k, v in out.arrays.items() if k.startswith("alpha")}})
    recalibrate_on_theta(model, dataset, split, cfg.search, "cpu")
    again = statistics_state(model)
    same = all(torch.allclose(_statistics(theta)[k], v, rtol=1e-5, atol=1e-6) for k, v in again.items())
    assert same == recalibrated


def test_in_warm_up_rounds_only_theta_moves():
    cfg = parse_config({**BASE, "dag-nodes": 3, "alpha-warmup-rounds": 1})
    arrays = initial_arrays(cfg)
    warm = client_train(cfg, cfg.search, arrays, partition_id=0, num_clients=2, server_round=1)
    assert torch.equal(warm.arrays["alpha"], arrays["alpha"])
    assert any(not torch.equal(warm.arrays[k], arrays[k]) for k in arrays if not k.startswith("alpha"))
    assert warm.audit["alpha-steps"] == 0 and warm.audit["alpha-indices"] == []
    after = client_train(cfg, cfg.search, warm.arrays, partition_id=0, num_clients=2, server_round=2)
    assert not torch.equal(after.arrays["alpha"], warm.arrays["alpha"]) and after.audit["alpha-steps"] == 2
