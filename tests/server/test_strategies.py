import pytest
from flwr.serverapp.strategy import FedAvg, FedAvgM, FedProx

from fednas.config import ConfigError, parse_config
from server.strategies import build_strategy


def test_minimum_node_counts_never_exceed_the_federation():
    cfg = parse_config({"min-train-clients": 10, "min-evaluate-clients": 8})
    s = build_strategy(cfg.fed, num_nodes=3)
    assert isinstance(s, FedAvg)
    assert s.min_train_nodes == 3 and s.min_evaluate_nodes == 3 and s.min_available_nodes == 3


def test_strategies_come_from_a_registry():
    cfg = parse_config({"strategy": "fedavgm", "fraction-train": 0.5})
    s = build_strategy(cfg.fed, num_nodes=4)
    assert isinstance(s, FedAvgM) and s.fraction_train == 0.5


def test_fedprox_is_flowers_with_the_configured_mu():
    s = build_strategy(parse_config({"strategy": "fedprox", "proximal-mu": 0.3}).fed, num_nodes=3)
    assert isinstance(s, FedProx) and s.proximal_mu == 0.3


def test_a_proximal_mu_without_fedprox_is_refused():
    with pytest.raises(ConfigError, match="'proximal-mu'"):
        parse_config({"proximal-mu": 0.1})
