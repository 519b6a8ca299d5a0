import math

import numpy as np
import pytest

from attacks import metrics as M


def test_psnr_and_mse_on_unit_pixels():
    a = np.zeros((1, 4, 4))
    b = np.full((1, 4, 4), 0.1)
    assert M.mse(a, b) == pytest.approx(0.01)
    assert M.psnr(0.01) == pytest.approx(20.0)
    assert M.psnr(0.0) == pytest.approx(100.0)  # floored, not infinite


def test_ssim_is_one_for_identical_images_and_symmetric():
    rng = np.random.default_rng(0)
    a, b = rng.random((1, 8, 8)), rng.random((1, 8, 8))
    assert M.ssim(a, a) == pytest.approx(1.0)
    assert M.ssim(a, b) == pytest.approx(M.ssim(b, a))
    assert M.ssim(a, b) < 0.5


def test_ssim_of_two_constant_images_has_the_closed_form():
    # constant images: variances and covariance vanish, SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    a, b = 0.2, 0.7
    c1 = (M.SSIM_K1 * 1.0) ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert M.ssim(np.full((8, 8), a), np.full((8, 8), b)) == pytest.approx(expected)


def test_ssim_matches_a_direct_loop_over_windows():
    rng = np.random.default_rng(1)
    a, b = rng.random((9, 9)), rng.random((9, 9))
    w = M._gaussian_window(7, M.SSIM_SIGMA)
    c1, c2 = M.SSIM_K1**2, M.SSIM_K2**2
    vals = []
    for i in range(3):
        for j in range(3):
            pa, pb = a[i : i + 7, j : j + 7], b[i : i + 7, j : j + 7]
            ma, mb = (w * pa).sum(), (w * pb).sum()
            va, vb = (w * (pa - ma) ** 2).sum(), (w * (pb - mb) ** 2).sum()
            cov = (w * (pa - ma) * (pb - mb)).sum()
            vals.append(((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    assert M.ssim(a, b) == pytest.approx(np.mean(vals))


def test_nearest_and_the_success_rule():
    pool = np.stack([np.full((1, 2, 2), v) for v in (0.0, 0.5, 1.0)])
    assert M.nearest(np.full((1, 2, 2), 0.45), pool) == 1
    assert M.is_success(True, False, 0.0)
    assert M.is_success(False, True, M.SUCCESS_SSIM)
    assert not M.is_success(False, True, M.SUCCESS_SSIM - 1e-6)
    assert not M.is_success(False, False, 1.0)
    assert not M.is_success(False, True, math.nan)


def test_rank_is_the_true_samples_place_in_the_sorted_distances():
    rng = np.random.default_rng(3)
    pool = rng.random((40, 1, 4, 4))
    img = rng.random((1, 4, 4))
    order = np.argsort([np.sum((p - img) ** 2) for p in pool])
    for place, true in enumerate(order):
        assert M.rank(img, pool, int(true)) == place + 1
    assert M.nearest(img, pool) == order[0]


def test_oracle_classifies_digits_it_never_saw():
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = (d.images / 16.0)[:, None], d.target
    oracle = M.Oracle(x[:1000], y[:1000])
    assert (oracle.predict(x[1000:1300]) == y[1000:1300]).mean() > 0.85
