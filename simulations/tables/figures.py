"""Each row's figures (value and 95% interval) from its cells' result files.

A :class:`Fig` is a value with its interval and sample count. ADRA cells hold per-sample
outcomes (pooled over the scale's seeds already); AMIA cells hold one ``metrics.json``
per seed, pooled here through their counts (P[correct], TP/FP, TPR) and averaged for AUC.
Definitions of the intervals: :mod:`simulations.tables.stats`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from simulations.tables import stats
from simulations.tables.engines import pick_result


@dataclass(frozen=True)
class Fig:
    value: float
    lo: float = math.nan
    hi: float = math.nan
    n: int = 0

    @classmethod
    def none(cls) -> Fig:
        return cls(math.nan)

    @property
    def ok(self) -> bool:
        return math.isfinite(self.value)


def rate(k: float, n: int) -> Fig:
    lo, hi = stats.wilson(k, n)
    return Fig(k / n if n else math.nan, lo, hi, n)


def mean(values: list[Any]) -> Fig:
    m, lo, hi = stats.bootstrap_mean(values)
    return Fig(m, lo, hi, int(np.isfinite(np.array([v for v in values if v is not None], float)).sum()))


# ---------------------------------------------------------------------------- ADRA


def adra(result: dict[str, Any]) -> dict[str, Any]:
    """Success, identified, label accuracy (Wilson), MSE, PSNR, SSIM (bootstrap) of one cell."""
    s = result["samples"]
    n = len(s["success"])
    ok = [i for i, v in enumerate(s["mse"]) if v is not None]
    secs = [v for v in result.get("seconds", []) if v is not None]
    return {
        "n": n,
        "success": rate(sum(bool(v) for v in s["success"]), n),
        "identified": rate(sum(bool(v) for v in s["identified"]), n),
        "label-acc": rate(sum(bool(s["label-correct"][i]) for i in ok), len(ok)),
        "mse": mean(s["mse"]), "psnr": mean(s["psnr"]), "ssim": mean(s["ssim"]),
        "captures": result.get("captures"), "failed-rows": result.get("failed-rows", 0),
        "seconds-per-capture": float(np.mean(secs)) if secs else math.nan,
        "theta-source": ", ".join(result.get("theta-source", [])),
        "samples": s,
    }


def adra_delta(defended: dict[str, Any], base: dict[str, Any]) -> dict[str, Fig]:
    """Defended minus undefended: success, identified (Newcombe), MSE, PSNR (bootstrap)."""
    out = {}
    for k in ("success", "identified"):
        d, b = defended[k], base[k]
        lo, hi = stats.newcombe(d.value * d.n, d.n, b.value * b.n, b.n)
        out[k] = Fig(d.value - b.value, lo, hi, d.n)
    for k in ("mse", "psnr"):
        m, lo, hi = stats.bootstrap_diff(defended["samples"][k], base["samples"][k])
        out[k] = Fig(m, lo, hi, defended[k].n)
    return out


# ---------------------------------------------------------------------------- AMIA


def _pooled_attack(rows: list[dict[str, Any]]) -> dict[str, Fig]:
    """Attack acc, F1, AUC, TPRs of one attack pooled over seeds (each row: one AMIA run)."""
    n = sum(int(r["n-members"]) for r in rows)
    correct = sum((float(r["attack-acc"]) + 1) / 2 * 2 * int(r["n-members"]) for r in rows)
    p = rate(correct, 2 * n)
    counts = [stats.confusion(float(r["attack-acc"]), float(r["f1"]), int(r["n-members"])) for r in rows]
    tp, fp = sum(c[0] for c in counts), sum(c[1] for c in counts)
    f1 = 2 * tp / (2 * tp + fp + (n - tp)) if tp else 0.0
    auc = float(np.mean([float(r["auc"]) for r in rows]))
    out = {"attack-acc": Fig(2 * p.value - 1, 2 * p.lo - 1, 2 * p.hi - 1, n),
           "f1": Fig(f1, *stats.f1_interval(tp, fp, n, n), n),
           "auc": Fig(auc, *stats.auc_interval(auc, n, n), n), "tp-fp": (tp, fp, n)}
    for k in ("tpr@1%fpr", "tpr@0.1%fpr"):
        out[k] = rate(sum(float(r[k]) * int(r["n-members"]) for r in rows), n)
    out["fpr-resolution"] = max(float(r.get("fpr-resolution", 0)) for r in rows)
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
    lo, hi = stats.newcombe(p_d * 2 * d["attack-acc"].n, 2 * d["attack-acc"].n, p_b * 2 * b["attack-acc"].n,
                            2 * b["attack-acc"].n)
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
