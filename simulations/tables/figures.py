"""Each row's figures (value and 95% interval) from its cells' result files.

A :class:`Fig` is a value with its interval, its sample count and its cluster count. ADRA
cells hold per-sample outcomes with the capture each sample came from (pooled over the
scale's seeds already) and the same outcomes for the nulls; AMIA cells hold one
``metrics.json`` per seed, pooled here through their counts (P[correct], TP/FP, TPR) and
averaged for AUC. The statistics themselves are :mod:`fednas.stats`; which one each figure
uses is :data:`INTERVALS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from fednas import stats
from simulations.tables.engines import pick_result

INTERVALS = """- ADRA rates (success, identified, label accuracy): the capture is the unit. At B = 1 a
  capture holds one sample and the interval is Wilson's; at B > 1 its B samples are not
  independent, and the interval is Wilson's at the effective sample size of the ratio
  estimator with the capture as cluster (Korn & Graubard), never more than the samples
  (one capture alone: one observation);
- ADRA means (MSE, PSNR, SSIM): Student's t with the captures' cluster-robust variance
  (k − 1 degrees of freedom for k captures: the plain t interval at B = 1);
- a difference of two rates (a defense's effect, an accuracy cost): Newcombe's hybrid
  score interval (method 10), built from the two rates' intervals above; of two means:
  Welch's t (Satterthwaite's degrees of freedom);
- AMIA rates (attack P[correct], TPR, the target's accuracies): Wilson; the paper's attack
  acc 2·P[correct] − 1: Wilson on P[correct], mapped through 2p − 1;
- AUC: Hanley & McNeil's standard error (normal approximation, clipped to [0, 1]);
- F1 from the confusion counts: a parametric bootstrap of the members' and non-members'
  decisions (2,000 draws, seeded);
- AMIA references: the F1 of calling every query a member, 2m/(2m + n) for m members and
  n non-members (2/3 on balanced sets), and a guessing attack's 95% range of attack acc
  (exact, binomial) and of F1 (20,000 simulated guessers, seeded), on the row's own set
  sizes: a figure inside that range is not evidence of membership leakage."""


@dataclass(frozen=True)
class Fig:
    value: float
    lo: float = math.nan
    hi: float = math.nan
    n: int = 0
    k: int = 0  # clusters (captures) behind n samples; 0: not clustered

    @classmethod
    def none(cls) -> Fig:
        return cls(math.nan)

    @property
    def ok(self) -> bool:
        return math.isfinite(self.value)


def rate(k: float, n: int) -> Fig:
    lo, hi = stats.wilson_interval(k, n)
    return Fig(k / n if n else math.nan, lo, hi, n)


def cluster_rate(outcomes: list[Any], clusters: list[Any]) -> Fig:
    p, lo, hi, _ = stats.cluster_rate(outcomes, clusters)
    n = sum(v is not None for v in outcomes)
    return Fig(p, lo, hi, n, len({c for v, c in zip(outcomes, clusters) if v is not None}))


def mean(values: list[Any], clusters: list[Any] | None = None) -> Fig:
    m, lo, hi, n, k = stats.cluster_mean(values, clusters)
    return Fig(m, lo, hi, n, k)


# ---------------------------------------------------------------------------- ADRA

RATES = ("success", "identified", "identified-dataset")
NULLS = {"aux-random": "null: a random aux image of the sample's class",
         "aux-mean": "null: the aux mean image of the sample's class"}


def adra_samples(s: dict[str, list[Any]]) -> dict[str, Any]:
    """Rates and means of one set of per-sample outcomes (an attack's or a null's)."""
    n = len(s["success"])
    clusters = s.get("capture") or list(range(n))  # results made before captures were recorded: unclustered
    ok = [i for i, v in enumerate(s["mse"]) if v is not None]
    out: dict[str, Any] = {"n": n, "captures-scored": len(set(clusters))}
    for k in RATES:
        out[k] = cluster_rate([bool(v) for v in s.get(k, [None] * n)] if k in s else [None] * n, clusters)
    out["label-acc"] = cluster_rate([bool(s["label-correct"][i]) for i in ok], [clusters[i] for i in ok])
    for k in ("mse", "psnr", "ssim"):
        out[k] = mean(s[k], clusters)
    out["samples"] = {**s, "capture": clusters}
    return out


def adra(result: dict[str, Any]) -> dict[str, Any]:
    """Success, identified (D^α and whole dataset), label accuracy, MSE, PSNR, SSIM of one
    cell, each counting captures as clusters, and the same figures for each null."""
    out = adra_samples(result["samples"])
    secs = [v for v in result.get("seconds", []) if v is not None]
    out.update({"captures": result.get("captures"), "failed-rows": result.get("failed-rows", 0),
                "seconds-per-capture": float(np.mean(secs)) if secs else math.nan,
                "theta-source": ", ".join(result.get("theta-source", [])),
                "nulls": {k: adra_samples(v) for k, v in (result.get("nulls") or {}).items()}})
    return out


def adra_delta(defended: dict[str, Any], base: dict[str, Any]) -> dict[str, Fig]:
    """Defended minus undefended: the rates (Newcombe, from their cluster intervals), MSE
    and PSNR (Welch, cluster-robust)."""
    out = {}
    for k in RATES:
        d, b = defended[k], base[k]
        lo, hi = stats.newcombe_from(d.value, (d.lo, d.hi), b.value, (b.lo, b.hi))
        out[k] = Fig(d.value - b.value, lo, hi, d.n, d.k)
    ds, bs = defended["samples"], base["samples"]
    for k in ("mse", "psnr"):
        m, lo, hi = stats.welch_diff(ds[k], bs[k], ds["capture"], bs["capture"])
        out[k] = Fig(m, lo, hi, defended[k].n, defended[k].k)
    return out


# ---------------------------------------------------------------------------- AMIA


def _pooled_attack(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Attack acc, F1, AUC, TPRs of one attack pooled over seeds (each row: one AMIA run),
    with the references a reader needs beside F1: the all-member F1 and the chance range."""
    m = sum(int(r["n-members"]) for r in rows)
    nn = sum(int(r.get("n-nonmembers", r["n-members"])) for r in rows)
    correct = sum((float(r["attack-acc"]) + 1) / 2 * (int(r["n-members"]) + int(r.get("n-nonmembers", r["n-members"])))
                  for r in rows)
    p = rate(correct, m + nn)
    counts = [stats.confusion(float(r["attack-acc"]), float(r["f1"]), int(r["n-members"]),
                              int(r.get("n-nonmembers", r["n-members"]))) for r in rows]
    tp, fp = sum(c[0] for c in counts), sum(c[1] for c in counts)
    f1 = float(stats.f1_of(tp, fp, m))
    auc = float(np.mean([float(r["auc"]) for r in rows]))
    out = {"attack-acc": Fig(2 * p.value - 1, 2 * p.lo - 1, 2 * p.hi - 1, m),
           "f1": Fig(f1, *stats.f1_interval(tp, fp, m, nn), m),
           "auc": Fig(auc, *stats.auc_interval(auc, m, nn), m), "tp-fp": (tp, fp, m, nn),
           "n-nonmembers": nn, "all-member-f1": stats.all_member_f1(m, nn), "chance": stats.chance_range(m, nn)}
    for k in ("tpr@1%fpr", "tpr@0.1%fpr"):
        out[k] = rate(sum(float(r[k]) * int(r["n-members"]) for r in rows), m)
    out["fpr-resolution"] = max(float(r.get("fpr-resolution", 0)) for r in rows)
    return out


def f1_range(correct: float) -> tuple[float, float]:
    """The F1 values an attack with this share of correct calls can reach on balanced sets:
    with n members and n non-members, TP + TN = 2n·P and F1 = TP/(TP + n(1 − P)), TP from
    max(0, 2P − 1)·n to min(1, 2P)·n."""
    lo_tp, hi_tp = max(0.0, 2 * correct - 1), min(1.0, 2 * correct)
    f = lambda t: t / (t + 1 - correct) if t > 0 else 0.0  # noqa: E731
    return f(lo_tp), f(hi_tp)


def paper_readings(acc: float, f1: float, rounding: float = 0.005) -> dict[str, dict[str, Any]]:
    """The paper's attack acc read as plain accuracy and as 2P − 1 (its eq. 11): per reading,
    P[correct], the F1 range that P allows on balanced sets, and whether the paper's F1 fits
    (both figures as printed, each ± ``rounding``)."""
    out = {}
    for name, to_p in (("plain accuracy", lambda a: a), ("2P − 1", lambda a: (a + 1) / 2)):
        lo = f1_range(to_p(acc - rounding))[0]
        hi = f1_range(to_p(acc + rounding))[1]
        out[name] = {"P": to_p(acc), "f1-range": f1_range(to_p(acc)),
                     "fits": lo <= f1 + rounding and f1 - rounding <= hi}
    return out


def amia(metrics: list[dict[str, Any]], shadow: str, attack: str, fit_threshold: float) -> dict[str, Any]:
    """The figures of one AMIA row: the primary (shadow, attack) on D^α beside the paper's,
    the best AUC of any (shadow, attack), the D^θ baseline, and the target's accuracies."""
    primary = [pick_result(m, "alpha", shadow, attack) for m in metrics]
    if any(r is None for r in primary):
        raise KeyError(f"no result for members alpha, shadow {shadow}, attack {attack}")
    out: dict[str, Any] = {"primary": _pooled_attack(primary), "shadow": shadow, "attack": attack}
    theta = [pick_result(m, "theta", shadow, attack) for m in metrics]
    out["theta"] = _pooled_attack(theta) if all(theta) else None
    combos = {(r["shadow"], r["attack"]) for r in metrics[0].get("results", []) if r["members"] == "alpha"}
    best = max(((s, a, _pooled_attack([pick_result(m, "alpha", s, a) for m in metrics])["auc"]) for s, a in combos),
               key=lambda t: t[2].value, default=None)
    out["best"] = best
    tgt = [m["target"] for m in metrics]
    avail = [m.get("available", {}) for m in metrics]
    out["train-acc-alpha"] = rate(sum(t["train-acc-alpha"] * a.get("alpha", 0) for t, a in zip(tgt, avail)),
                                  sum(a.get("alpha", 0) for a in avail))
    out["train-acc-theta"] = rate(sum(t["train-acc-theta"] * a.get("theta", 0) for t, a in zip(tgt, avail)),
                                  sum(a.get("theta", 0) for a in avail))
    out["test-acc"] = rate(sum(t["test-acc"] * a.get("holdout", 0) for t, a in zip(tgt, avail)),
                           sum(a.get("holdout", 0) for a in avail))
    out["fitted"] = out["train-acc-theta"].value >= fit_threshold
    out["target-kind"] = tgt[0].get("kind")
    out["seconds"] = float(np.mean([m.get("seconds", math.nan) for m in metrics]))
    return out


def amia_delta(defended: dict[str, Any], base: dict[str, Any]) -> dict[str, Fig]:
    """Defended minus undefended attack acc (Newcombe on P[correct], x2), F1 (bootstrap),
    AUC, and the served model's test accuracy (Newcombe)."""
    d, b = defended["primary"], base["primary"]
    p_d, p_b = (d["attack-acc"].value + 1) / 2, (b["attack-acc"].value + 1) / 2
    nd, nb = d["attack-acc"].n + d["n-nonmembers"], b["attack-acc"].n + b["n-nonmembers"]
    lo, hi = stats.newcombe(p_d * nd, nd, p_b * nb, nb)
    out = {"attack-acc": Fig(d["attack-acc"].value - b["attack-acc"].value, 2 * lo, 2 * hi, d["attack-acc"].n)}
    out["f1"] = Fig(d["f1"].value - b["f1"].value, *stats.f1_diff_interval(d["tp-fp"], b["tp-fp"]), d["f1"].n)
    out["auc"] = Fig(d["auc"].value - b["auc"].value)
    out["test-acc"] = accuracy_delta(defended["test-acc"], base["test-acc"])
    return out


def accuracy_delta(defended: Fig, base: Fig) -> Fig:
    """Change in a rate (an accuracy cost is its negative), with Newcombe's interval."""
    if not (defended.ok and base.ok):
        return Fig.none()
    lo, hi = stats.newcombe(defended.value * defended.n, defended.n, base.value * base.n, base.n)
    return Fig(defended.value - base.value, lo, hi, defended.n)


def utility(results: list[dict[str, Any]]) -> Fig:
    """Central test accuracy of utility runs, pooled over seeds."""
    accs = [(r["central-acc"], r["n-test"]) for r in results if r.get("central-acc") is not None]
    return rate(sum(a * k for a, k in accs), sum(k for _, k in accs))


def _eps(value: Any) -> float | None:
    return math.inf if value == "inf" else (None if value is None else float(value))


def dp(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The ε runs reached (their ``dp`` records, pooled over seeds by the largest): per
    mechanism with what it covers, and for the whole reply (None: no DP)."""
    mechanisms: dict[str, dict[str, Any]] = {}
    replies = []
    for r in results:
        d = r.get("dp") or {}
        if d.get("reply") is not None:
            replies.append(_eps(d["reply"]))
        for name, m in (d.get("mechanisms") or {}).items():
            entry = mechanisms.setdefault(name, {"epsilon": 0.0, "covers": m.get("covers", "")})
            entry["epsilon"] = max(entry["epsilon"], _eps(m["epsilon"]))
    return {"mechanisms": mechanisms, "reply": max(replies) if replies else None}
