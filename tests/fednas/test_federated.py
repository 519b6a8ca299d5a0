import torch

from tests import reference
from fednas.config import parse_config
from fednas.data import client_data, dataset_from_config, make_pools
from fednas.federated import central_evaluate, client_evaluate, client_train, genotype_of, initial_arrays

BASE = {"channels": 4, "local-steps": 2, "batch-size": 8, "alpha-batch-size": 4, "max-samples": 300}


def _round(cfg, arrays, pid=0):
    return client_train(cfg, cfg.search, arrays, partition_id=pid, num_clients=2, server_round=1)


def test_a_client_round_is_reproducible_from_config_and_seed():
    cfg = parse_config({**BASE, "nodes": 3})
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
    cfg = parse_config({**BASE, "nodes": 3, "share-weights": False})
    arrays = initial_arrays(cfg)
    assert set(arrays) == {"alpha"}
    out = _round(cfg, arrays)
    assert set(out.arrays) == {"alpha"} and out.theta  # θ stays with the client
