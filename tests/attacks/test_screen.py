"""The aux screen's learned inverse: ridge regression against scikit-learn's and a brute-force leave-one-out."""

from __future__ import annotations

import pytest
import torch
from sklearn.linear_model import Ridge as SkRidge

from attacks.adra.screen import RIDGE_MIN, Ridge, ridge_inverse


def _data(n=40, f=12, d=9, seed=0):
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(n, f, generator=gen, dtype=torch.float64)
    targets = feats @ torch.randn(f, d, generator=gen, dtype=torch.float64) + 0.3 * torch.randn(n, d, generator=gen,
                                                                                                   dtype=torch.float64)
    return feats, targets


@pytest.mark.parametrize("lam", [1e-3, 0.5, 20.0])
def test_ridge_predicts_as_scikit_learn(lam):
    feats, targets = _data()
    new = torch.randn(3, feats.shape[1], generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ours = Ridge.fit(feats, targets).predict(lam, new)
    ref = SkRidge(alpha=lam, fit_intercept=True, solver="svd").fit(feats.numpy(), targets.numpy()).predict(new.numpy())
    assert torch.allclose(ours, torch.as_tensor(ref), atol=1e-9)


@pytest.mark.parametrize("lam", [1e-2, 1.0, 30.0])
def test_closed_form_leave_one_out_matches_refitting(lam):
    feats, targets = _data(n=25)
    errors = []
    for i in range(len(feats)):
        keep = torch.arange(len(feats)) != i
        pred = Ridge.fit(feats[keep], targets[keep]).predict(lam, feats[i : i + 1])[0]
        errors.append(((pred - targets[i]) ** 2).mean())
    brute = float(torch.stack(errors).mean())
    assert Ridge.fit(feats, targets).loo_error(lam, targets) == pytest.approx(brute, rel=1e-8)


def test_ridge_inverse_skips_aux_images_without_gradient_and_stays_in_the_box():
    gen = torch.Generator().manual_seed(2)
    images = torch.rand(30, 1, 4, 4, generator=gen)
    mix = torch.randn(16, 20, generator=gen)
    updates = images.reshape(30, -1) @ mix
    updates[:5] = 0.0  # saturated aux images: no gradient
    out = ridge_inverse(updates, images, updates[7] * 3.0)
    assert out is not None and out.shape == (16,)
    assert torch.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
    # the aux image whose update is observed is rebuilt closer than the pool's mean is
    assert ((out - images[7].flatten()) ** 2).mean() < ((images.mean(0).flatten() - images[7].flatten()) ** 2).mean()
    assert ridge_inverse(updates[: RIDGE_MIN + 4], images[: RIDGE_MIN + 4], updates[0]) is None  # too few left
