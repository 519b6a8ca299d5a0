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
from clients.faults import AMPLIFY, HUGE
from server.guard import ReplyGuard, check_array, judge_replies, reply_norms
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


def start(strategy, cfg, rounds=2, clients=CLIENTS, **kw):
    grid = InProcessGrid(cfg.flat(), clients, through(app))
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


def replies_with_faults(cfg, sent, server_round, clients, faults, delta):
    """Every client's (weight, update) as the fault modes make it, computed here without Flower:
    ``huge`` replies α = 1e30 (Δα = 1e30 with delta replies), ``amplify`` its α update × 100."""
    out = {}
    for pid in range(clients):
        res = client_train(cfg, cfg.search, {k: torch.as_tensor(v) for k, v in sent.items()}, partition_id=pid,
                           num_clients=clients, server_round=server_round)
        update = {k: v.numpy().astype(np.float64) - sent[k] for k, v in res.arrays.items()}
        if faults.get(pid) == "huge":
            alpha = np.full(sent["alpha"].shape, np.float32(HUGE), np.float64)
            update["alpha"] = alpha if delta else alpha - sent["alpha"].astype(np.float32)
        elif faults.get(pid) == "amplify":
            update["alpha"] = update["alpha"] * AMPLIFY
        out[pid] = (res.metrics["num-examples"], update)
    return out


def norm(update, alpha, floats):
    """The L2 norm of the α (or θ) part of an update, over the floating-point arrays ``floats``."""
    return float(np.sqrt(sum(np.square(v).sum() for k, v in update.items() if k.startswith("alpha") == alpha
                             and k in floats)))


@pytest.mark.parametrize("mode, reply, clients, faults", [
    ("reject", "delta", 4, {1: "huge", 2: "amplify"}), ("reject", "weights", 4, {1: "huge", 2: "amplify"}),
    ("clip", "delta", 4, {1: "huge", 2: "amplify"}), ("clip", "weights", 4, {1: "huge", 2: "amplify"}),
    ("reject", "delta", 2, {1: "amplify"}),  # the smallest federation: the lower median of two is the honest norm
])
def test_oversized_updates_are_kept_out_or_clipped_through_the_servers_stack(mode, reply, clients, faults, tmp_path):
    cfg = parse_config({**FLAT, "min-train-clients": clients, "max-update-norm": 0.0, "update-guard": mode,
                        "reply": reply, "bn-statistics": "ema",
                        "fault-partitions": ",".join(f"{p}:{m}" for p, m in faults.items())})
    book, _ = compose(cfg, tmp_path, clients)
    result = start(book, cfg, rounds=2, clients=clients)
    # the reference: each round's replies as the faults make them; reject: FedAvg of the honest ones;
    # clip: each group of each update longer than 10 × the round's lower-median norm scaled down to it
    sent = {k: v.numpy().astype(np.float64) for k, v in initial_arrays(cfg).items()}
    floats = {k for k, v in initial_arrays(cfg).items() if v.is_floating_point()}
    for rnd in (1, 2):
        replies = replies_with_faults(cfg, {k: v.astype(np.float32) for k, v in sent.items()}, rnd, clients, faults,
                                      reply == "delta")
        ref = {g: sorted(norm(u, g, floats) for _, u in replies.values())[(clients - 1) // 2] for g in (True, False)}
        kept = []
        for pid, (weight, update) in replies.items():
            if pid in faults and mode == "reject":
                continue
            scale = {g: min(1.0, 10 * ref[g] / norm(update, g, floats)) for g in (True, False)}
            kept.append((weight, {k: sent[k] + v * (scale[k.startswith("alpha")] if k in floats else 1.0)
                                  for k, v in update.items()}))
        assert all(norm(u, True, floats) > 10 * ref[True] for p, (_, u) in replies.items() if p in faults)
        previous, sent = sent, fedavg(kept)
    final = {k: v.numpy() for k, v in result.arrays.items()}
    for name in final:
        assert np.isfinite(final[name]).all()
        np.testing.assert_allclose(final[name], sent[name], rtol=1e-5, atol=1e-6, err_msg=name)
    # FedAvg is a convex combination: the aggregate α update is no longer than 10 × the reference
    assert np.linalg.norm(final["alpha"] - previous["alpha"]) <= 10 * ref[True] * (1 + 1e-5)
    # counted, every round, with the reason
    counted = book.rejections if mode == "reject" else book.clippings
    assert book.current["rejected" if mode == "reject" else "clipped"] == len(faults)
    assert book.current["clipped" if mode == "reject" else "rejected"] == 0 and book.current["aggregated"]
    assert sorted((r["round"], r["partition-id"]) for r in counted) == sorted((r, p) for r in (1, 2) for p in faults)
    assert all(r["reason"].startswith("alpha update norm") and "update-guard-k" in r["reason"] for r in counted)
    column = book.current["rejections" if mode == "reject" else "clippings"]
    assert all(f"partition {p}: alpha update norm" in column for p in faults)


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


@pytest.mark.usefixtures("server_identity")
def test_the_update_norm_is_the_norm_of_reply_minus_sent_per_group_over_every_record():
    from server.magnitude import UpdateBound

    rng = np.random.default_rng(0)
    sent = {"arrays": {"alpha_a": rng.normal(size=(3, 4)).astype(np.float32),
                       "b": rng.normal(size=5).astype(np.float32)},
            "extra": {"c": rng.normal(size=7).astype(np.float32), "n": np.array(3, np.int64)}}
    reply = {key: {k: (np.asarray(v + 1) if v.dtype.kind == "i" else rng.normal(size=v.shape).astype(np.float32))
                   for k, v in arrays.items()} for key, arrays in sent.items()}
    records = {key: ArrayRecord({k: Array(v) for k, v in arrays.items()}) for key, arrays in reply.items()}
    msg = Message(RecordDict(records), dst_node_id=1, message_type=MessageType.TRAIN)
    bound = UpdateBound()
    theta = np.concatenate([(reply[key][k].astype(np.float64) - sent[key][k]).ravel()
                            for key, k in (("arrays", "b"), ("extra", "c"))])
    alpha = (reply["arrays"]["alpha_a"].astype(np.float64) - sent["arrays"]["alpha_a"]).ravel()
    norms = reply_norms(msg, sent, False, bound)
    assert norms == pytest.approx({"alpha": np.linalg.norm(alpha), "theta": np.linalg.norm(theta)}, rel=1e-12)
    as_delta = reply_norms(msg, sent, True, bound)
    assert as_delta["alpha"] == pytest.approx(np.linalg.norm(reply["arrays"]["alpha_a"].astype(np.float64)), rel=1e-12)


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
