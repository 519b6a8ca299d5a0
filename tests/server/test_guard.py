"""The reply guard: hostile replies from the real ClientApp (fault modes), checked in one process."""

import logging

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg

from attacks.adra.attack import ADRA
from attacks.runner import knowledge_for
from clients.client_app import app
from fednas.config import parse_config, search_to_record
from fednas.federated import client_train, initial_arrays
from server.guard import ReplyGuard, check_array, judge_replies, update_norm
from server.server_app import compose
from server.strategies import RoundBook, build_strategy
from tests.server.inprocess_grid import InProcessGrid, through

CLIENTS = 10
HONEST = (0, 8, 9)
HOSTILE = {1: "nan", 2: "shape", 3: "broadcast", 4: "extra-array", 5: "missing-alpha", 6: "huge", 7: "dtype"}
REASONS = {1: "non-finite", 2: "has shape (24,), expected (3, 8)", 3: "has shape (1, 8), expected (3, 8)",
           4: "unexpected arrays ['extra']", 5: "missing arrays ['alpha']", 6: "exceeds max-update-norm",
           7: "has dtype float64, expected float32"}
FLAT = {"dag-nodes": 3, "channels": 4, "local-steps": 1, "batch-size": 8, "alpha-batch-size": 2, "max-samples": 600,
        "min-train-clients": CLIENTS, "max-update-norm": 1000.0, "head": "flatten",
        "fault-partitions": ",".join(f"{p}:{m}" for p, m in HOSTILE.items())}


def fedavg(replies):
    """Independent reference: the example-weighted mean of (weight, {name: array}) in float64."""
    total = sum(w for w, _ in replies)
    return {k: sum(w * a[k].astype(np.float64) for w, a in replies) / total for k in replies[0][1]}


def honest_round(cfg, arrays, server_round):
    """What the honest clients reply to ``arrays``, run here independently of Flower."""
    out = []
    for pid in HONEST:
        res = client_train(cfg, cfg.search, {k: torch.as_tensor(v) for k, v in arrays.items()}, partition_id=pid,
                           num_clients=CLIENTS, server_round=server_round)
        out.append((res.metrics["num-examples"], {k: v.numpy() for k, v in res.arrays.items()}))
    return out


def start(strategy, cfg, rounds=2, **kw):
    grid = InProcessGrid(cfg.flat(), CLIENTS, through(app))
    return strategy.start(grid=grid, initial_arrays=ArrayRecord(initial_arrays(cfg)), num_rounds=rounds,
                          train_config=ConfigRecord(search_to_record(cfg.search)), **kw)


@pytest.fixture(scope="module")
def cfg():
    return parse_config(FLAT)


@pytest.mark.parametrize("reply", ["weights", "delta"])
def test_hostile_replies_are_left_out_and_the_model_is_the_honest_aggregate(cfg, reply, tmp_path, caplog):
    # the ServerApp's own chain; with delta replies the guard checks the updates, and the
    # eavesdropper, outside it, still records every reply (α_t1 + Δα for the honest ones)
    cfg = cfg.replace(reply=reply, eavesdrop=True, attack_online=False, bn_statistics="ema")
    book, _ = compose(cfg, tmp_path, CLIENTS)
    store = book.strategy.store
    with caplog.at_level(logging.WARNING, logger="server.guard"):
        result = start(book, cfg)
    # the global model after two rounds is FedAvg over the honest replies alone
    expected = {k: v.numpy() for k, v in initial_arrays(cfg).items()}
    for rnd in (1, 2):
        expected = fedavg(honest_round(cfg, expected, rnd))
    final = {k: v.numpy() for k, v in result.arrays.items()}
    assert set(final) == set(expected)
    for name in final:
        assert np.isfinite(final[name]).all()
        np.testing.assert_allclose(final[name], expected[name], rtol=1e-5, atol=1e-6, err_msg=name)
    # every rejection counted with its reason, every round
    assert book.current["rejected"] == len(HOSTILE) and book.current["failed"] == 0 and book.current["aggregated"]
    assert len(book.rejections) == 2 * len(HOSTILE) and not book.kept_previous
    for r in book.rejections:
        assert REASONS[r["partition-id"]] in r["reason"], r
    assert sum("rejected:" in r.message for r in caplog.records if r.name == "server.guard") == 2 * len(HOSTILE)
    # the eavesdropper kept every reply; the hostile ones are marked, and the attack refuses them
    caps = [store.load(c) for c in store.ids()]
    assert len(caps) == 2 * CLIENTS
    for cap in caps:
        if cap.partition_id in HOSTILE:
            assert cap.status == "rejected" and REASONS[cap.partition_id] in cap.reason
        else:
            assert cap.status == "ok"
            own = client_train(cfg, cfg.search, {k: torch.as_tensor(v) for k, v in {**cap.alpha_t1, **cap.theta_t1}.items()},
                               partition_id=cap.partition_id, num_clients=CLIENTS, server_round=cap.round)
            np.testing.assert_allclose(cap.alpha_t2["alpha"], own.arrays["alpha"].numpy(), rtol=1e-5, atol=1e-8)
    refused = ADRA(cfg.attack).reconstruct([caps[1]], knowledge_for(cfg.flat()))[0]
    assert caps[1].status == "rejected" and refused.status == "failed" and "rejected by the server" in refused.reason


def test_without_the_guard_one_client_poisons_or_aborts_the_run(cfg):
    nan_only = cfg.replace(fault_partitions="1:nan")
    result = start(RoundBook(build_strategy(nan_only.fed, CLIENTS)), nan_only, rounds=1)
    assert not np.isfinite(result.arrays["alpha"].numpy()).all()
    shape = cfg.replace(fault_partitions="1:extra-array")
    with pytest.raises(Exception, match="same keys"):  # Flower's InconsistentMessageReplies
        start(RoundBook(build_strategy(shape.fed, CLIENTS)), shape, rounds=1)


def test_a_round_where_every_reply_is_rejected_keeps_the_previous_model(cfg, caplog):
    honest_only = cfg.replace(fault_partitions="", max_update_norm=1e-12)  # no honest update is that small
    guard = ReplyGuard(build_strategy(honest_only.fed, CLIENTS), max_update_norm=1e-12)
    book = RoundBook(guard, guard=guard)
    seen = {}
    with caplog.at_level(logging.WARNING, logger="server.guard"):
        result = start(book, honest_only, rounds=1, evaluate_fn=lambda rnd, arrays: seen.update({rnd: arrays}))
    assert len(result.arrays) == 0  # no aggregate: the global model after round 1 is still the initial one
    for name, value in initial_arrays(cfg).items():
        np.testing.assert_array_equal(seen[1][name].numpy(), value.numpy())
    assert book.current["rejected"] == CLIENTS and book.current["aggregated"] is False
    assert book.kept_previous == [{"round": 1, "reason": f"no reply left to aggregate ({CLIENTS} rejected, 0 failed)"}]
    assert "the global model stays as it was" in caplog.text


# ---------------------------------------------------------------------------- the pure checks


def test_array_checks_name_what_is_wrong():
    ref = np.zeros((6, 8), np.float32)
    assert check_array("a", Array(ref + 1), ref) is None
    assert "shape (48,), expected (6, 8)" in check_array("a", Array(ref.ravel()), ref)
    assert "dtype float64" in check_array("a", Array(ref.astype(np.float64)), ref)
    bad = ref.copy()
    bad[0, :3] = [np.nan, np.inf, -np.inf]
    assert "3 non-finite value(s)" in check_array("a", Array(bad), ref)


def test_the_update_norm_is_the_norm_of_reply_minus_sent_over_every_array():
    rng = np.random.default_rng(0)
    sent = {"arrays": {"a": rng.normal(size=(3, 4)).astype(np.float32), "b": rng.normal(size=5).astype(np.float32)}}
    reply = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in sent["arrays"].items()}
    record = {"arrays": ArrayRecord({k: Array(v) for k, v in reply.items()})}
    flat = np.concatenate([(reply[k].astype(np.float64) - sent["arrays"][k]).ravel() for k in reply])
    assert update_norm(record, sent) == pytest.approx(np.linalg.norm(flat), rel=1e-12)
    as_delta = np.concatenate([reply[k].astype(np.float64).ravel() for k in reply])
    assert update_norm(record, sent, delta=True) == pytest.approx(np.linalg.norm(as_delta), rel=1e-12)


def _metrics_reply(node, metrics):
    msg = Message(RecordDict({"metrics": MetricRecord(metrics)}), dst_node_id=node, message_type=MessageType.EVALUATE)
    return Message(RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)


@pytest.mark.usefixtures("server_identity")
def test_metric_checks_weight_and_keys():
    good = {"num-examples": 10, "eval-loss": 1.0}
    replies = [_metrics_reply(1, good), _metrics_reply(2, good), _metrics_reply(3, {**good, "extra": 1.0}),
               _metrics_reply(4, {**good, "num-examples": float("nan")}), _metrics_reply(5, {"eval-loss": 1.0})]
    verdicts = judge_replies(replies, None, "num-examples")
    assert verdicts[:2] == [None, None]
    assert "differ from the other replies" in verdicts[2]
    assert "must be one finite number > 0" in verdicts[3] and "no 'num-examples' metric" in verdicts[4]


def test_everything_else_is_forwarded(cfg):
    inner = FedAvg()
    guard = ReplyGuard(inner, max_update_norm=2.0)
    assert guard.strategy is inner and guard.weighted_by_key == "num-examples" and guard.weight_key == "num-examples"
    with pytest.raises(ValueError):
        ReplyGuard(inner, max_update_norm=-1)
