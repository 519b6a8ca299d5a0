"""The aux screen: its learned inverse (ridge regression against scikit-learn's and a brute-force
leave-one-out) and its matching pursuit over several samples (planted captures)."""

from __future__ import annotations

import pytest
import torch
from sklearn.linear_model import Ridge as SkRidge

from attacks.adra.client_model import AlphaProcedure, replay
from attacks.adra.screen import RIDGE_MIN, Ridge, _pursuit, ridge_inverse


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


def _planted(proc, picks, n=60, n_alpha=48, seed=0):
    """A gradient table of n aux images and the Δα the procedure makes from the rows ``picks``
    (step after step, B rows a step), with the table as the gradients (no α drift)."""
    gen = torch.Generator().manual_seed(seed)
    table = torch.randn(n, n_alpha, generator=gen, dtype=torch.float64) * torch.rand(n, 1, generator=gen,
                                                                                      dtype=torch.float64)
    steps = [table[picks[k * proc.batch_size : (k + 1) * proc.batch_size]].mean(0, keepdim=True)
             for k in range(proc.steps)]
    observed = replay(proc, torch.zeros(1, n_alpha, dtype=torch.float64), lambda k, a: steps[k])[0]
    aux_x, aux_y = torch.arange(n, dtype=torch.float64).view(n, 1, 1, 1), torch.zeros(n, dtype=torch.long)
    return table, observed, aux_x, aux_y


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("optimizer", "steps", "batch"), [("adam", 2, 1), ("adam", 3, 1), ("sgd", 3, 1), ("sgd", 1, 3)])
def test_the_pursuit_finds_planted_samples(optimizer, steps, batch, seed):
    proc = AlphaProcedure(optimizer, 0.01, 0.0, 0.9, steps, batch)
    picks = torch.randperm(60, generator=torch.Generator().manual_seed(seed))[: steps * batch].tolist()
    table, observed, aux_x, aux_y = _planted(proc, picks, seed=seed)
    starts = _pursuit(proc, table, observed, aux_x, aux_y, steps, batch, 1, torch.Generator().manual_seed(0), 0.0)
    found = starts.images.flatten().long().tolist()
    # Adam's steps are told apart (each step's own normalisation); SGD's sum is the same in any order
    assert found == picks if optimizer == "adam" else sorted(found) == sorted(picks)
    assert float(starts.scores[0]) == pytest.approx(1.0, abs=1e-6)


def test_the_capture_level_learned_inverse_places_planted_images_in_their_steps():
    from attacks.adra.screen import sequence_inverse

    gen = torch.Generator().manual_seed(0)
    n, pixels, n_alpha = 80, 16, 60
    aux_y = torch.randint(0, 3, (n,), generator=gen)
    protos = torch.rand(3, 1, 4, 4, generator=gen)  # three classes, each a prototype and its variations
    aux_x = (protos[aux_y] + 0.1 * torch.randn(n, 1, 4, 4, generator=gen)).clamp(0, 1)
    # a smooth gradient table: each aux image's "architecture gradient" a fixed map of its pixels
    table = torch.tanh(aux_x.reshape(n, pixels) @ torch.randn(pixels, n_alpha, generator=gen))
    proc = AlphaProcedure("adam", 0.01, 0.0, 0.9, 2, 1)
    picks = [int(torch.nonzero(aux_y == 0)[0]), int(torch.nonzero(aux_y == 2)[0])]
    observed = replay(proc, torch.zeros(1, n_alpha), lambda k, a: table[picks[k]][None])[0]
    images, labels = sequence_inverse(proc, table, observed, aux_x, aux_y, 2, 1, 0.0, 3)
    assert images.shape == (2, 1, 1, 4, 4) and labels.shape == (2, 1)
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    mean = aux_x.mean(0)
    for k, g in enumerate(picks):  # each step's image and label are its own sample's, not the other step's
        assert ((images[k, 0] - aux_x[g]) ** 2).mean() < 0.5 * ((mean - aux_x[g]) ** 2).mean()
        assert int(labels[k, 0]) == int(aux_y[g])
    # fewer than RIDGE_MIN aux images with a gradient: no inverse
    sparse = table.clone()
    sparse[RIDGE_MIN - 1 :] = 0.0
    assert sequence_inverse(proc, sparse, observed, aux_x, aux_y, 2, 1, 0.0, 3) is None
