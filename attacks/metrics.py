"""How a reconstruction is scored against the truth (simulation only). Stated once, here.

Per rebuilt sample, images in [0, 1]:

- **mse**: mean squared error over pixels (and channels).
- **psnr**: 10·log10(1 / mse) dB (peak 1; mse floored at 1e-10, so at most 100 dB).
- **ssim**: structural similarity (Wang et al. 2004) with a Gaussian window (σ = 1.5,
  7×7, smaller for smaller images), data range 1, K1 = 0.01, K2 = 0.03, averaged over the
  window positions and channels.
- **label-correct**: the attack's label for the sample is its true label.
- **identified**: the reconstruction's nearest neighbour (Euclidean, pixels) among the
  client's whole D^α is the true sample: the attacker could point at this very sample.
- **identified-dataset**: the same against the whole dataset (every client's data, the
  pools outside them too): the strict check, no luck from a small D^α.
- **rank**, **rank-dataset**: the true sample's place (1 = nearest) among D^α, and among
  the whole dataset, ordered by distance to the reconstruction.
- **success**: identified, or recognisable: an oracle classifier (multinomial logistic
  regression on pixels, trained on data outside the clients': the holdout, aux and test
  pools) gives the reconstruction the true label and ssim ≥ 0.3. The paper's SR counts
  "recognisable"; identified is the stricter, attack-independent check.
"""

from __future__ import annotations

import math

import numpy as np

SUCCESS_SSIM = 0.3
MSE_FLOOR = 1e-10
SSIM_K1, SSIM_K2, SSIM_SIGMA, SSIM_WINDOW = 0.01, 0.03, 1.5, 7

DEFINITIONS = __doc__.split("\n\n", 1)[1].strip()


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error of two images of the same shape."""
    return float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))


def psnr(mse_value: float) -> float:
    """PSNR in dB for pixels in [0, 1]."""
    if not math.isfinite(mse_value):
        return float("nan")
    return float(10.0 * math.log10(1.0 / max(mse_value, MSE_FLOOR)))


def _gaussian_window(size: int, sigma: float) -> np.ndarray:
    r = np.arange(size) - (size - 1) / 2.0
    g = np.exp(-(r**2) / (2 * sigma**2))
    w = np.outer(g, g)
    return w / w.sum()


def _filter(img: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Valid correlation of a 2-D image with window ``w``."""
    view = np.lib.stride_tricks.sliding_window_view(img, w.shape)
    return np.einsum("ijkl,kl->ij", view, w)


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """SSIM of two images shaped (C, H, W) or (H, W) (see the module docstring)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"ssim needs images of the same shape, got {a.shape} and {b.shape}")
    if a.ndim == 2:
        a, b = a[None], b[None]
    size = min(SSIM_WINDOW, a.shape[-1], a.shape[-2])
    w = _gaussian_window(size, SSIM_SIGMA)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    values = []
    for x, y in zip(a, b):
        mx, my = _filter(x, w), _filter(y, w)
        sxx = _filter(x * x, w) - mx * mx
        syy = _filter(y * y, w) - my * my
        sxy = _filter(x * y, w) - mx * my
        s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
        values.append(s.mean())
    return float(np.mean(values))


def distances(image: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """Squared Euclidean distance from ``image`` to every image of ``pool`` (N, ...)."""
    return ((pool.reshape(len(pool), -1).astype(np.float64) - image.reshape(1, -1)) ** 2).sum(1)


def nearest(image: np.ndarray, pool: np.ndarray) -> int:
    """Index in ``pool`` (N, ...) of the image nearest to ``image`` (Euclidean)."""
    return int(np.argmin(distances(image, pool)))


def rank(image: np.ndarray, pool: np.ndarray, true: int) -> int:
    """1 + the number of images in ``pool`` strictly nearer to ``image`` than ``pool[true]``."""
    d = distances(image, pool)
    return int((d < d[true]).sum()) + 1


def nearest_other_psnr(pool: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Per image of ``pool`` (N, ...), the PSNR of the nearest other image of the pool.

    How close a reconstruction must come before "identified in the whole dataset" can hold:
    a read farther from its sample than the sample's nearest rival may land nearer the rival.
    Exact duplicates give the PSNR floor's value (100 dB).
    """
    flat = pool.reshape(len(pool), -1).astype(np.float64)
    sq = (flat**2).sum(1)
    best = np.empty(len(flat))
    for start in range(0, len(flat), chunk):
        rows = slice(start, start + chunk)
        d = sq[rows, None] + sq[None, :] - 2.0 * flat[rows] @ flat.T  # squared distances, one block
        d[np.arange(d.shape[0]), np.arange(start, start + d.shape[0])] = np.inf  # not the image itself
        best[rows] = np.maximum(d.min(1), 0.0) / flat.shape[1]
    return np.array([psnr(m) for m in best])


def is_success(identified: bool, oracle_correct: bool, ssim_value: float) -> bool:
    """The success rule: identified, or the oracle's label is right and ssim >= 0.3."""
    return bool(identified or (oracle_correct and math.isfinite(ssim_value) and ssim_value >= SUCCESS_SSIM))


class Oracle:
    """The scoring oracle: logistic regression on pixels, fitted on non-client data."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, max_samples: int = 5000, seed: int = 0) -> None:
        from sklearn.linear_model import LogisticRegression

        if len(labels) == 0:
            raise ValueError("the oracle needs data outside the clients' pool; the holdout, aux and test pools are empty")
        idx = np.random.default_rng(seed).permutation(len(labels))[:max_samples]
        self.model = LogisticRegression(max_iter=2000, C=1.0)
        self.model.fit(images[idx].reshape(len(idx), -1), labels[idx])
        self.size = len(idx)

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self.model.predict(np.asarray(images).reshape(len(images), -1))
