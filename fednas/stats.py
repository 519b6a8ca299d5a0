"""The project's statistics, stated once: 95% intervals and the means behind them.

- a rate k/n: Wilson's score interval (:func:`wilson_interval`);
- a rate over clusters (several samples from one capture, which are not independent):
  the ratio estimator Σk/Σm with the capture as unit, its variance from the spread of
  the clusters, and Wilson's interval at the effective sample size
  n* = p(1 − p)/var, at most n (Korn & Graubard 1998) (:func:`cluster_rate`); with one
  sample per cluster it is Wilson's interval itself;
- the difference of two rates: Newcombe's hybrid score interval (method 10), built from
  the two rates' intervals (:func:`newcombe`, :func:`newcombe_from`);
- a mean: Student's t (:func:`t_interval`); over clusters, the ratio mean with the
  cluster-robust variance and k − 1 degrees of freedom for k clusters (:func:`cluster_mean`,
  which is the plain t interval with one value per cluster); the difference of two such
  means: Welch's t with Satterthwaite's degrees of freedom (:func:`welch_diff`);
- an AUC: Hanley & McNeil's standard error (:func:`auc_interval`);
- F1 from member/non-member decision counts: a parametric bootstrap of the counts
  (:func:`f1_interval`, :func:`f1_diff_interval`); a guessing attack's 95% range of F1 and
  of attack acc (:func:`chance_range`);
- FedAvg's example-weighted mean (:func:`weighted_mean`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np

Z = 1.959963984540054  # two-sided 95%
RESAMPLES = 2000
T = TypeVar("T")


def _z(confidence: float) -> float:
    if confidence == 0.95:
        return Z
    from scipy import stats

    return float(stats.norm.ppf(0.5 + confidence / 2))


def _tq(df: float, confidence: float = 0.95) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.5 + confidence / 2, df))


# ---------------------------------------------------------------------------- rates


def wilson_interval(successes: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a rate ``successes / n`` (``(nan, nan)`` for n = 0).

    ``n`` may be an effective (non-integer) sample size. The bounds are clamped to [0, p]
    and [p, 1]: at p = 0 or 1 rounding would leave a bound a hair on the wrong side of p.
    """
    if n <= 0:
        return math.nan, math.nan
    z = _z(confidence)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(max(p * (1 - p), 0.0) / n + z * z / (4 * n * n)) / denom
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def _clusters(values: Sequence[Any], clusters: Sequence[Any] | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster sums and sizes of the finite ``values`` (None and NaN dropped)."""
    keys = list(range(len(values))) if clusters is None else list(clusters)
    if len(keys) != len(values):
        raise ValueError(f"{len(values)} values but {len(keys)} cluster labels")
    sums: dict[Any, float] = {}
    sizes: dict[Any, int] = {}
    for v, c in zip(values, keys):
        if v is None or not math.isfinite(float(v)):
            continue
        sums[c] = sums.get(c, 0.0) + float(v)
        sizes[c] = sizes.get(c, 0) + 1
    order = list(sums)
    return np.array([sums[c] for c in order], float), np.array([sizes[c] for c in order], float)


def _ratio_variance(y: np.ndarray, m: np.ndarray) -> tuple[float, float]:
    """Ratio estimate Σy/Σm and its cluster-robust (linearisation) variance."""
    k = len(y)
    r = float(y.sum() / m.sum())
    if k < 2:
        return r, math.nan
    resid = y - r * m
    return r, float(k / (k - 1) * (resid**2).sum() / m.sum() ** 2)


def cluster_rate(outcomes: Sequence[Any], clusters: Sequence[Any] | None = None,
                 confidence: float = 0.95) -> tuple[float, float, float, float]:
    """A rate of 0/1 ``outcomes`` whose samples come in ``clusters`` (e.g. one capture's B samples).

    Returns (rate, low, high, effective n). One sample per cluster (or ``clusters`` None):
    Wilson's interval with n. Otherwise Wilson's interval at n* = p(1 − p)/var, var the
    ratio estimator's cluster-robust variance, n* at most n (clustering never adds
    information); where the variance is zero (p = 0 or 1, or every capture at p) n* = n,
    Korn & Graubard's convention (the data say nothing of the correlation then); with a
    single capture, whose variance cannot be estimated, n* = 1: one observation.
    """
    y, m = _clusters([float(bool(v)) if v is not None else None for v in outcomes], clusters)
    n = float(m.sum())
    if n == 0:
        return math.nan, math.nan, math.nan, 0.0
    p = float(y.sum() / n)
    if (m == 1).all():
        n_eff = n
    else:
        _, var = _ratio_variance(y, m)
        n_eff = 1.0 if len(m) < 2 else min(n, p * (1 - p) / var) if var > 0 else n
    lo, hi = wilson_interval(p * n_eff, n_eff, confidence)
    return p, lo, hi, n_eff


def newcombe_from(p1: float, ci1: tuple[float, float], p2: float, ci2: tuple[float, float]) -> tuple[float, float]:
    """Interval of p1 − p2 from each rate's own (Wilson-type) interval: Newcombe's method 10."""
    (l1, u1), (l2, u2) = ci1, ci2
    if not all(math.isfinite(v) for v in (p1, p2, l1, u1, l2, u2)):
        return math.nan, math.nan
    d = p1 - p2
    return d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def newcombe(k1: float, n1: float, k2: float, n2: float) -> tuple[float, float]:
    """Interval of k1/n1 − k2/n2 for two independent binomial rates (Newcombe 1998, method 10)."""
    if n1 <= 0 or n2 <= 0:
        return math.nan, math.nan
    return newcombe_from(k1 / n1, wilson_interval(k1, n1), k2 / n2, wilson_interval(k2, n2))


# ---------------------------------------------------------------------------- means


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean of ``values`` (``(nan, nan)`` with fewer than 2)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return math.nan, math.nan
    half = _tq(len(v) - 1, confidence) * float(v.std(ddof=1)) / math.sqrt(len(v))
    return float(v.mean()) - half, float(v.mean()) + half


def cluster_mean(values: Sequence[Any], clusters: Sequence[Any] | None = None,
                 confidence: float = 0.95) -> tuple[float, float, float, int, int]:
    """Mean of ``values`` (None/NaN dropped) with a t interval that counts clusters.

    Returns (mean, low, high, n values, k clusters). The mean is Σ/n; its variance the
    ratio estimator's cluster-robust one, with k − 1 degrees of freedom. With one value per
    cluster this is exactly :func:`t_interval`. NaN bounds with fewer than 2 clusters.
    """
    y, m = _clusters(values, clusters)
    if len(m) == 0:
        return math.nan, math.nan, math.nan, 0, 0
    mean, var = _ratio_variance(y, m)
    if not math.isfinite(var):
        return mean, math.nan, math.nan, int(m.sum()), len(m)
    half = _tq(len(m) - 1, confidence) * math.sqrt(var)
    return mean, mean - half, mean + half, int(m.sum()), len(m)


def welch_diff(a: Sequence[Any], b: Sequence[Any], clusters_a: Sequence[Any] | None = None,
               clusters_b: Sequence[Any] | None = None, confidence: float = 0.95) -> tuple[float, float, float]:
    """mean(a) − mean(b) of two independent samples (each possibly clustered): Welch's t
    interval, each variance cluster-robust, Satterthwaite's degrees of freedom."""
    ya, ma = _clusters(a, clusters_a)
    yb, mb = _clusters(b, clusters_b)
    if len(ma) == 0 or len(mb) == 0:
        return math.nan, math.nan, math.nan
    (mu_a, va), (mu_b, vb) = _ratio_variance(ya, ma), _ratio_variance(yb, mb)
    d = mu_a - mu_b
    if not (math.isfinite(va) and math.isfinite(vb)) or va + vb == 0:
        return d, math.nan, math.nan
    df = (va + vb) ** 2 / (va**2 / (len(ma) - 1) + vb**2 / (len(mb) - 1))
    half = _tq(df, confidence) * math.sqrt(va + vb)
    return d, d - half, d + half


def weighted_mean(values: Sequence[T], weights: Sequence[float]) -> T:
    """Σ wᵢ·vᵢ / Σ wᵢ of numbers or arrays (numpy or torch): FedAvg's example-weighted mean.

    Summed in the given order, each term scaled first, so that a reproducible order of the
    replies gives the same bits.
    """
    total = float(sum(weights))
    if total <= 0:
        raise ValueError(f"weights must have a positive sum, got {total}")
    out: Any = None
    for v, w in zip(values, weights):
        term = v * (float(w) / total)
        out = term if out is None else out + term
    return out


# ---------------------------------------------------------------------------- membership inference


def auc_interval(auc: float, n_pos: int, n_neg: int) -> tuple[float, float]:
    """Hanley & McNeil (1982) normal interval of an AUC (clipped to [0, 1])."""
    if n_pos <= 0 or n_neg <= 0 or not math.isfinite(auc):
        return math.nan, math.nan
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)
    se = math.sqrt(max(var, 0.0))
    return max(0.0, auc - Z * se), min(1.0, auc + Z * se)


def f1_of(tp: Any, fp: Any, n_pos: int) -> Any:
    """F1 of the member class from true and false positives among ``n_pos`` members (0 when TP = 0)."""
    tp, fp = np.asarray(tp, float), np.asarray(fp, float)
    return np.where(tp > 0, 2 * tp / np.maximum(tp + fp + n_pos, 1), 0.0)


def confusion(acc: float, f1: float, n_pos: int, n_neg: int) -> tuple[int, int]:
    """(true positives, false positives) from attack acc (2·P[correct] − 1) and F1 on
    ``n_pos`` members and ``n_neg`` non-members: with a = TP − FP = (acc + 1)/2·(n_pos +
    n_neg) − n_neg and F1 = 2TP/(TP + FP + n_pos), TP = F1·(n_pos − a)/(2(1 − F1))."""
    a = (acc + 1) / 2 * (n_pos + n_neg) - n_neg
    if f1 >= 1.0:
        return n_pos, 0
    tp = f1 * (n_pos - a) / (2 * (1 - f1))
    fp = tp - a
    return int(round(min(max(tp, 0), n_pos))), int(round(min(max(fp, 0), n_neg)))


def f1_interval(tp: int, fp: int, n_pos: int, n_neg: int, seed: int = 0) -> tuple[float, float]:
    """Parametric-bootstrap interval of F1: TP ~ Bin(n_pos, TPR), FP ~ Bin(n_neg, FPR)."""
    if n_pos <= 0 or n_neg <= 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    f1 = f1_of(rng.binomial(n_pos, tp / n_pos, RESAMPLES), rng.binomial(n_neg, fp / n_neg, RESAMPLES), n_pos)
    return float(np.percentile(f1, 2.5)), float(np.percentile(f1, 97.5))


def f1_diff_interval(a: tuple[int, int, int, int], b: tuple[int, int, int, int], seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval of F1(a) − F1(b); each is (TP, FP, members, non-members)."""
    if min(a[2], a[3], b[2], b[3]) <= 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)

    def draws(tp: int, fp: int, n_pos: int, n_neg: int) -> np.ndarray:
        return f1_of(rng.binomial(n_pos, tp / n_pos, RESAMPLES), rng.binomial(n_neg, fp / n_neg, RESAMPLES), n_pos)

    d = draws(*a) - draws(*b)
    return float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))


def chance_range(n_pos: int, n_neg: int, draws: int = 20000, seed: int = 0) -> dict[str, tuple[float, float]]:
    """95% ranges of a guessing attack's figures on these set sizes: each query called a
    member with probability 1/2. Attack acc (2·P[correct] − 1) exactly from the binomial;
    F1 by ``draws`` simulated guessers (seeded)."""
    from scipy import stats

    n = n_pos + n_neg
    if n_pos <= 0 or n_neg <= 0:
        return {"attack-acc": (math.nan, math.nan), "f1": (math.nan, math.nan)}
    lo, hi = stats.binom.ppf(0.025, n, 0.5), stats.binom.ppf(0.975, n, 0.5)
    rng = np.random.default_rng(seed)
    f1 = f1_of(rng.binomial(n_pos, 0.5, draws), rng.binomial(n_neg, 0.5, draws), n_pos)
    return {"attack-acc": (2 * lo / n - 1, 2 * hi / n - 1),
            "f1": (float(np.percentile(f1, 2.5)), float(np.percentile(f1, 97.5)))}


def all_member_f1(n_pos: int, n_neg: int) -> float:
    """F1 of the attack that calls every query a member: 2m/(2m + n) (2/3 on balanced sets)."""
    return 2 * n_pos / (2 * n_pos + n_neg) if n_pos > 0 else math.nan
