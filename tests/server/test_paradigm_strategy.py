"""The paradigm's server wrapper with real Flower strategies and messages, in one process."""

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict
from flwr.serverapp.strategy import FedAvg

from clients.client_app import train
from clients.dp_mods import dp_sgd_mod, update_dp_mod
from fednas.accounting import RDP_ORDERS
from fednas.captures import CaptureStore
from fednas.config import parse_config, search_to_record
from fednas.data import client_data
from fednas.federated import initial_arrays
from fednas.paradigms import STATE_PREFIX, get_paradigm
from server.eavesdrop import Eavesdropper
from server.paradigm_strategy import ParadigmStrategy, with_paradigm
from server.strategies import RoundBook
from tests import dp_reference as reference
from tests.server.inprocess_grid import InProcessGrid

FLAT = {"dag-nodes": 3, "channels": 4, "local-steps": 1, "batch-size": 8, "alpha-batch-size": 2, "max-samples": 200,
        "enas-controller-steps": 1, "enas-num-aggregate": 2, "enas-derive-samples": 3, "enas-lstm-size": 8,
        "smash-candidates": 4, "smash-hyper-channels": 8}
CLIENTS = 2


class Spy(FedAvg):
    """FedAvg that remembers what it was given and what it aggregated."""

    def __init__(self) -> None:
        super().__init__(fraction_evaluate=0.0, min_train_nodes=CLIENTS, min_available_nodes=CLIENTS)
        self.given, self.aggregated = [], []

    def configure_train(self, server_round, arrays, config, grid):
        self.given.append(set(arrays.keys()))
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round, replies):
        arrays, metrics = super().aggregate_train(server_round, replies)
        self.aggregated.append(set(arrays.keys()))
        return arrays, metrics


def _run(cfg, strategy, train_fn=train, rounds=3):
    grid = InProcessGrid(cfg.flat(), CLIENTS, train_fn)
    result = strategy.start(grid=grid, initial_arrays=ArrayRecord(initial_arrays(cfg)), num_rounds=rounds,
                            train_config=ConfigRecord(search_to_record(cfg.search)))
    return result, grid


def test_darts_runs_without_the_wrapper():
    inner = FedAvg()
    assert with_paradigm(inner, parse_config({})) is inner


def test_the_server_state_travels_with_every_message_and_the_aggregate_but_never_through_fedavg(tmp_path):
    cfg = parse_config({**FLAT, "paradigm": "pdarts"})
    spy = Spy()
    store = CaptureStore(tmp_path)
    result, grid = _run(cfg, RoundBook(Eavesdropper(ParadigmStrategy(spy, cfg), store)))
    assert not any(k.startswith(STATE_PREFIX) for keys in spy.given + spy.aggregated for k in keys)
    for msg in grid.sent:
        assert {STATE_PREFIX + "stage", STATE_PREFIX + "switches"} <= set(msg.content["arrays"].keys())
    final = {k: v.numpy() for k, v in result.arrays.items()}
    assert final[STATE_PREFIX + "stage"][0] == 2 and final["alpha"].shape == (3, 3)
    # the eavesdropper saw α change shape stage after stage, and the state the server sent
    shapes = {}
    for cid in store.ids():
        capture = store.load(cid)
        assert capture.status == "ok"
        shapes[capture.round] = capture.alpha_t1["alpha"].shape
        assert capture.alpha_t2["alpha"].shape == capture.alpha_t1["alpha"].shape
        assert STATE_PREFIX + "switches" in capture.theta_t1
    assert shapes == {1: (3, 8), 2: (3, 5), 3: (3, 3)}


@pytest.mark.parametrize("name", ["enas", "smash"])
def test_the_update_mod_clips_and_noises_whatever_architecture_state_is_sent(name, server_identity):
    cfg = parse_config({**FLAT, "paradigm": name, "dp-update": True, "dp-update-clip": 1e-3, "dp-update-noise-std": 0.0})
    plain = parse_config({**FLAT, "paradigm": name})
    arrays = {k: v.numpy() for k, v in initial_arrays(cfg).items()}
    model_arrays, state = get_paradigm(name).server_configure(cfg, 1, arrays)
    sent = {**model_arrays, **state}
    grid = InProcessGrid(cfg.flat(), CLIENTS, lambda m, c: update_dp_mod(m, c, train))
    content = RecordDict({"arrays": ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in sent.items()}),
                          "config": ConfigRecord({**search_to_record(cfg.search), "server-round": 1})})
    msg = grid.create_message(content=content, message_type="train", dst_node_id=1001, group_id="1")
    reply = grid.send_and_receive([msg])[0]
    assert not reply.has_error(), reply.error
    out = {k: v.numpy() for k, v in reply.content["arrays"].items()}
    alpha = [k for k in out if k.startswith("alpha")]
    delta = np.sqrt(sum(float(((out[k] - sent[k]) ** 2).sum()) for k in alpha))
    assert delta == pytest.approx(1e-3, rel=1e-3)  # the whole architecture update clipped to C
    assert reply.content["metrics"]["dp-update-covers-theta"] == 0
    # without the mod the same client moves its architecture state much further
    raw = InProcessGrid(plain.flat(), CLIENTS, train).send_and_receive([msg])[0]
    raw_out = {k: v.numpy() for k, v in raw.content["arrays"].items()}
    assert np.sqrt(sum(float(((raw_out[k] - sent[k]) ** 2).sum()) for k in alpha)) > 10 * delta


@pytest.mark.parametrize("name, server_round, steps", [("enas", 1, 1), ("pdarts", 1, 0), ("pdarts", 2, 1)])
def test_the_dp_sgd_mod_privatises_and_accounts_the_architecture_steps(name, server_round, steps, server_identity):
    # ENAS: one private REINFORCE step; P-DARTS with 2-round stages and warm-up 0.5: round 1
    # holds α back (zero steps: ε = 0), round 2 takes one private α step
    flat = {**FLAT, "paradigm": name, "dp-sgd": True, "dp-sgd-noise-multiplier": 1.0, "num-server-rounds": 4,
            "pdarts-keep": "5,3", "pdarts-dag-cells": "1,2", "pdarts-add-layers": "0,6", "pdarts-dropout": "0.1,0.4",
            "pdarts-arch-warmup": 0.5}
    cfg = parse_config(flat)
    arrays = {k: v.numpy() for k, v in initial_arrays(cfg).items()}
    model_arrays, state = get_paradigm(name).server_configure(cfg, server_round, arrays)
    content = RecordDict({"arrays": ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in {**model_arrays, **state}.items()}),
                          "config": ConfigRecord({**search_to_record(cfg.search), "server-round": server_round})})
    grid = InProcessGrid(cfg.flat(), CLIENTS, lambda m, c: dp_sgd_mod(m, c, train))
    msg = grid.create_message(content=content, message_type="train", dst_node_id=1001, group_id="1")
    reply = grid.send_and_receive([msg])[0]
    assert not reply.has_error(), reply.error
    metrics = reply.content["metrics"]
    # Poisson sampling of D^α (partition 0: node 1001): q = B / |D^α|, ENAS's one batch per step
    # shared by its M = enas-num-aggregate sampled architectures: q = M·B / |D^α|
    _, split = client_data(cfg.data, cfg.run.seed, 0, CLIENTS)
    batch = FLAT["alpha-batch-size"] * (FLAT["enas-num-aggregate"] if name == "enas" else 1)
    q = metrics["dp-sgd-sample-rate"]
    assert metrics["dp-sgd-steps"] == steps and q == pytest.approx(min(1.0, batch / len(split.alpha)))
    # ε from the definition, apart from fednas.accounting and Opacus: Rényi divergence of the
    # subsampled Gaussian (z = 1) integrated numerically, composed over the steps, converted at δ
    orders = [a for a in RDP_ORDERS if a <= 64]
    if steps:
        want = reference.rdp_to_epsilon(lambda a: steps * reference.subsampled_rdp(q, 1.0, a), orders, cfg.dp.dp_delta)
        assert metrics["dp-epsilon"] == pytest.approx(want, rel=1e-6)
        assert metrics["dp-epsilon"] == metrics["dp-sgd-epsilon"] == metrics["dp-epsilon-rdp"]
    else:
        assert metrics["dp-epsilon"] == 0.0  # no α step, nothing released about D^α
    assert "alpha-acc" not in metrics  # statistics of D^α no noise covers are dropped by the mod


@pytest.mark.parametrize("name", ["pdarts", "enas", "smash"])
def test_the_server_chain_guards_each_paradigms_replies_without_rejecting_honest_ones(name, tmp_path):
    # The ServerApp's own chain (server_app.compose): the ReplyGuard checks replies against
    # the round's model arrays (P-DARTS: the stage's α shape), never the server state.
    from server.server_app import compose

    cfg = parse_config({**FLAT, "paradigm": name, "eavesdrop": True, "attack-online": False, "pdarts-keep": "5,3",
                        "pdarts-dag-cells": "1,2", "pdarts-add-layers": "0,6", "pdarts-dropout": "0.1,0.4"})
    book, audit = compose(cfg, tmp_path, CLIENTS)
    assert audit is None and book.guard is not None
    result, grid = _run(cfg, book, rounds=2)
    assert book.rejections == [] and result.arrays is not None
    final = {k: v.numpy() for k, v in result.arrays.items()}
    assert any(k.startswith(STATE_PREFIX) for k in final)  # the paradigm's wrapper sits outside the guard
    store = CaptureStore(tmp_path)
    assert len(store.ids()) == 2 * CLIENTS and all(store.load(c).status == "ok" for c in store.ids())
    assert store.manifest().paradigm == name
    # the guard still checks them: an honest reply to round 2's message passes, the same
    # reply with its architecture state in another shape is rejected
    last = [m for m in grid.sent if m.metadata.message_type == "train"][-1]
    reply = grid.send_and_receive([last])[0]
    assert book.guard.judge(2, [reply]) == [None]
    assert "shape" in book.guard.judge(2, [_reshaped(reply)])[0]


def _reshaped(reply):
    arrays = {k: v.numpy() for k, v in reply.content["arrays"].items()}
    name = next(k for k in arrays if k.startswith("alpha"))
    arrays[name] = np.zeros((*arrays[name].shape, 2), dtype=arrays[name].dtype)
    reply.content["arrays"] = ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()})
    return reply
