"""DP maths: per-example gradients, clipping, noise, the private α rule, its config checks."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fednas.config import ConfigError, parse_config
from fednas.data import client_data
from fednas.federated import model_for
from fednas.privacy import (
    PoissonSampler, PrivateAlphaGradient, clip_factors, clip_update, clipped_sum, dp_sgd_gradient,
    per_sample_grads, per_sample_norms, privatize_update,
)
from fednas.search import StepContext, local_search

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)


def _model_and_batch(cfg):
    dataset, split = client_data(cfg.data, 0, 0, 2)
    model = model_for(cfg, dataset.spec, torch.device("cpu"))
    idx = split.alpha[:5]
    return model, dataset.x[idx], dataset.y[idx]


@pytest.fixture
def model_and_batch(tiny_cfg):
    return _model_and_batch(tiny_cfg)


def _loop_grads(model, x, y, training):
    """The reference: one example at a time through autograd, on a copy of the buffers."""
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    out = []
    model.train(training)
    for i in range(len(y)):
        logits = torch.func.functional_call(model, {**dict(model.named_parameters()), **buffers}, (x[i : i + 1],))
        out.append(torch.autograd.grad(F.cross_entropy(logits, y[i : i + 1]), model.arch_parameters())[0])
    model.train()
    return torch.stack(out)


@pytest.mark.parametrize("fused", [False, True])  # the fused supernet must work under vmap too
@pytest.mark.parametrize("mode, training, head", [("running", False, "gap"), ("example", True, "flatten")])
def test_per_sample_grads_equal_a_one_example_at_a_time_loop(tiny_cfg, mode, training, head, fused):
    model, x, y = _model_and_batch(tiny_cfg.replace(head=head, fused=fused))
    with torch.no_grad():  # move off the initial point so that running stats and α matter
        for a in model.arch_parameters():
            a.normal_(0, 0.5)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.normal_(0, 0.1)
    grads, _ = per_sample_grads(model, ["alpha"], x, y, mode)
    reference = _loop_grads(model, x, y, training)
    assert grads["alpha"].shape == (5, *model.alpha.shape)
    assert per_sample_norms(grads).min() > 1e-4  # a real signal, not the constant-logit case
    torch.testing.assert_close(grads["alpha"], reference, rtol=1e-4, atol=1e-6)


def test_per_sample_grads_leave_buffers_and_modes_as_they_were(model_and_batch):
    model, x, y = model_and_batch
    before = {n: b.clone() for n, b in model.named_buffers()}
    model.train()
    for mode in ("running", "example"):
        per_sample_grads(model, ["alpha"], x, y, mode)
        assert model.training and all(m.training for m in model.modules())
    for n, b in model.named_buffers():
        assert torch.equal(before[n], b), n


def test_example_normalisation_behind_gap_gives_constant_logits(model_and_batch):
    """Why 'running' is the default: affine-free BatchNorm + global average pool."""
    model, x, y = model_and_batch
    assert model.head.kind == "gap"
    _, logits = per_sample_grads(model, ["alpha"], x, y, "example")
    assert logits.std(0).max() < 1e-5
    _, logits = per_sample_grads(model, ["alpha"], x, y, "running")
    assert logits.std(0).max() > 1e-4


@settings(max_examples=60, deadline=None)
@given(g1=arrays(np.float32, (6, 3), elements=finite), g2=arrays(np.float32, (6, 2, 2), elements=finite),
       clip=st.floats(1e-3, 1e3))
def test_each_clipped_example_has_norm_at_most_c(g1, g2, clip):
    grads = {"a": torch.from_numpy(g1), "b": torch.from_numpy(g2)}
    norms = per_sample_norms(grads)
    factors = clip_factors(norms, clip)
    assert torch.isfinite(factors).all()
    clipped_norms = norms * factors
    assert (clipped_norms <= clip * (1 + 1e-5)).all()
    small = norms <= clip
    assert torch.equal(factors[small], torch.ones_like(factors[small]))  # small gradients untouched
    # removing one example moves the clipped sum by at most C (the sensitivity)
    full = clipped_sum(grads, clip)
    without = clipped_sum({k: v[1:] for k, v in grads.items()}, clip)
    moved = torch.sqrt(sum(((full[k] - without[k]).double() ** 2).sum() for k in grads))
    assert moved <= clip * (1 + 1e-4) + 1e-6


@settings(max_examples=60, deadline=None)
@given(u1=arrays(np.float64, (4,), elements=finite), u2=arrays(np.float64, (3, 2), elements=finite),
       clip=st.floats(1e-3, 1e3))
def test_update_clipping_bounds_the_norm_and_keeps_the_direction(u1, u2, clip):
    clipped, norm = clip_update({"a": u1, "b": u2}, clip)
    new_norm = np.sqrt(sum(np.sum(v**2) for v in clipped.values()))
    assert np.isfinite(new_norm) and new_norm <= clip * (1 + 1e-9)
    if norm <= clip:
        np.testing.assert_allclose(clipped["a"], u1)
    else:
        np.testing.assert_allclose(new_norm, clip, rtol=1e-9)
        np.testing.assert_allclose(clipped["b"] * norm / clip, u2, rtol=1e-7, atol=1e-9)


def test_a_zero_update_stays_zero():
    clipped, norm = clip_update({"a": np.zeros(5)}, 0.5)
    assert norm == 0 and np.array_equal(clipped["a"], np.zeros(5))


def test_dp_sgd_noise_has_std_zc_over_b():
    z, clip, batch = 1.3, 0.7, 4
    zeros = {"a": torch.zeros(3, 400, 250)}  # three examples, 100k coordinates
    g = dp_sgd_gradient(zeros, clip, z, batch, torch.Generator().manual_seed(0))["a"]
    assert abs(g.std().item() / (z * clip / batch) - 1) < 0.01
    assert abs(g.mean().item()) < 4 * z * clip / batch / np.sqrt(g.numel())


def test_update_noise_has_the_stated_std_and_covers_only_the_chosen_keys():
    received = {"alpha": np.zeros((300, 300), np.float32), "w": np.zeros(3, np.float32)}
    sent = {"alpha": np.full((300, 300), 1e-3, np.float32), "w": np.ones(3, np.float32)}
    new, norm = privatize_update(received, sent, ["alpha"], 100.0, 0.1, np.random.default_rng(0))
    np.testing.assert_allclose(norm, 0.3, rtol=1e-5)
    assert abs(np.std(new["alpha"]) / 0.1 - 1) < 0.01 and new["alpha"].dtype == np.float32
    assert np.array_equal(new["w"], sent["w"])


def test_private_rule_steps_with_poisson_batches_and_reports_what_it_spent(tiny_cfg):
    dataset, split = client_data(tiny_cfg.data, 0, 0, 2)
    runs = []
    for _ in range(2):
        model = model_for(tiny_cfg, dataset.spec, torch.device("cpu"))
        rule = PrivateAlphaGradient(0.1, 1.0, seed=3)
        result = local_search(model, dataset, split, tiny_cfg.search, [0, 1, 0], "cpu", alpha_gradient=rule)
        runs.append(model.alpha.detach().clone())
    report = rule.report()
    assert report["dp-sgd-steps"] == tiny_cfg.search.local_steps == result.steps
    assert report["dp-sgd-sample-rate"] == pytest.approx(tiny_cfg.search.alpha_batch_size / len(split.alpha))
    assert report["dp-sgd-expected-batch-size"] == pytest.approx(tiny_cfg.search.alpha_batch_size)
    assert torch.equal(runs[0], runs[1])  # seeded: the same noise, the same α
    assert all(set(b) <= set(split.alpha.tolist()) for b in result.alpha_batches)


def test_poisson_sampler_rate_and_empty_batches():
    sampler = PoissonSampler()
    draws = sampler(np.arange(50), 5, np.random.default_rng(0))
    sizes = [len(next(draws)) for _ in range(2000)]
    assert sampler.sample_rate == 0.1 and abs(np.mean(sizes) - 5) < 0.2
    assert min(sizes) == 0 or np.mean(np.array(sizes) == 0) < 0.02  # empty batches may happen


def test_an_empty_poisson_batch_is_a_pure_noise_step(tiny_cfg):
    dataset, _ = client_data(tiny_cfg.data, 0, 0, 2)
    model = model_for(tiny_cfg, dataset.spec, torch.device("cpu"))
    rule = PrivateAlphaGradient(0.5, 2.0, seed=0)
    empty = (dataset.x[:0], dataset.y[:0])
    grads, loss, _ = rule(model, empty, StepContext(empty, None, tiny_cfg.search))
    assert np.isnan(loss) and torch.isfinite(grads[0]).all() and grads[0].abs().sum() > 0


@pytest.mark.parametrize("raw, words", [
    ({"dp-sgd-clip": 0.0}, ["'dp-sgd-clip'", "> 0"]),
    ({"dp-update-clip": -1.0}, ["'dp-update-clip'", "> 0"]),
    ({"dp-sgd-noise-multiplier": -0.1}, ["'dp-sgd-noise-multiplier'", ">= 0"]),
    ({"dp-update-noise-std": -1.0}, ["'dp-update-noise-std'", ">= 0"]),
    ({"dp-delta": 1.0}, ["'dp-delta'", "(0, 1)"]),
    ({"dp-delta": 0.0}, ["'dp-delta'", "(0, 1)"]),
    ({"dp-accountant": "moments"}, ["'dp-accountant'", "rdp, prv"]),
    ({"dp-sgd": True, "alpha-order": "second"}, ["'dp-sgd'", "'alpha-order'"]),
    ({"dp-server": True}, ["'dp-server'", "'dp-update'"]),
])
def test_bad_dp_settings_are_refused_naming_the_key(raw, words):
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    for w in words:
        assert w in str(info.value)


@pytest.mark.parametrize("call", [
    lambda: clip_update({"a": np.ones(2)}, 0.0),
    lambda: dp_sgd_gradient({"a": torch.ones(1, 2)}, 1.0, -1.0, 1, None),
    lambda: PrivateAlphaGradient(-1.0, 1.0),
    lambda: PrivateAlphaGradient(1.0, 1.0, batchnorm="group"),
])
def test_bad_arguments_raise(call):
    with pytest.raises(ValueError):
        call()
