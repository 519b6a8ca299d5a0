"""The eavesdropper around real Flower strategies, with real Messages, in one process."""

import csv
import json
import logging

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.serverapp.strategy import FedAvg, FedAvgM

from clients.client_app import app, train
from fednas.captures import CaptureStore
from fednas.config import parse_config, search_to_record
from fednas.federated import client_train, initial_arrays
from fednas.truth import read_truth
from server.eavesdrop import Eavesdropper
from server.strategies import RoundBook
from tests.scales import TINY_INVERSE
from tests.server.inprocess_grid import InProcessGrid, through

FLAT = {"dag-nodes": 3, "channels": 4, "local-steps": 2, "batch-size": 8, "alpha-batch-size": 2, "max-samples": 200,
        "head": "flatten"}
CLIENTS = 2


def _run(strategy, cfg, rounds=2, train_fn=train):
    grid = InProcessGrid(cfg.flat(), CLIENTS, train_fn)
    result = strategy.start(grid=grid, initial_arrays=ArrayRecord(initial_arrays(cfg)), num_rounds=rounds,
                            train_config=ConfigRecord(search_to_record(cfg.search)))
    return result, grid


def _strategy(cls):
    return cls(fraction_evaluate=0.0, min_train_nodes=CLIENTS, min_available_nodes=CLIENTS)


@pytest.fixture(scope="module")
def cfg():
    return parse_config(FLAT)


@pytest.mark.parametrize("cls", [FedAvg, FedAvgM])
def test_the_wrapper_changes_nothing_the_strategy_returns(cls, cfg, tmp_path):
    plain, _ = _run(RoundBook(_strategy(cls)), cfg)
    store = CaptureStore(tmp_path)
    wrapped, _ = _run(RoundBook(Eavesdropper(_strategy(cls), store)), cfg)
    a, b = plain.arrays.to_numpy_ndarrays(), wrapped.arrays.to_numpy_ndarrays()
    assert list(plain.arrays.keys()) == list(wrapped.arrays.keys())
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert plain.train_metrics_clientapp.keys() == wrapped.train_metrics_clientapp.keys()
    for rnd, metrics in plain.train_metrics_clientapp.items():
        timing = "train-seconds"  # wall-clock time, the one thing that may differ
        assert {k: v for k, v in metrics.items() if k != timing} == \
            {k: v for k, v in wrapped.train_metrics_clientapp[rnd].items() if k != timing}
    assert len(store.ids()) == 2 * CLIENTS


def test_a_capture_holds_what_crossed_the_wire_and_the_clients_own_update(cfg, tmp_path):
    store = CaptureStore(tmp_path)
    cfg = cfg.replace(run_dir=str(tmp_path))  # the clients write their truth there, off the wire
    _, grid = _run(Eavesdropper(_strategy(FedAvg), store), cfg, rounds=1)
    sent = {m.metadata.dst_node_id: m for m in grid.sent}
    init = initial_arrays(cfg)
    for cid in store.ids():
        cap = store.load(cid)
        assert cap.status == "ok" and cap.round == 1
        pid = grid.contexts[cap.node_id].node_config["partition-id"]
        assert cap.partition_id == pid
        # α_t1 and θ_t1 are what the server sent this node
        for name, value in sent[cap.node_id].content["arrays"].items():
            got = cap.alpha_t1.get(name, cap.theta_t1.get(name))
            np.testing.assert_array_equal(got, value.numpy())
        assert cap.train_config["alpha-batch-size"] == 2 and cap.train_config["server-round"] == 1
        assert cap.metrics["num-examples"] > 0
        # Δα is the client's own update: rerun the client's round independently
        own = client_train(cfg, cfg.search, init, partition_id=pid, num_clients=CLIENTS, server_round=1)
        for name in cap.alpha_t1:
            np.testing.assert_allclose(cap.delta_alpha[name], own.arrays[name].numpy() - init[name].numpy(), atol=1e-7)
        truth = read_truth(tmp_path, store.meta(cid))
        assert list(truth.alpha_indices) == own.audit["alpha-indices"]
    # which samples were used is nowhere in what the eavesdropper stored
    assert not any("alpha-indices" in p.read_text() for p in (tmp_path / "captures").glob("*.json"))


def test_error_replies_are_skipped_with_a_logged_reason(cfg, tmp_path, caplog):
    faulty = cfg.replace(fault_partitions="1")
    store = CaptureStore(tmp_path)
    with caplog.at_level(logging.INFO, logger="server.eavesdrop"):
        result, _ = _run(Eavesdropper(_strategy(FedAvg), store), faulty, rounds=1, train_fn=through(app))
    assert result.arrays is not None  # the round went on with the other client
    assert [store.load(c).partition_id for c in store.ids()] == [0]
    assert "replied an error" in caplog.text and "fault injection" in caplog.text


def test_a_reply_without_alpha_becomes_a_failed_capture(cfg, tmp_path):
    def train_without_alpha(msg: Message, context) -> Message:
        reply = train(msg, context)
        arrays = reply.content["arrays"]
        kept = ArrayRecord({k: v for k, v in arrays.items() if not k.startswith("alpha")})
        content = RecordDict({"arrays": kept, "metrics": reply.content["metrics"], "client": reply.content["client"]})
        return Message(content=content, reply_to=msg)

    store = CaptureStore(tmp_path)
    strategy = Eavesdropper(_strategy(FedAvg), store)
    grid = InProcessGrid(cfg.flat(), CLIENTS, train_without_alpha)
    messages = strategy.configure_train(1, ArrayRecord(initial_arrays(cfg)), ConfigRecord(search_to_record(cfg.search)), grid)
    replies = grid.send_and_receive(messages)
    strategy.aggregate_train(1, replies)
    caps = [store.load(c) for c in store.ids()]
    assert len(caps) == CLIENTS
    assert all(c.status == "failed" and "no array matching alpha-pattern" in c.reason for c in caps)
    assert all(read_truth(tmp_path, store.meta(c.id)) is None for c in caps)  # no run-dir: no truth written


def test_alpha_is_found_by_a_configurable_pattern(cfg, tmp_path):
    store = CaptureStore(tmp_path)
    strategy = Eavesdropper(_strategy(FedAvg), store, alpha_pattern=r"^head\.")
    _run(strategy, cfg, rounds=1)
    cap = store.load(store.ids()[0])
    assert set(cap.alpha_t1) == {"head.classifier.weight", "head.classifier.bias"}
    assert "alpha" in cap.theta_t1


def test_everything_else_is_forwarded(tmp_path):
    inner = _strategy(FedAvgM)
    wrapped = Eavesdropper(inner, CaptureStore(tmp_path))
    assert wrapped.server_learning_rate == inner.server_learning_rate
    assert wrapped.strategy is inner
    wrapped.summary()


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_flowers_log_names_the_wrapped_strategy(cfg, tmp_path):
    records = _Records()
    flwr_log = logging.getLogger("flwr")
    flwr_log.addHandler(records)
    try:
        book = RoundBook(Eavesdropper(_strategy(FedAvg), CaptureStore(tmp_path)))
        _run(book, cfg, rounds=1)
    finally:
        flwr_log.removeHandler(records)
    assert "Starting RoundBook(Eavesdropper(FedAvg)) strategy:" in records.lines
    assert type(book) is RoundBook and repr(book.strategy) == "Eavesdropper(FedAvg)"  # put back after the run


def _untagged(msg, context):
    """The project's client, its reply stripped of the partition-id (as an app that does not tag it)."""
    reply = train(msg, context)
    del reply.content["client"]
    return reply


def test_replies_without_partition_id_are_named_once_and_kept_apart_in_the_report(cfg, tmp_path, caplog):
    from attacks.leakage import LeakageAudit
    from attacks.report import NO_PARTITION_REASON
    from fednas.runlog import RunLog

    cfg = cfg.replace(run_dir=str(tmp_path))
    RunLog(cfg, tmp_path, {"supernodes": CLIENTS})
    store = CaptureStore(tmp_path)
    with caplog.at_level(logging.WARNING, logger="server.eavesdrop"):
        _run(Eavesdropper(_strategy(FedAvg), store), cfg, rounds=2, train_fn=_untagged)
    said = [r for r in caplog.records if "without a partition-id" in r.getMessage()]
    assert len(said) == 1  # two nodes, two rounds: one line
    assert all(store.meta(c)["partition-id"] is None for c in store.ids()) and len(store.ids()) == 2 * CLIENTS
    flat = {**cfg.flat(), "adra-iterations": 1, "adra-restarts": 1, "attack-workers": 0,
            "attack-identifiability": False, **TINY_INVERSE}
    summary = LeakageAudit(tmp_path, flat, tmp_path / "leakage").finish()
    out = tmp_path / "leakage"
    full = json.loads((out / "summary.json").read_text())
    nodes = sorted({store.meta(c)["node-id"] for c in store.ids()})
    assert sorted(c["client"] for c in full["clients"]) == sorted(f"node {n}" for n in nodes)  # one row per client
    assert summary["attacked"] == 2 * CLIENTS and summary["unscored"] > 0 and summary["samples"] == 0
    with open(out / "clients.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["reason"] for r in rows} == {NO_PARTITION_REASON}
    assert NO_PARTITION_REASON in (out / "report.md").read_text()
    assert not list(out.glob("client-None*.png"))
