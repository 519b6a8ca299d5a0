"""The tables' 95% intervals against published values and independent references."""

import math

import numpy as np
import pytest

from attacks.amia import metrics as amia_metrics
from fednas import stats
from simulations.tables import figures


def test_an_adra_cell_counts_captures_as_clusters_and_scores_its_nulls_alike():
    """B = 2: four captures of two samples. The rates' intervals are the cluster ones; a null
    is summarised by the very same code."""
    s = {"success": [True, True, False, False, True, False, False, False],
         "identified": [True, True, False, False, False, False, False, False],
         "identified-dataset": [True, False, False, False, False, False, False, False],
         "mse": [0.01, 0.02, 0.05, 0.06, 0.03, 0.04, 0.07, 0.05], "psnr": [20.0, 17.0, 13.0, 12.2, 15.2, 14.0, 11.5, 13.0],
         "ssim": [0.5] * 8, "label-correct": [True] * 8, "capture": ["0:a", "0:a", "0:b", "0:b", "1:a", "1:a", "1:b", "1:b"]}
    fig = figures.adra({"samples": s, "nulls": {"aux-mean": s}, "captures": 4})
    p, lo, hi, _ = stats.cluster_rate(s["success"], s["capture"])
    assert (fig["success"].value, fig["success"].lo, fig["success"].hi) == (p, lo, hi) and fig["success"].k == 4
    m, lo, hi, n, k = stats.cluster_mean(s["mse"], s["capture"])
    assert (fig["mse"].value, fig["mse"].lo, fig["mse"].hi, fig["mse"].n, fig["mse"].k) == (m, lo, hi, 8, 4)
    assert fig["identified-dataset"].value == 1 / 8
    assert fig["nulls"]["aux-mean"]["success"] == fig["success"]
    # results made before captures were recorded: every sample its own cluster (Wilson)
    old = figures.adra({"samples": {k: v for k, v in s.items() if k not in ("capture", "identified-dataset")}})
    assert (old["success"].lo, old["success"].hi) == stats.wilson_interval(3, 8)
    assert not old["identified-dataset"].ok


def test_the_f1_an_accuracy_allows_is_what_every_balanced_confusion_matrix_gives():
    n = 40
    for correct in (0.3, 0.5, 0.56, 0.78, 0.93):
        k = round(2 * n * correct)
        f1s = [2 * tp / (2 * tp + (n - (k - tp)) + (n - tp)) if tp else 0.0
               for tp in range(0, n + 1) if 0 <= k - tp <= n]
        lo, hi = figures.f1_range(k / (2 * n))
        assert (lo, hi) == pytest.approx((min(f1s), max(f1s)))


def test_the_papers_attack_acc_fits_its_f1_in_one_reading_only():
    mnist = figures.paper_readings(0.56, 0.64)  # read as 2P - 1 it forces F1 >= 0.718
    assert mnist["plain accuracy"]["fits"] and not mnist["2P − 1"]["fits"]
    assert mnist["2P − 1"]["f1-range"][0] == pytest.approx(0.56 / 0.78)
    cifar100 = figures.paper_readings(0.86, 0.92)
    assert cifar100["2P − 1"]["fits"] and not cifar100["plain accuracy"]["fits"]


def test_pooled_amia_figures_equal_the_metrics_of_the_pooled_decisions():
    """Two seeds' result rows (members and non-members unbalanced) pooled through their counts
    give the metrics of all decisions at once, with the references beside F1."""
    rng = np.random.default_rng(3)
    rows, all_labels, all_dec = [], [], []
    for n_pos, n_neg in ((60, 80), (90, 70)):
        labels = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
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
    assert pooled["attack-acc"].n == 150 and pooled["n-nonmembers"] == 150
    assert pooled["all-member-f1"] == pytest.approx(amia_metrics.f1_score(labels, np.ones_like(labels)))
    assert pooled["chance"] == stats.chance_range(150, 150)


def test_the_recorded_command_names_no_machines_folders(tmp_path):
    from simulations.tables.render import log_invocation, portable, provenance

    root = tmp_path / "project"
    cmd = f"python -m simulations.tables --out {root}/outputs/t --costs-from /tmp/tcost /work/wt/x/outputs/t"
    assert portable(cmd, root) == "python -m simulations.tables --out outputs/t --costs-from …/tcost …/outputs/t"
    out = tmp_path / "out"
    out.mkdir()
    log_invocation(out, "python -m simulations.tables --costs-from /tmp/tcost", "abc", 1.0, {"ok": 1})
    assert provenance(out)[0] == "Command: `python -m simulations.tables --costs-from …/tcost`  "
    assert "/tmp/tcost" in (out / "invocations.json").read_text()  # the log keeps the whole path
    # prose, fractions and URLs are not paths
    text = "D^α / D^θ, 1/3, TP/FP, https://example.org/a/b, s/capture"
    assert portable(text, root) == text
