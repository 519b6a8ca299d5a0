"""95% intervals for the tables, stated once.

- rates (success, identified, attack P[correct], TPR, accuracy): Wilson score interval;
- the paper's attack acc 2·P[correct] − 1: Wilson on P[correct], mapped through 2p − 1;
- a difference of two rates (a defense's effect, an accuracy cost): Newcombe's hybrid
  score interval (method 10), built from the two Wilson intervals;
- means of per-sample values (MSE, PSNR, SSIM) and their differences: percentile
  bootstrap, 2,000 resamples, seeded;
- AUC: Hanley & McNeil's standard error (normal approximation, clipped to [0, 1]);
- F1 from the confusion counts: bootstrap of the members' and non-members' decisions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Z = 1.959963984540054  # two-sided 95%
RESAMPLES = 2000


def wilson(successes: float, n: int, z: float = Z) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (NaNs when n = 0)."""
    if n <= 0:
        return math.nan, math.nan
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # clamped to [0, p] and [p, 1]: at p = 0 or 1 rounding would leave the bound a hair off p
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def newcombe(k1: float, n1: int, k2: float, n2: int) -> tuple[float, float]:
    """Interval of p1 − p2 (Newcombe 1998, method 10)."""
    if n1 <= 0 or n2 <= 0:
        return math.nan, math.nan
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1)
    l2, u2 = wilson(k2, n2)
    d = p1 - p2
    return d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def _clean(values: Sequence[float | None]) -> np.ndarray:
    a = np.array([v for v in values if v is not None], dtype=float)
    return a[np.isfinite(a)]


def bootstrap_mean(values: Sequence[float | None], seed: int = 0) -> tuple[float, float, float]:
    """Mean and its percentile-bootstrap 95% interval (NaNs when empty)."""
    a = _clean(values)
    if len(a) == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = a[rng.integers(0, len(a), size=(RESAMPLES, len(a)))].mean(axis=1)
    return float(a.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def bootstrap_diff(a: Sequence[float | None], b: Sequence[float | None], seed: int = 0) -> tuple[float, float, float]:
    """mean(a) − mean(b) for two independent samples, with a percentile-bootstrap interval."""
    x, y = _clean(a), _clean(b)
    if len(x) == 0 or len(y) == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    dx = x[rng.integers(0, len(x), size=(RESAMPLES, len(x)))].mean(axis=1)
    dy = y[rng.integers(0, len(y), size=(RESAMPLES, len(y)))].mean(axis=1)
    d = dx - dy
    return float(x.mean() - y.mean()), float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))


def auc_interval(auc: float, n_pos: int, n_neg: int) -> tuple[float, float]:
    """Hanley & McNeil (1982) normal interval of an AUC."""
    if n_pos <= 0 or n_neg <= 0 or not math.isfinite(auc):
        return math.nan, math.nan
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)
    se = math.sqrt(max(var, 0.0))
    return max(0.0, auc - Z * se), min(1.0, auc + Z * se)


def confusion(acc: float, f1: float, n: int) -> tuple[int, int]:
    """(true positives, false positives) of a balanced attack (n members, n non-members)
    from the paper's attack acc (2·P[correct] − 1) and F1. With p = P[correct]:
    TP + TN = 2np, TN = n − FP, and F1 = 2TP / (2TP + FP + FN) = TP / (TP + n(1 − p))."""
    p = (acc + 1) / 2
    if f1 >= 1.0:
        return n, 0
    tp = f1 * n * (1 - p) / (1 - f1)
    fp = tp + n - 2 * n * p
    return int(round(min(max(tp, 0), n))), int(round(min(max(fp, 0), n)))


def f1_interval(tp: int, fp: int, n_pos: int, n_neg: int, seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval of F1 for balanced members/non-members with these counts."""
    if n_pos <= 0 or n_neg <= 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    tps = rng.binomial(n_pos, tp / n_pos, RESAMPLES)
    fps = rng.binomial(n_neg, fp / n_neg, RESAMPLES)
    fns = n_pos - tps
    denom = 2 * tps + fps + fns
    f1 = np.where(tps > 0, 2 * tps / np.maximum(denom, 1), 0.0)
    return float(np.percentile(f1, 2.5)), float(np.percentile(f1, 97.5))


def f1_diff_interval(a: tuple[int, int, int], b: tuple[int, int, int], seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval of F1(a) − F1(b); each is (TP, FP, n) of a balanced attack."""
    rng = np.random.default_rng(seed)

    def draws(tp: int, fp: int, n: int) -> np.ndarray:
        tps, fps = rng.binomial(n, tp / n, RESAMPLES), rng.binomial(n, fp / n, RESAMPLES)
        return np.where(tps > 0, 2 * tps / np.maximum(2 * tps + fps + n - tps, 1), 0.0)

    if min(a[2], b[2]) <= 0:
        return math.nan, math.nan
    d = draws(*a) - draws(*b)
    return float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))
