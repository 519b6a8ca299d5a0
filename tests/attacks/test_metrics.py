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


def _reference_ssim(a: np.ndarray, b: np.ndarray, size: int, sigma: float) -> float:
    """Wang et al. (2004), written apart from attacks.metrics: scipy's Gaussian window and correlation.

    The window is scipy.signal's Gaussian (normalised); the local statistics are scipy.ndimage
    correlations over the whole image, of which only the positions where the window fits
    (the border of half a window cropped) are averaged.
    """
    from scipy.ndimage import correlate
    from scipy.signal.windows import gaussian

    g = gaussian(size, sigma)
    w = np.outer(g, g) / np.outer(g, g).sum()
    half = size // 2
    c1, c2 = 0.01**2, 0.03**2  # K1, K2 of the paper, data range 1

    def local(x: np.ndarray) -> np.ndarray:
        return correlate(x, w, mode="constant")[half:-half or None, half:-half or None]

    out = []
    for x, y in zip(a, b):
        mx, my = local(x), local(y)
        vx, vy, cxy = local(x * x) - mx**2, local(y * y) - my**2, local(x * y) - mx * my
        out.append(np.mean((2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))))
    return float(np.mean(out))


@pytest.mark.parametrize("shape", [(9, 9), (3, 12, 10), (1, 28, 28)])
def test_ssim_matches_an_independent_gaussian_window_ssim(shape):
    rng = np.random.default_rng(1)
    a = rng.random(shape)
    b = np.clip(a + rng.normal(0, 0.2, shape), 0, 1)  # related images: SSIM well inside (0, 1)
    a3, b3 = (a[None], b[None]) if a.ndim == 2 else (a, b)
    expected = _reference_ssim(a3, b3, 7, 1.5)  # the documented window: 7 x 7, sigma 1.5
    assert 0.1 < expected < 0.95
    assert M.ssim(a, b) == pytest.approx(expected, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("sigma", [1.5, 1.0])
def test_ssim_matches_scikit_image_with_its_window(monkeypatch, sigma):
    # scikit-image's Gaussian SSIM truncates its window at 3.5 sigma (11 x 11 at sigma 1.5);
    # ours is 7 x 7 by default: with the window set to scikit-image's, the two must agree.
    metrics = pytest.importorskip("skimage.metrics")
    monkeypatch.setattr(M, "SSIM_WINDOW", 2 * int(3.5 * sigma + 0.5) + 1)
    monkeypatch.setattr(M, "SSIM_SIGMA", sigma)
    rng = np.random.default_rng(2)
    a = rng.random((3, 24, 20))
    b = np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1)
    expected = metrics.structural_similarity(a, b, data_range=1.0, channel_axis=0, gaussian_weights=True,
                                             sigma=sigma, use_sample_covariance=False)
    assert M.ssim(a, b) == pytest.approx(expected, rel=1e-9)


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


def test_nearest_other_psnr_against_a_loop_over_the_pool():
    rng = np.random.default_rng(0)
    pool = rng.random((300, 1, 5, 5))
    pool[7] = pool[3]  # an exact duplicate: its nearest other image is at the PSNR floor
    got = M.nearest_other_psnr(pool, chunk=64)  # several blocks, the last one short
    for i in range(len(pool)):
        d = M.distances(pool[i], pool)
        d[i] = np.inf
        j = int(np.argmin(d))
        assert got[i] == pytest.approx(M.psnr(M.mse(pool[i], pool[j])), abs=1e-6)
    assert got[3] == got[7] == pytest.approx(M.psnr(0.0))
