"""The update guard's size check: reference norms, verdicts and clipping, as pure functions."""

import math

import numpy as np
import pytest

from fednas.config import ConfigError, parse_config
from server.magnitude import (UpdateBound, clipped_arrays, group_norms, lower_median, reference_norms, size_verdicts,
                              update_of)


def test_the_lower_median_of_two_is_the_smaller_so_an_outlier_cannot_set_its_own_bar():
    honest, hostile = 0.02, 0.02 * 100
    assert lower_median([hostile, honest]) == honest
    assert lower_median([3.0, 1.0, 2.0]) == 2.0 and lower_median([4.0, 1.0, 3.0, 2.0]) == 2.0
    # the plain median of two is their mean: ×100 would sit at about 2 × it, inside k = 10
    assert hostile <= 10 * float(np.median([honest, hostile]))
    verdicts = size_verdicts([{"alpha": honest}, {"alpha": hostile}], UpdateBound("reject", k=10.0))
    assert verdicts[0].reason is None and "exceeds update-guard-k" in verdicts[1].reason


def test_norms_are_per_group_so_an_alpha_only_outlier_stands_out_beside_a_large_theta():
    rng = np.random.default_rng(0)
    sent = {"alpha": rng.normal(size=(3, 8)).astype(np.float32), "w": rng.normal(size=4000).astype(np.float32),
            "count": np.array(7, np.int64)}
    steps = [{"alpha": 1e-3 * rng.normal(size=(3, 8)), "w": 1e-2 * rng.normal(size=4000)} for _ in range(3)]
    steps[2]["alpha"] = steps[2]["alpha"] * 100  # α update ×100, θ honest
    replies = [{k: (sent[k] + s[k]).astype(np.float32) if k in s else sent[k] + 1 for k in sent} for s in steps]
    bound = UpdateBound("reject", k=10.0)
    norms = [group_norms(update_of(r, sent, delta=False), bound) for r in replies]
    for n, r in zip(norms, replies):  # the integer counter is no direction of the model: left out
        assert set(n) == {"alpha", "theta"}
        assert n["theta"] == pytest.approx(np.linalg.norm(r["w"].astype(np.float64) - sent["w"]), rel=1e-12)
    whole = [math.hypot(n["alpha"], n["theta"]) for n in norms]
    assert whole[2] < 2 * min(whole[:2])  # the whole update's norm hardly shows it
    verdicts = size_verdicts(norms, bound)
    assert [v.reason is None for v in verdicts] == [True, True, False]
    assert verdicts[2].reason.startswith("alpha update norm")


def test_max_update_norm_is_the_absolute_limit_of_the_same_check():
    norms = [{"alpha": 3.0, "theta": 4.0}, {"alpha": 3.0, "theta": 4.0}]
    reject = size_verdicts(norms, UpdateBound("reject", k=10.0, max_norm=4.0))
    assert all(v.reason == "update norm 5 exceeds max-update-norm = 4" for v in reject)
    clip = size_verdicts(norms, UpdateBound("clip", k=10.0, max_norm=4.0))
    assert all(v.scales == pytest.approx({"alpha": 0.8, "theta": 0.8}) for v in clip)
    assert all("clipped to max-update-norm = 4" in v.note for v in clip)
    assert size_verdicts(norms, UpdateBound("off")) == [type(reject[0])()] * 2


@pytest.mark.parametrize("delta", [True, False])
def test_clipping_scales_only_the_oversized_group_to_k_times_the_reference_in_either_reply_form(delta):
    rng = np.random.default_rng(1)
    sent = {"alpha": rng.normal(size=(3, 8)).astype(np.float32), "w": rng.normal(size=50).astype(np.float32),
            "count": np.array(2, np.int64)}
    updates = [{"alpha": s * rng.normal(size=(3, 8)), "w": 0.1 * rng.normal(size=50)} for s in (1e-3, 2e-3, 1e30)]
    bound = UpdateBound("clip", k=10.0)

    def as_reply(u):
        if delta:
            return {"alpha": u["alpha"].astype(np.float32), "w": u["w"].astype(np.float32), "count": np.array(1)}
        return {"alpha": (sent["alpha"] + u["alpha"]).astype(np.float32), "w": (sent["w"] + u["w"]).astype(np.float32),
                "count": sent["count"] + 1}

    replies = [as_reply(u) for u in updates]
    norms = [group_norms(update_of(r, sent, delta), bound) for r in replies]
    ref = reference_norms(norms)
    assert ref["alpha"] == sorted(n["alpha"] for n in norms)[1]
    verdicts = size_verdicts(norms, bound)
    assert [v.clipped for v in verdicts] == [False, False, True] and all(v.reason is None for v in verdicts)
    assert set(verdicts[2].scales) == {"alpha"}
    out = clipped_arrays(replies[2], sent, delta, verdicts[2].scales, bound)
    assert out["alpha"].dtype == np.float32 and np.array_equal(out["w"], replies[2]["w"])
    assert np.array_equal(out["count"], replies[2]["count"])
    clipped = group_norms(update_of(out, sent, delta), bound)
    assert clipped["alpha"] == pytest.approx(10 * ref["alpha"], rel=1e-5)
    direction = updates[2]["alpha"] / np.linalg.norm(updates[2]["alpha"])  # the same direction, shorter
    got = update_of(out, sent, delta)["alpha"]
    np.testing.assert_allclose(got / np.linalg.norm(got), direction, atol=1e-5)


def test_bad_bounds_are_refused_and_the_config_names_the_keys():
    with pytest.raises(ValueError, match="update-guard-k"):
        UpdateBound("clip", k=0.5)
    with pytest.raises(ValueError, match="mode"):
        UpdateBound("trim")
    with pytest.raises(ConfigError, match="'max-update-norm' = 5.0 bounds"):
        parse_config({"update-guard": "off", "max-update-norm": 5.0})
    with pytest.raises(ConfigError, match="'update-guard-k'"):
        parse_config({"update-guard-k": 0.9})
    cfg = parse_config({})
    assert cfg.fed.update_guard == "reject" and cfg.fed.update_guard_k == 10.0  # on by default
