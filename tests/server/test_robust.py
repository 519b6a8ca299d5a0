"""Flower's robust aggregators by name: one poisoned client moves FedAvg, not them."""

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord
from flwr.serverapp.strategy import Bulyan, FedMedian, FedTrimmedAvg, Krum, MultiKrum

from clients.client_app import app
from fednas.config import ConfigError, check_against_federation, parse_config, search_to_record
from fednas.federated import client_train, initial_arrays
from server.guard import ReplyGuard
from server.strategies import RoundBook, build_strategy
from tests.server.inprocess_grid import InProcessGrid, through

FLAT = {"dag-nodes": 3, "channels": 4, "local-steps": 1, "batch-size": 8, "alpha-batch-size": 2, "max-samples": 400,
        "head": "flatten"}
POISONED = 1  # this partition replies alpha = 1e30: finite and well-formed, so the guard lets it through


def run_round(flat, clients):
    cfg = parse_config({**FLAT, **flat, "min-train-clients": clients, "fault-partitions": f"{POISONED}:huge"})
    guard = ReplyGuard(build_strategy(cfg.fed, clients))
    book = RoundBook(guard, guard=guard)
    result = book.start(grid=InProcessGrid(cfg.flat(), clients, through(app)),
                        initial_arrays=ArrayRecord(initial_arrays(cfg)), num_rounds=1,
                        train_config=ConfigRecord(search_to_record(cfg.search)))
    assert book.current["rejected"] == 0  # nothing malformed: only the aggregator stands between
    return {k: v.numpy() for k, v in result.arrays.items()}, cfg


def honest_alphas(cfg, clients):
    init = initial_arrays(cfg)
    return np.stack([client_train(cfg, cfg.search, init, partition_id=p, num_clients=clients,
                                  server_round=1).arrays["alpha"].numpy()
                     for p in range(clients) if p != POISONED])


# Krum's squared distances to alpha = 1e30 overflow float32 (inf, then inf - inf): the
# poisoned reply scores worst either way; NumPy says so with RuntimeWarnings
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                            "ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("name, clients, flat, cls", [
    ("fedmedian", 4, {}, FedMedian),
    ("fedtrimmedavg", 4, {"trimmed-fraction": 0.25}, FedTrimmedAvg),
    ("krum", 4, {"byzantine-clients": 1}, Krum),
    ("multikrum", 4, {"byzantine-clients": 1}, MultiKrum),
    ("bulyan", 7, {"byzantine-clients": 1}, Bulyan),
])
def test_one_poisoned_client_moves_fedavg_and_not_the_robust_aggregate(name, clients, flat, cls):
    cfg = parse_config({**FLAT, "strategy": name, **flat})
    assert type(build_strategy(cfg.fed, clients)) is cls
    plain, _ = run_round({}, clients)
    robust, cfg = run_round({"strategy": name, **flat}, clients)
    honest = honest_alphas(cfg, clients)
    assert np.abs(plain["alpha"]).max() > 1e28  # FedAvg: one client of `clients` drags alpha to ~1e30 / n
    lo, hi = honest.min(0), honest.max(0)
    tol = 1e-6
    assert ((robust["alpha"] >= lo - tol) & (robust["alpha"] <= hi + tol)).all(), name  # within the honest range
    if name == "krum":  # Krum picks one reply: an honest one
        assert any(np.allclose(robust["alpha"], h, atol=1e-7) for h in honest)
    if name == "multikrum":  # keeps n - f = 3 replies: exactly the honest ones, example-weighted
        weights = [client_train(cfg, cfg.search, initial_arrays(cfg), partition_id=p, num_clients=clients,
                                server_round=1).metrics["num-examples"] for p in range(clients) if p != POISONED]
        np.testing.assert_allclose(robust["alpha"], np.average(honest, axis=0, weights=weights), rtol=1e-5, atol=1e-7)


def test_robust_settings_reach_flowers_strategies():
    fed = parse_config({"strategy": "fedtrimmedavg", "trimmed-fraction": 0.3}).fed
    assert build_strategy(fed, 5).beta == 0.3
    fed = parse_config({"strategy": "multikrum", "byzantine-clients": 1}).fed
    s = build_strategy(fed, 6)
    assert s.num_malicious_nodes == 1 and s.num_nodes_to_select == 5  # sampled minus f
    fed = parse_config({"strategy": "multikrum", "byzantine-clients": 1, "krum-select": 2}).fed
    assert build_strategy(fed, 6).num_nodes_to_select == 2
    with pytest.raises(ConfigError, match="trimmed-fraction"):
        parse_config({"trimmed-fraction": 0.5})


def test_bulyan_and_multikrum_minimums_are_checked_before_the_run():
    with pytest.raises(ConfigError, match=r"at least 7 replies a round \(4f \+ 3\); the federation samples 4"):
        check_against_federation(parse_config({"strategy": "bulyan", "byzantine-clients": 1}), 4)
    check_against_federation(parse_config({"strategy": "bulyan", "byzantine-clients": 1}), 7)
    with pytest.raises(ConfigError, match="krum-select"):
        check_against_federation(parse_config({"strategy": "multikrum", "krum-select": 5}), 4)
