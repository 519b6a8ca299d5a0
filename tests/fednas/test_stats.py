"""The project's statistics against published values, scipy and invariants."""

import math

import numpy as np
import pytest
import torch
from scipy import stats as sps

from fednas import stats


def test_wilson_matches_scipys_score_interval_and_newcombes_examples():
    for n in (1, 5, 13, 40, 263, 1000):
        for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
            ci = sps.binomtest(k, n).proportion_ci(method="wilson")
            assert stats.wilson_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-12)
    # Newcombe (1998), Stat Med 17:857 and 17:873
    assert stats.wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert stats.newcombe(56, 70, 48, 80) == pytest.approx((0.0524, 0.3339), abs=1e-4)
    assert stats.newcombe(9, 10, 3, 10) == pytest.approx((0.1705, 0.8090), abs=1e-4)
    assert all(math.isnan(v) for v in stats.wilson_interval(0, 0))
    lo, hi = stats.wilson_interval(81, 263, confidence=0.99)
    ci = sps.binomtest(81, 263).proportion_ci(confidence_level=0.99, method="wilson")
    assert (lo, hi) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_wilson_holds_its_own_rate_at_zero_and_one():
    # a bound a rounding error past p gave the SR plot a negative error bar (matplotlib refuses it)
    for n in (1, 6, 7, 30, 300):
        assert stats.wilson_interval(0, n)[0] == 0.0 and stats.wilson_interval(n, n)[1] == 1.0
        assert all(lo <= k / n <= hi for k in range(n + 1) for lo, hi in [stats.wilson_interval(k, n)])


def test_a_cluster_rate_with_one_sample_per_cluster_is_wilson_and_else_the_hand_computation():
    rng = np.random.default_rng(0)
    x = list(rng.random(37) < 0.3)
    p, lo, hi, n_eff = stats.cluster_rate(x)
    assert (lo, hi) == stats.wilson_interval(sum(x), 37) and n_eff == 37 and p == sum(x) / 37
    # three captures of two samples: sums 2, 0, 1; p = 1/2; residuals 1, -1, 0;
    # var = 3/2 * 2 / 6^2 = 1/12; n* = (1/4) / (1/12) = 3 (below the 6 samples)
    p, lo, hi, n_eff = stats.cluster_rate([1, 1, 0, 0, 1, 0], ["a", "a", "b", "b", "c", "c"])
    assert p == 0.5 and n_eff == pytest.approx(3.0)
    assert (lo, hi) == pytest.approx(stats.wilson_interval(1.5, 3.0))
    # captures that agree within themselves no more than independent samples: n* stays n
    assert stats.cluster_rate([1, 0, 1, 0, 1, 0], [0, 0, 1, 1, 2, 2])[3] == 6
    # no spread at all (every sample failed): the data say nothing of the correlation, n* = n
    assert stats.cluster_rate([0] * 8, [0, 0, 0, 0, 1, 1, 1, 1])[1:] == (*stats.wilson_interval(0, 8), 8)
    # one capture of eight: one observation
    assert stats.cluster_rate([1, 0] * 4, [0] * 8)[1:] == (*stats.wilson_interval(0.5, 1), 1)


def test_the_cluster_rate_covers_95_percent_where_pooled_wilson_does_not():
    """Captures of 8 samples that succeed or fail together more often than chance (a
    beta-binomial with intra-capture correlation 1/3): pooled Wilson is far too narrow."""
    rng = np.random.default_rng(1)
    p, clusters, size, a = 0.3, 30, 8, 1.0
    b = a * (1 - p) / p
    pooled = clustered = 0
    reps = 1000
    for _ in range(reps):
        q = rng.beta(a, b, clusters)
        k = rng.binomial(size, q)
        outcomes = np.concatenate([[1] * int(ki) + [0] * (size - int(ki)) for ki in k])
        labels = np.repeat(np.arange(clusters), size)
        lo, hi = stats.wilson_interval(outcomes.sum(), len(outcomes))
        pooled += lo <= p <= hi
        _, lo, hi, _ = stats.cluster_rate(list(outcomes), list(labels))
        clustered += lo <= p <= hi
    assert pooled / reps < 0.8
    assert 0.91 <= clustered / reps <= 0.98


def test_t_interval_is_scipys_and_a_cluster_mean_of_equal_clusters_is_the_t_interval_of_their_means():
    x = np.random.default_rng(2).normal(3.0, 2.0, 6)
    ci = sps.ttest_1samp(x, 0.0).confidence_interval()
    assert stats.t_interval(x) == pytest.approx((ci.low, ci.high), rel=1e-12)
    m, lo, hi, n, k = stats.cluster_mean(list(x))
    assert (m, n, k) == (pytest.approx(x.mean()), 6, 6) and (lo, hi) == pytest.approx((ci.low, ci.high), rel=1e-12)
    values = np.random.default_rng(3).normal(0.0, 1.0, 20)
    labels = np.repeat(np.arange(5), 4)
    means = values.reshape(5, 4).mean(axis=1)
    m, lo, hi, n, k = stats.cluster_mean(list(values), list(labels))
    assert (n, k) == (20, 5) and m == pytest.approx(values.mean())
    assert (lo, hi) == pytest.approx(stats.t_interval(means), rel=1e-10)
    assert all(math.isnan(v) for v in stats.cluster_mean([None, float("nan")])[:3])
    assert all(math.isnan(v) for v in stats.t_interval([1.0]))


def test_welch_difference_is_scipys_welch_interval():
    rng = np.random.default_rng(4)
    a, b = rng.normal(1.0, 1.0, 7), rng.normal(0.0, 2.0, 5)
    d, lo, hi = stats.welch_diff(list(a), list(b))
    ci = sps.ttest_ind(a, b, equal_var=False).confidence_interval()
    assert d == pytest.approx(a.mean() - b.mean()) and (lo, hi) == pytest.approx((ci.low, ci.high), rel=1e-10)


def test_weighted_mean_is_numpys_average_for_arrays_and_tensors():
    rng = np.random.default_rng(5)
    arrays, w = [rng.normal(size=(3, 2)) for _ in range(4)], [3.0, 1.0, 0.5, 2.0]
    expected = np.average(np.stack(arrays), axis=0, weights=w)
    assert np.allclose(stats.weighted_mean(arrays, w), expected, atol=1e-14)
    got = stats.weighted_mean([torch.from_numpy(a) for a in arrays], w)
    assert torch.allclose(got, torch.from_numpy(expected), atol=1e-14)
    with pytest.raises(ValueError, match="positive sum"):
        stats.weighted_mean(arrays, [0, 0, 0, 0])


def test_auc_interval_at_chance_is_the_mann_whitney_spread():
    for n_pos, n_neg in ((100, 100), (45, 300)):
        lo, hi = stats.auc_interval(0.5, n_pos, n_neg)
        assert (hi - lo) / 2 == pytest.approx(stats.Z * math.sqrt((n_pos + n_neg + 1) / (12 * n_pos * n_neg)))


def _f1(labels: np.ndarray, decisions: np.ndarray) -> float:
    tp = int(((labels == 1) & (decisions == 1)).sum())
    fp = int(((labels == 0) & (decisions == 1)).sum())
    fn = int(((labels == 1) & (decisions == 0)).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def test_confusion_counts_are_recovered_from_attack_acc_and_f1_on_unbalanced_sets():
    rng = np.random.default_rng(6)
    for _ in range(100):
        n_pos, n_neg = int(rng.integers(5, 300)), int(rng.integers(5, 300))
        labels = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
        decisions = (rng.random(n_pos + n_neg) < rng.random()).astype(int)
        acc = 2 * float(np.mean(labels == decisions)) - 1
        tp, fp = int(decisions[:n_pos].sum()), int(decisions[n_pos:].sum())
        if tp == 0:
            continue  # F1 = 0 says nothing about FP
        assert stats.confusion(acc, _f1(labels, decisions), n_pos, n_neg) == (tp, fp)
        assert float(stats.f1_of(tp, fp, n_pos)) == pytest.approx(_f1(labels, decisions))


def test_the_guessing_range_is_the_exact_binomial_one():
    """Attack acc: scipy's binomial quantiles; F1: the exact quantiles of the F1 of every
    (TP, FP) weighted by its probability, which 20,000 simulated guessers must match."""
    n_pos, n_neg = 12, 9
    got = stats.chance_range(n_pos, n_neg)
    n = n_pos + n_neg
    assert got["attack-acc"] == (2 * sps.binom.ppf(0.025, n, 0.5) / n - 1, 2 * sps.binom.ppf(0.975, n, 0.5) / n - 1)
    f1s, probs = [], []
    for tp in range(n_pos + 1):
        for fp in range(n_neg + 1):
            f1s.append(2 * tp / (tp + fp + n_pos) if tp else 0.0)
            probs.append(sps.binom.pmf(tp, n_pos, 0.5) * sps.binom.pmf(fp, n_neg, 0.5))
    order = np.argsort(f1s)
    cdf = np.cumsum(np.array(probs)[order])
    values = np.array(f1s)[order]
    lo, hi = values[np.searchsorted(cdf, 0.025)], values[np.searchsorted(cdf, 0.975)]
    assert got["f1"][0] == pytest.approx(lo, abs=0.03) and got["f1"][1] == pytest.approx(hi, abs=0.03)
    assert stats.all_member_f1(500, 500) == pytest.approx(2 / 3)
    assert stats.all_member_f1(300, 100) == pytest.approx(_f1(np.r_[np.ones(300), np.zeros(100)], np.ones(400)))
