"""Recalibrated and pooled BatchNorm statistics against independent references."""

from __future__ import annotations

import pytest
import torch

from fednas.batchnorm import batchnorm_modules, pool_statistics, recalibrate, statistics_state
from fednas.config import parse_config
from fednas.spaces import InputSpec, build_supernet
from tests.fednas.test_fused import _pair

SPEC = InputSpec(channels=1, image_size=8, num_classes=3)


def _batches(sizes, seed=3, spec=SPEC, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(n, spec.channels, spec.image_size, spec.image_size, generator=g, dtype=dtype) for n in sizes]


def _model(space="dag", fused=True):
    cfg = parse_config({"space": space, "dag-nodes": 3, "layers": 3, "channels": 4}).space
    return build_supernet(cfg, SPEC, 0, fused=fused)


@pytest.mark.parametrize("space", ["dag", "darts"])
@pytest.mark.parametrize("fused", [False, True])
def test_the_stem_gets_the_size_weighted_mean_of_its_batch_statistics(space, fused):
    # The stem's BatchNorm reads conv(x): its recalibrated statistics can be computed by hand.
    model = _model(space, fused)
    batches = _batches([5, 2, 9])
    assert recalibrate(model, batches) == 16
    conv, bn = model.stem[0], model.stem[1]
    with torch.no_grad():
        outs = [conv(x).transpose(0, 1).flatten(1) for x in batches]  # [C, n·H·W] per batch
    mean = torch.cat(outs, 1).mean(1)  # the population mean over all samples
    var = sum(len(x) * o.var(1, unbiased=True) for x, o in zip(batches, outs)) / 16  # as BatchNorm tracks it
    torch.testing.assert_close(bn.running_mean, mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bn.running_var, var, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("space", ["dag", "darts"])
def test_fused_and_reference_recalibrate_to_the_same_statistics(space):
    ref, fused = _pair(space)  # float64, random θ, α and statistics
    spec = InputSpec(2, 5, 3) if space == "dag" else InputSpec(1, 8, 3)
    batches = _batches([4, 3], spec=spec, dtype=torch.float64)
    recalibrate(ref, batches)
    recalibrate(fused, batches)
    a, b = statistics_state(ref), statistics_state(fused)
    assert a.keys() == b.keys() and len(a) > 10
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-9, atol=1e-11, msg=k)


def test_old_statistics_are_forgotten_and_nothing_else_changes():
    model = _model()
    model.eval()
    params = {k: v.clone() for k, v in model.named_parameters()}
    batches = _batches([6, 6])
    recalibrate(model, batches)
    first = statistics_state(model)
    with torch.no_grad():
        for m in batchnorm_modules(model):
            m.running_mean.add_(3.0)
            m.running_var.mul_(7.0)
    recalibrate(model, batches)
    for k, v in statistics_state(model).items():
        torch.testing.assert_close(v, first[k], msg=k)
    assert not model.training  # mode restored
    assert all(m.momentum == 0.1 for m in batchnorm_modules(model))  # momentum restored
    assert all(torch.equal(p, params[k]) for k, p in model.named_parameters())
    # the fused bank still works with its own momentum after the pass
    model.train()
    model(batches[0])


def test_recalibrated_statistics_are_what_eval_mode_needs():
    # One batch: eval mode with recalibrated statistics reproduces the train-mode forward of
    # that batch, up to the unbiased/biased variance of each BatchNorm (n·H·W large: tiny).
    model = _model("dag", fused=True)
    x = _batches([64])[0]
    recalibrate(model, [x])
    model.train()
    with torch.no_grad():
        train_logits = model(x)
        model.eval()
        eval_logits = model(x)
    torch.testing.assert_close(eval_logits, train_logits, rtol=2e-3, atol=2e-3)


def _moments(x: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"bn.running_mean": x.mean(0), "bn.running_var": x.var(0, unbiased=False)}


def test_pooling_sets_gives_the_statistics_of_their_union():
    g = torch.Generator().manual_seed(0)
    parts = [torch.randn(n, 4, generator=g, dtype=torch.float64) * s + m for n, s, m in ((7, 1.0, 0.0), (3, 2.0, 5.0), (12, 0.5, -1.0))]
    pooled = pool_statistics([(_moments(p), len(p)) for p in parts])
    union = _moments(torch.cat(parts))
    for k in union:
        torch.testing.assert_close(pooled[k].double(), union[k], rtol=1e-6, atol=1e-6)


def test_pooling_refuses_sets_that_name_different_buffers():
    a = {"bn.running_mean": torch.zeros(2), "bn.running_var": torch.ones(2)}
    b = {"other.running_mean": torch.zeros(2), "other.running_var": torch.ones(2)}
    with pytest.raises(ValueError, match="different buffers"):
        pool_statistics([(a, 3), (b, 3)])
    with pytest.raises(ValueError, match="at least one"):
        pool_statistics([(a, 0)])


def test_a_momentum_free_bank_is_still_refused():
    model = _model()
    bn = batchnorm_modules(model)
    for m in bn:
        m.momentum = None
    with pytest.raises(ValueError, match="fixed momentum"):
        model.train()
        model(_batches([4])[0])
