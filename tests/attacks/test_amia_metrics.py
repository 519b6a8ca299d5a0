"""AMIA metrics on hand-computed cases, and against scikit-learn as a reference."""

import numpy as np
import pytest
from sklearn import metrics as skm

from attacks.amia.metrics import (attack_accuracy, auc, balanced_accuracy, best_threshold, chance_spread, f1_score,
                                  membership_metrics, roc_curve, tpr_at_fpr)

LABELS = np.array([1, 1, 1, 1, 0, 0, 0, 0])
DECISIONS = np.array([1, 1, 1, 0, 1, 0, 0, 0])  # TP 3, FN 1, FP 1, TN 3


def test_attack_accuracy_is_twice_accuracy_minus_one():
    assert attack_accuracy(LABELS, DECISIONS) == pytest.approx(2 * 6 / 8 - 1)  # 0.5
    assert attack_accuracy(LABELS, LABELS) == 1.0
    assert attack_accuracy(LABELS, 1 - LABELS) == -1.0
    assert attack_accuracy(LABELS, np.ones(8)) == 0.0  # calling everyone a member on a balanced set


def test_f1_and_balanced_accuracy_by_hand():
    # precision 3/4, recall 3/4 -> F1 3/4; TPR 3/4, TNR 3/4
    assert f1_score(LABELS, DECISIONS) == pytest.approx(0.75)
    assert balanced_accuracy(LABELS, DECISIONS) == pytest.approx(0.75)
    assert f1_score(LABELS, np.zeros(8)) == 0.0
    assert f1_score(LABELS, np.ones(8)) == pytest.approx(2 * 0.5 * 1 / 1.5)  # precision 1/2, recall 1


def test_auc_by_hand_with_a_tie():
    # members 0.9, 0.6; non-members 0.6, 0.1: pairs (0.9>0.6) (0.9>0.1) (0.6=0.6 -> 1/2) (0.6>0.1) -> 3.5/4
    labels, scores = np.array([1, 1, 0, 0]), np.array([0.9, 0.6, 0.6, 0.1])
    assert auc(labels, scores) == pytest.approx(3.5 / 4)
    assert auc(labels, -scores) == pytest.approx(0.5 / 4)


def test_tpr_at_fpr_by_hand():
    # 4 members; 10 non-members, one above every member and one at 0.5
    labels = np.r_[np.ones(4), np.zeros(10)].astype(int)
    scores = np.r_[[0.8, 0.7, 0.3, 0.2], [0.9, 0.5], np.linspace(0.0, 0.1, 8)]
    assert tpr_at_fpr(labels, scores, 0.0) == 0.0  # the first false positive comes before any member
    assert tpr_at_fpr(labels, scores, 0.01) == 0.0  # below 1/10 only zero false positives can be had
    assert tpr_at_fpr(labels, scores, 0.1) == pytest.approx(0.5)  # one FP (0.9) admits 0.8 and 0.7
    assert tpr_at_fpr(labels, scores, 0.15) == pytest.approx(0.5)
    assert tpr_at_fpr(labels, scores, 0.2) == 1.0  # the second FP (0.5) admits 0.3 and 0.2


def test_roc_and_auc_agree_with_scikit_learn_on_random_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        labels = rng.integers(0, 2, 60)
        labels[:2] = [0, 1]
        scores = rng.integers(0, 8, 60) / 7.0  # many ties
        fpr, tpr, thr = roc_curve(labels, scores)
        sk_fpr, sk_tpr, _ = skm.roc_curve(labels, scores, drop_intermediate=False)
        np.testing.assert_allclose(fpr, sk_fpr)
        np.testing.assert_allclose(tpr, sk_tpr)
        assert auc(labels, scores) == pytest.approx(skm.roc_auc_score(labels, scores))
        assert f1_score(labels, scores > 0.5) == pytest.approx(skm.f1_score(labels, scores > 0.5))
        assert balanced_accuracy(labels, scores > 0.5) == pytest.approx(skm.balanced_accuracy_score(labels, scores > 0.5))


def test_best_threshold_separates_separable_scores():
    labels = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8])
    t = best_threshold(labels, scores)
    assert attack_accuracy(labels, scores >= t) == 1.0


def test_membership_metrics_names_the_fpr_resolution_and_rejects_bad_labels():
    m = membership_metrics(LABELS, DECISIONS.astype(float), DECISIONS)
    assert m["fpr-resolution"] == pytest.approx(1 / 4) and m["n-members"] == 4
    with pytest.raises(ValueError, match="0 \\(non-member\\) or 1"):
        attack_accuracy(np.array([0, 2]), np.array([0, 1]))
    with pytest.raises(ValueError, match="both members and non-members"):
        auc(np.ones(3, int), np.arange(3.0))


def test_chance_spread_matches_guessing():
    spread = chance_spread(100, 100)
    assert spread["attack-acc-chance-sd"] == pytest.approx(1 / np.sqrt(200))
    assert spread["auc-chance-sd"] == pytest.approx(np.sqrt(201 / 120000))
    rng = np.random.default_rng(1)
    labels = np.r_[np.ones(100, int), np.zeros(100, int)]
    guesses = rng.random((600, 200))
    aucs = [auc(labels, g) for g in guesses]
    accs = [attack_accuracy(labels, g > 0.5) for g in guesses]
    assert np.std(aucs) == pytest.approx(spread["auc-chance-sd"], rel=0.15)
    assert np.std(accs) == pytest.approx(spread["attack-acc-chance-sd"], rel=0.15)
