"""The DP mods around the real ClientApp functions, beside Flower's server wrapper (end to end, in a real
run with every mod on: tests/simulations/test_deployment.py)."""

import math
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, Metadata, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import DifferentialPrivacyClientSideFixedClipping, FedAvg
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM
from flwr.supercore.task_identity import TaskIdentity

from clients.client_app import evaluate, train
from clients.dp_mods import LEDGER_KEY, dp_sgd_mod, load_ledger, update_dp_mod
from fednas.accounting import RDP_ORDERS
from fednas.config import ConfigError, parse_config, search_to_record
from fednas.federated import initial_arrays
from tests import dp_reference as reference

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
TINY = {"dag-nodes": 3, "channels": 4, "local-steps": 2, "batch-size": 8, "alpha-batch-size": 8, "max-samples": 300}


def run_config(**dp):
    return {**DEFAULTS, **TINY, **{k.replace("_", "-"): v for k, v in dp.items()}}


def context(rc, pid=0):
    return Context(run_id=1, node_id=10 + pid, node_config={"partition-id": pid, "num-partitions": 2},
                   state=RecordDict(), run_config=rc)


def message(rc, rnd=1, kind=MessageType.TRAIN, arrays=None):
    cfg = parse_config(rc)
    md = Metadata(run_id=1, message_id=f"m{rnd}{kind}", src_node_id=1, dst_node_id=10, reply_to_message_id="",
                  group_id=str(rnd), created_at=time.time(), ttl=3600.0, message_type=kind)
    content = RecordDict({"arrays": arrays or ArrayRecord(initial_arrays(cfg)),
                          "config": ConfigRecord({**search_to_record(cfg.search), "server-round": rnd})})
    return Message(content=content, metadata=md)


def both_mods(msg, ctx, app_fn):
    """The order of ``@app.train(mods=[dp_sgd_mod, update_dp_mod])``."""
    return dp_sgd_mod(msg, ctx, lambda m, c: update_dp_mod(m, c, app_fn))


def recording(app_fn, seen):
    def call_next(msg, ctx):
        seen.append((msg, {k: dict(v) for k, v in msg.content.config_records.items()}))
        out = app_fn(msg, ctx)
        seen.append(out)
        return out
    return call_next


def test_mods_pass_evaluate_messages_through_untouched():
    rc = run_config(dp_sgd=True, dp_update=True)
    msg, ctx, seen = message(rc, kind=MessageType.EVALUATE), context(rc), []
    before = {k: dict(v) for k, v in msg.content.config_records.items()}
    out = both_mods(msg, ctx, recording(evaluate, seen))
    assert seen[0][0] is msg and seen[0][1] == before  # nothing added on the way in
    assert out is seen[1]  # the reply comes back as the app made it
    assert not any(k.startswith("dp-") for k in out.content["metrics"])
    assert LEDGER_KEY not in ctx.state.config_records


def test_switched_off_mods_pass_train_messages_through_untouched():
    rc = run_config()
    msg, ctx, seen = message(rc), context(rc), []
    before = {k: dict(v) for k, v in msg.content.config_records.items()}
    out = both_mods(msg, ctx, recording(train, seen))
    assert seen[0][1] == before and out is seen[1]
    assert "alpha-loss" in out.content["metrics"] and not any(k.startswith("dp-") for k in out.content["metrics"])


def test_dp_sgd_and_update_mods_account_two_rounds():
    rc = run_config(dp_sgd=True, dp_update=True, dp_sgd_noise_multiplier=1.2, dp_update_noise_std=0.3)
    ctx, replies = context(rc), []
    for rnd in (1, 2):
        out = both_mods(message(rc, rnd), ctx, train)
        assert not out.has_error()
        replies.append(out.content["metrics"])
    m = replies[-1]
    q, steps = m["dp-sgd-sample-rate"], m["dp-sgd-steps"]
    assert steps == TINY["local-steps"] and 0 < q < 1
    # DP-SGD over both rounds: Rényi divergence of the subsampled Gaussian integrated from its
    # definition at every order up to 64, composed over 2 x steps, converted (tests/dp_reference.py)
    orders = [a for a in RDP_ORDERS if a <= 64]
    for total, key in ((2 * steps, "dp-sgd-epsilon"), (steps, "dp-sgd-epsilon-round")):
        want = reference.rdp_to_epsilon(lambda a: total * reference.subsampled_rdp(q, 1.2, a), orders, 1e-5)
        assert m[key] == pytest.approx(want, rel=1e-6), key
    assert m["dp-sgd-epsilon-rdp"] == m["dp-sgd-epsilon"] and m["dp-sgd-epsilon-prv"] < m["dp-sgd-epsilon-rdp"]
    # the update mod: 2 Gaussian releases of μ = 2C/σ each; the tight ε is where the privacy
    # profile, integrated from its definition, reaches δ
    mu = math.sqrt(2) * 2 * DEFAULTS["dp-update-clip"] / 0.3
    assert reference.gaussian_delta(mu, m["dp-update-epsilon-prv"]) == pytest.approx(1e-5, rel=1e-4)
    # DP-SGD covers every array; the update mod (α only, θ shared) does not: dp-epsilon is DP-SGD's
    assert m["dp-sgd-covers-all"] == 1 and m["dp-update-covers-all"] == 0
    assert m["dp-epsilon"] == m["dp-sgd-epsilon"] and m["dp-epsilon-prv"] == m["dp-sgd-epsilon-prv"]
    assert m["dp-delta"] == 1e-5 and m["dp-secure-rng"] == 0
    assert replies[0]["dp-epsilon"] < m["dp-epsilon"]
    assert "alpha-loss" not in m and "alpha-acc" not in m  # D^α statistics without noise
    assert set(replies[0]) == set(m)  # every reply has the same keys (FedAvg checks)
    assert len(load_ledger(ctx).events["dp-sgd"]) == 2


@pytest.mark.parametrize("theta, share", [(False, True), (True, True), (False, False)])
def test_dp_epsilon_is_claimed_only_for_a_mechanism_that_covers_every_array_sent(theta, share):
    # pooled BatchNorm statistics would leave the mechanism that covers θ: such configs use "client"
    rc = run_config(dp_update=True, dp_update_theta=theta, share_weights=share, dp_update_noise_std=0.3,
                    bn_statistics="client")
    arrays = ArrayRecord(initial_arrays(parse_config(rc))) if share else ArrayRecord(
        {k: v for k, v in initial_arrays(parse_config(rc)).items() if k.startswith("alpha")})
    m = update_dp_mod(message(rc, arrays=arrays), context(rc), train).content["metrics"]
    covers = theta or not share  # θ privatised too, or θ never sent
    assert m["dp-update-covers-all"] == int(covers)
    if covers:
        assert m["dp-epsilon"] == m["dp-update-epsilon"] < math.inf
    else:  # α-only noise bounds nothing about the θ beside it: no ε for the reply as a whole
        assert m["dp-epsilon"] == math.inf and m["dp-update-epsilon"] < math.inf


def test_seeded_or_secure_noise_is_recorded():
    for secure in (False, True):
        rc = run_config(dp_update=True, dp_secure_rng=secure)
        m = update_dp_mod(message(rc), context(rc), train).content["metrics"]
        assert m["dp-secure-rng"] == int(secure)


def _reply_moving(delta_alpha, delta_theta):
    def app_fn(msg, ctx):
        sent = {}
        for k, a in msg.content["arrays"].items():
            step = delta_alpha if k.startswith("alpha") else delta_theta
            sent[k] = a.numpy() + np.asarray(step, np.float32)
        content = RecordDict({"arrays": ArrayRecord({k: Array(v) for k, v in sent.items()}),
                              "metrics": MetricRecord({"num-examples": 10})})
        return Message(content=content, reply_to=msg)
    return app_fn


def _norm(a: ArrayRecord, b: ArrayRecord, alpha_only: bool) -> float:
    return math.sqrt(sum(float(np.sum((a[k].numpy().astype(np.float64) - b[k].numpy()) ** 2))
                         for k in a.keys() if not alpha_only or k.startswith("alpha")))


@pytest.mark.parametrize("theta", [False, True])
def test_update_mod_clips_the_chosen_update_to_c(theta):
    rc = run_config(dp_update=True, dp_update_clip=0.05, dp_update_noise_std=0.0, dp_update_theta=theta,
                    bn_statistics="client")  # pooled statistics would bypass a mechanism covering θ
    msg, ctx = message(rc), context(rc)
    out = update_dp_mod(msg, ctx, _reply_moving(1.0, 0.5))
    sent, got = msg.content["arrays"], out.content["arrays"]
    assert _norm(got, sent, alpha_only=not theta) == pytest.approx(0.05, rel=1e-4)
    theta_moved = _norm(got, sent, alpha_only=False) ** 2 - _norm(got, sent, alpha_only=True) ** 2
    n_theta = sum(sent[k].numpy().size for k in sent.keys() if not k.startswith("alpha"))
    # θ clipped together with α, or left as the app sent it (0.5 per entry)
    if not theta:
        assert theta_moved == pytest.approx(0.25 * n_theta, rel=1e-4)
    assert (theta_moved <= 0.05**2 * (1 + 1e-4)) == theta
    assert out.content["metrics"]["dp-update-epsilon"] == math.inf  # clipping alone buys no ε
    assert list(got.keys()) == list(sent.keys())


def test_update_mod_keeps_a_zero_update_zero():
    rc = run_config(dp_update=True, dp_update_noise_std=0.0, dp_update_theta=True, bn_statistics="client")
    msg = message(rc)
    out = update_dp_mod(msg, context(rc), _reply_moving(0.0, 0.0))
    assert _norm(out.content["arrays"], msg.content["arrays"], alpha_only=False) == 0.0


def test_mods_validate_their_settings_naming_the_key():
    rc = run_config(dp_update=True, dp_update_clip=0.0)
    with pytest.raises(ConfigError, match="'dp-update-clip'"):
        update_dp_mod(message(rc), context(rc), train)


class TwoNodeGrid(Grid):
    """Just enough of a Grid for a strategy's configure_train: two connected nodes."""

    def get_node_ids(self):
        return [10, 11]

    def _unused(self, *args, **kwargs):
        raise RuntimeError("not used by configure_train")

    create_message = push_messages = pull_messages = send_and_receive = set_run = _unused
    run = property(_unused)


def test_update_mod_beside_flowers_client_side_fixed_clipping_wrapper(monkeypatch):
    for attr, value in (("_run_id", 1), ("_node_id", 0), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, attr, value)
    rc = run_config(dp_update=True, dp_update_clip=5.0, dp_update_noise_std=0.0)  # server's norm wins
    cfg = parse_config(rc)
    wrapper = DifferentialPrivacyClientSideFixedClipping(FedAvg(min_train_nodes=2, min_available_nodes=2),
                                                         noise_multiplier=0.5, clipping_norm=0.02, num_sampled_clients=2)
    arrays = ArrayRecord(initial_arrays(cfg))
    messages = list(wrapper.configure_train(1, arrays, ConfigRecord({**search_to_record(cfg.search), "server-round": 1}),
                                            TwoNodeGrid()))
    assert all(m.content["config"][KEY_CLIPPING_NORM] == 0.02 for m in messages)
    replies = []
    for pid, msg in enumerate(messages):
        reply = update_dp_mod(msg, context(rc, pid), train)
        assert not reply.has_error()
        # the whole update (α and θ) is clipped to the server's norm, as the wrapper requires
        assert _norm(reply.content["arrays"], arrays, alpha_only=False) <= 0.02 * (1 + 1e-4)
        assert reply.content["metrics"]["dp-update-clip"] == 0.02
        assert reply.content["metrics"]["dp-update-covers-theta"] == 1
        replies.append(reply)
    aggregated, metrics = wrapper.aggregate_train(1, replies)
    assert aggregated is not None and set(aggregated.keys()) == set(arrays.keys())
    assert "dp-epsilon" in metrics
