"""The delta mod around the real ClientApp train, alone and outside the DP mods."""

import numpy as np
import pytest
from flwr.app import MessageType

from clients.client_app import train
from clients.dp_mods import update_dp_mod
from clients.reply_mod import delta_reply_mod
from tests.clients.test_dp_mods import _reply_moving, context, message, run_config


def _ask(msg, form):
    msg.content["config"]["reply"] = form
    return msg


def _arrays(record):
    return {k: v.numpy() for k, v in record.items()}


def test_a_delta_reply_is_the_weights_reply_minus_what_was_received():
    rc = run_config()
    weights = train(_ask(message(rc), "weights"), context(rc))
    msg = _ask(message(rc), "delta")
    received = _arrays(msg.content["arrays"])
    delta = delta_reply_mod(msg, context(rc), train)
    assert not delta.has_error()
    w, d = _arrays(weights.content["arrays"]), _arrays(delta.content["arrays"])
    assert w.keys() == d.keys()
    for k in w:
        np.testing.assert_array_equal(d[k], w[k] - received[k])
    assert dict(delta.content["metrics"]) == pytest.approx(dict(weights.content["metrics"]), rel=0, abs=10.0)


@pytest.mark.parametrize("form", ["weights", None])
def test_without_a_request_for_deltas_the_reply_passes_untouched(form):
    rc = run_config()
    msg = message(rc) if form is None else _ask(message(rc), form)
    seen = []
    out = delta_reply_mod(msg, context(rc), lambda m, c: seen.append(train(m, c)) or seen[0])
    assert out is seen[0]
    ev = message(rc, kind=MessageType.EVALUATE)
    assert delta_reply_mod(ev, context(rc), lambda m, c: "passed") == "passed"


def test_a_reply_with_an_array_the_server_did_not_send_is_an_error():
    rc = run_config()
    msg = _ask(message(rc), "delta")

    def extra(m, c):
        out = train(m, c)
        record = out.content["arrays"]
        record["unknown"] = record["alpha"]
        return out
    out = delta_reply_mod(msg, context(rc), extra)
    assert out.has_error() and "unknown" in out.error.reason


@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_the_update_mod_clips_and_noises_the_update_in_both_forms(noise):
    # the same seeded noise: the delta reply is exactly the privatised weights minus what was sent
    rc = run_config(dp_update=True, dp_update_clip=0.05, dp_update_noise_std=noise)
    app = _reply_moving(1.0, 0.5)
    weights_msg, delta_msg = _ask(message(rc), "weights"), _ask(message(rc), "delta")
    received = _arrays(weights_msg.content["arrays"])
    w = _arrays(update_dp_mod(weights_msg, context(rc), app).content["arrays"])
    d = _arrays(delta_reply_mod(delta_msg, context(rc), lambda m, c: update_dp_mod(m, c, app)).content["arrays"])
    for k in w:
        np.testing.assert_array_equal(d[k], w[k] - received[k])
    alpha_norm = np.sqrt(sum(float(np.sum(d[k].astype(np.float64) ** 2)) for k in d if k.startswith("alpha")))
    if noise == 0:
        assert alpha_norm == pytest.approx(0.05, rel=1e-4)  # Δα clipped to C
    else:
        assert alpha_norm > 0.05  # and noised
