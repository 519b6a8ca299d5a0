import pytest
from flwr.serverapp.strategy import Bulyan, FedAvg, FedAvgM, FedMedian, FedProx, FedTrimmedAvg, Krum, MultiKrum

from fednas.config import KEYS, ConfigError, parse_config
from server.strategies import STRATEGIES, build_strategy


def test_minimum_node_counts_never_exceed_the_federation():
    cfg = parse_config({"min-train-clients": 10, "min-evaluate-clients": 8})
    s = build_strategy(cfg.fed, num_nodes=3)
    assert isinstance(s, FedAvg)
    assert s.min_train_nodes == 3 and s.min_evaluate_nodes == 3 and s.min_available_nodes == 3


# What each name must build, written out here: Flower's class of that name, and the settings
# beyond FedAvg's it must receive from the config (12 nodes, half sampled: 6 a round, f = 1)
EXPECTED = {
    "fedavg": (FedAvg, {}),
    "fedavgm": (FedAvgM, {}),
    "fedprox": (FedProx, {"proximal_mu": 0.25}),
    "fedmedian": (FedMedian, {}),
    "fedtrimmedavg": (FedTrimmedAvg, {"beta": 0.3}),
    "krum": (Krum, {"num_malicious_nodes": 1}),
    "multikrum": (MultiKrum, {"num_malicious_nodes": 1, "num_nodes_to_select": 5}),  # 6 sampled - f
    "bulyan": (Bulyan, {"num_malicious_nodes": 1}),
}


def test_strategies_come_from_a_registry():
    # the config offers exactly the registered names, and each builds its own Flower class
    # (not a subclass, not a neighbour's) with every setting of the config
    choices = next(k.choices for k in KEYS if k.name == "strategy")
    assert set(choices) == set(STRATEGIES) == set(EXPECTED)
    for name, (cls, extra) in EXPECTED.items():
        keys = {"strategy": name, "fraction-train": 0.5, "fraction-evaluate": 0.25, "min-train-clients": 4,
                "min-evaluate-clients": 3, "trimmed-fraction": 0.3, "byzantine-clients": 1}
        if name == "fedprox":
            keys["proximal-mu"] = 0.25
        s = build_strategy(parse_config(keys).fed, num_nodes=12)
        assert type(s) is cls, name
        assert (s.fraction_train, s.fraction_evaluate) == (0.5, 0.25), name
        assert (s.min_train_nodes, s.min_evaluate_nodes, s.min_available_nodes) == (4, 3, 4), name
        assert {k: getattr(s, k) for k in extra} == extra, name
    chosen = build_strategy(parse_config({"strategy": "multikrum", "byzantine-clients": 1, "krum-select": 3}).fed, 12)
    assert chosen.num_nodes_to_select == 3  # krum-select, when set, wins over sampled - f


def test_fedprox_is_flowers_with_the_configured_mu():
    s = build_strategy(parse_config({"strategy": "fedprox", "proximal-mu": 0.3}).fed, num_nodes=3)
    assert isinstance(s, FedProx) and s.proximal_mu == 0.3


def test_a_proximal_mu_without_fedprox_is_refused():
    with pytest.raises(ConfigError, match="'proximal-mu'"):
        parse_config({"proximal-mu": 0.1})
