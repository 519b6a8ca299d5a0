"""The tables' 95% intervals against published values and independent references."""

import math

import numpy as np
import pytest

from attacks.amia import metrics as amia_metrics
from simulations.tables import figures, stats


def test_wilson_and_newcombe_match_newcombes_published_examples():
    # Newcombe (1998), Stat Med 17:857 and 17:873: worked examples of the score methods
    assert stats.wilson(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert stats.wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert stats.newcombe(56, 70, 48, 80) == pytest.approx((0.0524, 0.3339), abs=1e-4)
    assert stats.newcombe(9, 10, 3, 10) == pytest.approx((0.1705, 0.8090), abs=1e-4)
    assert all(math.isnan(v) for v in stats.wilson(0, 0))


def test_wilson_covers_about_95_percent():
    rng = np.random.default_rng(0)
    n, p = 40, 0.3
    hits = sum(lo <= p <= hi for lo, hi in (stats.wilson(k, n) for k in rng.binomial(n, p, 4000)))
    assert 0.93 <= hits / 4000 <= 0.975


def test_wilson_interval_holds_its_own_rate_at_zero_and_one():
    # a lower bound a rounding error above 0 gave the SR plot a negative error bar (matplotlib refuses it)
    for n in (1, 6, 7, 30, 300):
        assert stats.wilson(0, n)[0] == 0.0 and stats.wilson(n, n)[1] == 1.0
        assert all(lo <= k / n <= hi for k in range(n + 1) for lo, hi in [stats.wilson(k, n)])


def test_auc_interval_at_chance_is_the_mann_whitney_spread_of_the_amia_metrics():
    for n_pos, n_neg in ((100, 100), (45, 300)):
        lo, hi = stats.auc_interval(0.5, n_pos, n_neg)
        sd = amia_metrics.chance_spread(n_pos, n_neg)["auc-chance-sd"]
        assert (hi - lo) / 2 == pytest.approx(stats.Z * sd, rel=1e-9)


def test_confusion_counts_recovered_from_the_papers_attack_acc_and_f1():
    rng = np.random.default_rng(1)
    for _ in range(50):
        n = int(rng.integers(5, 300))
        labels = np.r_[np.ones(n, int), np.zeros(n, int)]
        decisions = (rng.random(2 * n) < rng.random()).astype(int)
        acc = amia_metrics.attack_accuracy(labels, decisions)
        f1 = amia_metrics.f1_score(labels, decisions)
        tp, fp = int(decisions[:n].sum()), int(decisions[n:].sum())
        if tp == 0:
            continue  # F1 = 0 says nothing about FP
        assert stats.confusion(acc, f1, n) == (tp, fp)


def test_bootstrap_mean_interval_is_the_normal_one_for_a_large_sample():
    x = np.random.default_rng(2).normal(3.0, 2.0, 400)
    m, lo, hi = stats.bootstrap_mean(list(x))
    assert lo < m < hi and m == pytest.approx(x.mean())
    assert (hi - lo) / 2 == pytest.approx(1.96 * x.std(ddof=1) / math.sqrt(len(x)), rel=0.15)
    d, dlo, dhi = stats.bootstrap_diff(list(x), list(x + 1.0))
    assert d == pytest.approx(-1.0) and dlo < -1.0 < dhi
    assert all(math.isnan(v) for v in stats.bootstrap_mean([None, float("nan")]))


def test_pooled_amia_figures_equal_the_metrics_of_the_pooled_decisions():
    """Two seeds' result rows pooled through their counts give the metrics of all decisions at once."""
    rng = np.random.default_rng(3)
    rows, all_labels, all_dec = [], [], []
    for n in (60, 90):
        labels = np.r_[np.ones(n, int), np.zeros(n, int)]
        scores = rng.normal(labels * 0.3, 1.0)
        dec = (scores > 0.1).astype(int)
        rows.append(amia_metrics.membership_metrics(labels, scores, dec))
        all_labels.append(labels)
        all_dec.append(dec)
    pooled = figures._pooled_attack(rows)
    labels, dec = np.concatenate(all_labels), np.concatenate(all_dec)
    assert pooled["attack-acc"].value == pytest.approx(amia_metrics.attack_accuracy(labels, dec))
    assert pooled["f1"].value == pytest.approx(amia_metrics.f1_score(labels, dec))
    assert pooled["attack-acc"].lo < pooled["attack-acc"].value < pooled["attack-acc"].hi
    assert pooled["attack-acc"].n == 150


def test_the_recorded_command_names_no_machines_folders(tmp_path):
    from simulations.tables.render import log_invocation, portable, provenance

    root = tmp_path / "project"
    cmd = f"python -m simulations.tables --out {root}/outputs/t --costs-from /tmp/tcost /work/wt/x/outputs/t"
    assert portable(cmd, root) == "python -m simulations.tables --out outputs/t --costs-from …/tmp/tcost …/outputs/t"
    out = tmp_path / "out"
    out.mkdir()
    log_invocation(out, "python -m simulations.tables --costs-from /tmp/tcost", "abc", 1.0, {"ok": 1})
    assert provenance(out)[0] == "Command: `python -m simulations.tables --costs-from …/tmp/tcost`  "
    assert "/tmp/tcost" in (out / "invocations.json").read_text()  # the log keeps the whole path
