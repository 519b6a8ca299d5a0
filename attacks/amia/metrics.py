"""Membership-inference metrics, defined once.

Labels: 1 = member, 0 = non-member. ``scores``: higher means "more likely a member".
``decisions``: the attack's hard 0/1 calls (score at or above its calibrated threshold).

- attack acc (the paper's eq. 11): 2·P[decision = label] − 1, i.e. accuracy rescaled so
  that guessing scores 0 and a perfect attack 1 (on balanced sets it is the membership
  advantage TPR − FPR).
- F1 (the paper's eq. 12): harmonic mean of precision and recall of the member class.
- balanced accuracy: (TPR + TNR) / 2.
- AUC: area under the ROC, i.e. P[score(member) > score(non-member)], ties counting half.
- TPR at a fixed FPR (LiRA's standard): the largest TPR among thresholds whose FPR does
  not exceed the target. With N non-members, FPRs below 1/N cannot be measured: the
  value is then the TPR at zero false positives.
- chance spread: the standard deviation of attack acc (1/√n for n queries) and of AUC
  (√((P+N+1)/(12PN)), Mann-Whitney) when the attack is guessing; a figure within about
  two of them of chance (0 or 0.5) is not evidence of membership leakage.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _check(labels: np.ndarray, other: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    labels, other = np.asarray(labels), np.asarray(other)
    if labels.shape != other.shape or labels.ndim != 1:
        raise ValueError(f"labels {labels.shape} and {what} {other.shape} must be 1-D of equal length")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 (non-member) or 1 (member)")
    return labels.astype(int), other


def attack_accuracy(labels: np.ndarray, decisions: np.ndarray) -> float:
    """The paper's attack acc: 2·P[correct] − 1 (0 = chance, 1 = perfect)."""
    labels, decisions = _check(labels, decisions, "decisions")
    return float(2.0 * np.mean(labels == decisions.astype(int)) - 1.0)


def f1_score(labels: np.ndarray, decisions: np.ndarray) -> float:
    """F1 of the member class (0 when the attack calls nobody a member)."""
    labels, decisions = _check(labels, decisions, "decisions")
    d = decisions.astype(int)
    tp = int(np.sum((d == 1) & (labels == 1)))
    fp = int(np.sum((d == 1) & (labels == 0)))
    fn = int(np.sum((d == 0) & (labels == 1)))
    return 0.0 if tp == 0 else 2.0 * tp / (2.0 * tp + fp + fn)


def balanced_accuracy(labels: np.ndarray, decisions: np.ndarray) -> float:
    """(TPR + TNR) / 2."""
    labels, decisions = _check(labels, decisions, "decisions")
    d = decisions.astype(int)
    return float(0.5 * (np.mean(d[labels == 1] == 1) + np.mean(d[labels == 0] == 0)))


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FPR, TPR and thresholds, one point per distinct score (descending), from (0, 0).

    Point k calls a member every sample with ``score >= thresholds[k]``.
    """
    labels, scores = _check(labels, scores, "scores")
    scores = scores.astype(float)
    pos, neg = int(labels.sum()), int((1 - labels).sum())
    if pos == 0 or neg == 0:
        raise ValueError("the ROC needs both members and non-members")
    order = np.argsort(-scores, kind="stable")
    s, l = scores[order], labels[order]
    last_of_tie = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tps = np.cumsum(l)[last_of_tie]
    fps = np.cumsum(1 - l)[last_of_tie]
    fpr = np.r_[0.0, fps / neg]
    tpr = np.r_[0.0, tps / pos]
    thresholds = np.r_[np.inf, s[last_of_tie]]
    return fpr, tpr, thresholds


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC (trapezoids over tied blocks: ties count half)."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, target_fpr: float) -> float:
    """Largest TPR over thresholds with FPR <= ``target_fpr``."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(tpr[fpr <= target_fpr + 1e-12].max())


def best_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The threshold of highest balanced accuracy (how an attacker calibrates on shadows)."""
    fpr, tpr, thresholds = roc_curve(labels, scores)
    k = int(np.argmax(tpr - fpr)) if len(thresholds) > 1 else 0
    k = max(k, 1)  # never the +inf point: that calls nobody a member
    return float(thresholds[k])


def chance_spread(n_members: int, n_nonmembers: int) -> dict[str, float]:
    """Standard deviations of attack acc and AUC for an attack that guesses (H0)."""
    p, q = n_members, n_nonmembers
    return {"attack-acc-chance-sd": 1.0 / np.sqrt(p + q), "auc-chance-sd": float(np.sqrt((p + q + 1) / (12.0 * p * q)))}


def membership_metrics(labels: np.ndarray, scores: np.ndarray, decisions: np.ndarray) -> dict[str, Any]:
    """Every metric of one attack on one member/non-member set."""
    labels = np.asarray(labels).astype(int)
    n_neg = int((labels == 0).sum())
    return {
        "attack-acc": attack_accuracy(labels, decisions),
        "f1": f1_score(labels, decisions),
        "balanced-acc": balanced_accuracy(labels, decisions),
        "auc": auc(labels, scores),
        "tpr@1%fpr": tpr_at_fpr(labels, scores, 0.01),
        "tpr@0.1%fpr": tpr_at_fpr(labels, scores, 0.001),
        "fpr-resolution": 1.0 / max(n_neg, 1),
        **chance_spread(int(labels.sum()), n_neg),
        "n-members": int(labels.sum()),
        "n-nonmembers": n_neg,
    }
