"""``tables.md`` and one CSV per table: the paper's value beside ours, cell by cell.

Every row says what it is: our figure with n and its 95% interval, or why there is none
(not runnable here, not run yet, or failed with its error). Never a blank.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fednas.config import toml_value
from fednas.rundir import atomic_write_csv, atomic_write_json, atomic_write_text, portable_paths
from simulations.tables import figures as F
from simulations.tables import fingerprint, plots
from simulations.tables.plan import Plan, Row
from simulations.tables.runner import current, human

PROJECT = fingerprint.PROJECT  # the checkout: portable() shortens paths inside it

TITLES = {
    1: "Table 1: ADRA success rate and MSE by activation and P (B = 1)",
    2: "Table 2: ADRA success rate and MSE by batch size B and P (elu)",
    3: "Table 3: AMIA attack accuracy and F1 by P (DARTS)",
    4: "Table 4: AMIA by NAS paradigm",
    5: "Table 5: AMIA when a share η of the attacker's data follows the target's distribution",
    6: "Table 6: defenses against both attacks, their accuracy cost and the ε each reaches",
}
PENDING = "not run yet: rerun the same command to compute it"


# ---------------------------------------------------------------------------- formatting


def pct(f: F.Fig, digits: int = 1) -> str:
    if not f.ok:
        return "–"
    ci = f" [{100 * f.lo:.{digits}f}, {100 * f.hi:.{digits}f}]" if math.isfinite(f.lo) else ""
    return f"{100 * f.value:.{digits}f}%{ci}"


def num(f: F.Fig | float | None, digits: int = 3, signed: bool = False) -> str:
    if f is None:
        return "–"
    if not isinstance(f, F.Fig):
        f = F.Fig(float(f))
    if not f.ok:
        return "–"
    s = "+" if signed else ""
    ci = f" [{f.lo:{s}.{digits}f}, {f.hi:{s}.{digits}f}]" if math.isfinite(f.lo) else ""
    return f"{f.value:{s}.{digits}f}{ci}"


def paper_num(v: float | None, digits: int = 2, signed: bool = False) -> str:
    if v is None:
        return "– (not in the paper)"
    if isinstance(v, float) and math.isnan(v):
        return "–"
    return f"{v:{'+' if signed else ''}.{digits}f}"


def eps_text(dp: dict[str, Any]) -> str:
    """Each mechanism's ε and what it covers, and the whole reply's when that differs."""
    def fmt(e: float) -> str:
        return "∞" if not math.isfinite(e) else f"{e:.3g}"

    if not dp["mechanisms"]:
        return "∞ (no DP)"
    parts = [f"{name} {fmt(m['epsilon'])}" + (f" ({m['covers']})" if m["covers"] else "")
             for name, m in dp["mechanisms"].items()]
    mech = max(m["epsilon"] for m in dp["mechanisms"].values())
    if dp["reply"] is not None and dp["reply"] != mech:
        parts.append(f"whole reply {fmt(dp['reply'])}")
    return "; ".join(parts)


def _fields(prefix: str, f: F.Fig | None) -> dict[str, Any]:
    f = f or F.Fig.none()
    return {prefix: f.value, f"{prefix}-lo": f.lo, f"{prefix}-hi": f.hi}


# ---------------------------------------------------------------------------- evaluation


class Evaluator:
    """Reads the result files behind each row and computes its figures (or says why not)."""

    def __init__(self, plan: Plan, out: Path, engine: dict[str, Any] | None = None) -> None:
        self.plan, self.out = plan, out
        self.m = plan.scale.amia
        self.engine = engine or fingerprint.engine()

    def provenance(self, row: Row) -> tuple[str, bool | None]:
        """The commits that computed the row's cells ("unknown" for results older than
        fingerprints), and whether every cell was computed by the current engine (None:
        nothing computed)."""
        recs = [current(self.out, self.plan.tasks[k]) for keys in row.cells.values() for k in keys]
        recs = [r for r in recs if r is not None and r.get("status") == "ok"]
        if not recs:
            return "", None
        commits = sorted({(r.get("engine") or {}).get("commit", "unknown") for r in recs})
        return ", ".join(commits), all(fingerprint.matches(r.get("engine"), self.engine) for r in recs)

    def results(self, row: Row) -> tuple[dict[str, list[dict[str, Any]]] | None, str]:
        if row.reason:
            return None, row.reason
        got: dict[str, list[dict[str, Any]]] = {}
        for role, keys in row.cells.items():
            recs = [current(self.out, self.plan.tasks[k]) for k in keys]
            if any(r is None for r in recs):
                return None, PENDING
            bad = next((r for r in recs if r.get("status") != "ok"), None)
            if bad is not None:
                return None, f"failed: {bad.get('error', '?')}"
            got[role] = [r["result"] for r in recs]
        return got, ""

    def adra(self, res: list[dict[str, Any]]) -> dict[str, Any]:
        return F.adra(res[0])

    def amia(self, res: list[dict[str, Any]], shadow: str = "") -> dict[str, Any]:
        return F.amia(res, shadow or self.m.primary_shadow, self.m.primary_attack, self.m.fit_threshold)

    def shadow(self, row: Row) -> str:
        """The shadow kind whose figures a row shows (its cells' ``shadow``; the primary kind without cells)."""
        keys = row.cells.get("ours")
        return self.plan.tasks[keys[0]].spec["shadow"] if keys else self.m.primary_shadow


def _guard(fn: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], str]:
    try:
        return fn(), ""
    except (KeyError, ValueError, TypeError, ZeroDivisionError) as err:
        return {}, f"failed to summarise: {type(err).__name__}: {err}"


# ---------------------------------------------------------------------------- tables


def _adra_fields(fig: dict[str, Any]) -> dict[str, Any]:
    return {**_fields("success", fig["success"]), **_fields("identified", fig["identified"]),
            **_fields("identified-dataset", fig["identified-dataset"]), **_fields("label-acc", fig["label-acc"]),
            **_fields("mse", fig["mse"]), **_fields("psnr", fig["psnr"]), **_fields("ssim", fig["ssim"]),
            "n": fig["n"], "captures-scored": fig["captures-scored"]}


def _adra_md(fig: dict[str, Any]) -> list[str]:
    """success, identified (D^α), identified (dataset), MSE, PSNR, n (captures)."""
    return [pct(fig["success"]), pct(fig["identified"]), pct(fig["identified-dataset"]), num(fig["mse"]),
            num(fig["psnr"], 1), f"{fig['n']} ({fig['captures-scored']})"]


def adra_row(ev: Evaluator, row: Row) -> dict[str, Any]:
    got, note = ev.results(row)
    paper = row.paper or {}
    out = {**row.labels, "paper-sr-%": paper.get("sr"), "paper-mse": paper.get("mse")}
    fig, note = _guard(lambda: ev.adra(got["ours"])) if got else ({}, note)
    if fig:
        out.update({**_adra_fields(fig), "captures": fig["captures"], "failed-rows": fig["failed-rows"],
                    "seconds-per-capture": fig["seconds-per-capture"], "theta-source": fig["theta-source"]})
        if fig["failed-rows"]:
            note = f"{fig['failed-rows']} of {fig['n']} samples not rebuilt (count as failures)"
    out["note"] = note
    out["_labels"] = list(row.labels)
    out["_fig"] = fig
    out["_md"] = [paper_num(paper.get("sr"), 1) if row.paper else paper_num(None), paper_num(paper.get("mse")),
                  *(_adra_md(fig) if fig else ["–"] * 6),
                  human(fig["seconds-per-capture"]) if fig else "–", note]
    return out


def null_rows(labels: dict[str, Any], fig: dict[str, Any]) -> list[dict[str, Any]]:
    """The nulls of one group of ADRA rows (the same captures): each scored like the attack."""
    rows = []
    for kind, what in F.NULLS.items():
        null = fig.get("nulls", {}).get(kind)
        if not null:
            continue
        out = {**labels, "θ": "–", "mode": what, "paper-sr-%": None, "paper-mse": None, **_adra_fields(null),
               "null": kind, "note": "no attack: what the attacker's aux pool and the sample's class give alone",
               "_labels": [*labels, "θ", "mode"], "_null": True}
        out["_md"] = ["–", "–", *_adra_md(null), "–", out["note"]]
        rows.append(out)
    return rows


ADRA_HEAD = ["paper SR %", "paper MSE", "success [95% CI]", "identified in D^α [95% CI]",
             "identified in the dataset [95% CI]", "MSE [95% CI]", "PSNR dB [95% CI]", "n (captures)", "s/capture",
             "note"]


def _improved_gain(ev: Evaluator, res: list[dict[str, Any]], searched: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The improved-AMIA row's gain, searched minus primary shadows on the same results: its
    fields (none where it cannot be computed) and its note."""
    gain, err = _guard(lambda: F.amia_delta(searched, ev.amia(res)))
    if not gain:
        return {}, err
    fields = {**_fields("dattack-acc", gain["attack-acc"]), **_fields("df1", gain["f1"])}
    return fields, (f"searched minus {ev.m.primary_shadow} shadows on the same target and members: attack acc "
                    f"{num(gain['attack-acc'], signed=True)}, F1 {num(gain['f1'], signed=True)} (Newcombe, unpaired: "
                    "wider than a paired interval); the paper's gain is averaged over its three datasets")


def amia_row(ev: Evaluator, row: Row) -> dict[str, Any]:
    got, note = ev.results(row)
    paper = row.paper or {}
    out = {**row.labels, "paper-acc": paper.get("acc"), "paper-f1": paper.get("f1")}
    shadow = ev.shadow(row)
    fig, note = _guard(lambda: ev.amia(got["ours"], shadow)) if got else ({}, note)
    improved = row.labels.get("shadow") == "searched"
    gain_note = ""
    if improved:
        out.update({"paper-dacc": paper.get("dacc"), "paper-df1": paper.get("df1")})
        if fig:
            gain, gain_note = _improved_gain(ev, got["ours"], fig)
            out.update(gain)
    md = ["–"] * 12
    if fig:
        p, th = fig["primary"], fig["theta"]
        chance = p["chance"]
        best = fig["best"]
        out.update({**_fields("attack-acc", p["attack-acc"]), **_fields("f1", p["f1"]), **_fields("auc", p["auc"]),
                    **_fields("tpr@1%fpr", p["tpr@1%fpr"]), **_fields("tpr@0.1%fpr", p["tpr@0.1%fpr"]),
                    "fpr-resolution": p["fpr-resolution"], "best-auc": best[2].value if best else None,
                    "best-auc-by": f"{best[0]}/{best[1]}" if best else "", "theta-auc": th["auc"].value if th else None,
                    **_fields("train-acc-alpha", fig["train-acc-alpha"]), **_fields("train-acc-theta", fig["train-acc-theta"]),
                    **_fields("test-acc", fig["test-acc"]), "fitted": fig["fitted"], "n": p["attack-acc"].n,
                    "n-nonmembers": p["n-nonmembers"], "all-member-f1": p["all-member-f1"],
                    "chance-acc-lo": chance["attack-acc"][0], "chance-acc-hi": chance["attack-acc"][1],
                    "chance-f1-lo": chance["f1"][0], "chance-f1-hi": chance["f1"][1],
                    "target": fig["target-kind"], "shadow": fig["shadow"], "attack": fig["attack"]})
        if not fig["fitted"]:
            note = (f"target has not fitted its data (train acc on D^θ {fig['train-acc-theta'].value:.2f} < "
                    f"{ev.m.fit_threshold}): says little about membership")
        md = [num(p["attack-acc"]), num(p["f1"]), f"{p['all-member-f1']:.3f}",
              f"acc [{chance['attack-acc'][0]:.3f}, {chance['attack-acc'][1]:.3f}]; "
              f"F1 [{chance['f1'][0]:.3f}, {chance['f1'][1]:.3f}]", num(p["auc"]), _tpr(p, "tpr@1%fpr", 0.01),
              _tpr(p, "tpr@0.1%fpr", 0.001),
              f"{best[2].value:.3f} ({best[0]}/{best[1]})" if best else "–", num(th["auc"]) if th else "–",
              f"{fig['train-acc-alpha'].value:.3f} / {fig['train-acc-theta'].value:.3f}",
              pct(fig["test-acc"]), f"{p['attack-acc'].n} / {p['n-nonmembers']}"]
    out["note"] = note = "; ".join(n for n in (gain_note, note) if n)
    out["_labels"] = list(row.labels)
    if improved and row.paper:
        first = [f"Δ {paper_num(paper['dacc'], signed=True)}", f"Δ {paper_num(paper['df1'], signed=True)}"]
    else:
        first = [paper_num(paper.get("acc")) if row.paper else paper_num(None), paper_num(paper.get("f1"))]
    out["_md"] = [*first, *md, note]
    return out


AMIA_HEAD = ["paper acc", "paper F1", "attack acc [95% CI]", "F1 [95% CI]", "F1 of calling all members",
             "guessing attack, 95% range", "AUC [95% CI]", "TPR@1%FPR", "TPR@0.1%FPR", "best AUC (shadow/attack)",
             "D^θ AUC", "target train acc D^α / D^θ", "target test acc", "n members / non-members", "note"]


def defense_adra_row(ev: Evaluator, row: Row) -> dict[str, Any]:
    got, note = ev.results(row)
    paper = row.paper or {}
    out = {**row.labels, "paper-dsr-pp": paper.get("dsr"), "paper-dmse": paper.get("dmse"),
           "paper-accuracy-cost": paper.get("cost")}
    md = ["–"] * 9

    def compute() -> dict[str, Any]:
        d, b = ev.adra(got["defended"]), ev.adra(got["base"])
        cost = F.accuracy_delta(F.utility(got["utility-defended"]), F.utility(got["utility-base"]))
        return {"d": d, "b": b, "delta": F.adra_delta(d, b), "cost": cost, "eps": F.dp(got["utility-defended"]),
                "eps-capture": F.dp(got["captures-defended"])}

    fig, note = _guard(compute) if got else ({}, note)
    if fig:
        delta, cost_pos = fig["delta"], _cost(fig["cost"])
        nulls = fig["b"].get("nulls", {})
        null_success = {k: nulls[k]["success"] for k in F.NULLS if k in nulls}
        out.update({**_fields("dsuccess", delta["success"]), **_fields("didentified", delta["identified"]),
                    **_fields("didentified-dataset", delta["identified-dataset"]), **_fields("dmse", delta["mse"]),
                    **{f"null-success-{k}": v.value for k, v in null_success.items()}, "success-defended": fig["d"]["success"].value,
                    "success-base": fig["b"]["success"].value, **_fields("accuracy-cost", cost_pos),
                    "epsilon-training": eps_text(fig["eps"]), "epsilon-captures": eps_text(fig["eps-capture"]),
                    "n": fig["d"]["n"]})
        md = [_pp(delta["success"]), _pp(delta["identified"]), _pp(delta["identified-dataset"]),
              num(delta["mse"], signed=True),
              f"{pct(F.Fig(fig['d']['success'].value))} / {pct(F.Fig(fig['b']['success'].value))}",
              " / ".join(pct(F.Fig(v.value)) for v in null_success.values()) or "–",
              _pp(cost_pos, signed=False),
              f"training: {eps_text(fig['eps'])}. attacked updates: {eps_text(fig['eps-capture'])}",
              str(fig["d"]["n"])]
    return _defense_out(out, row, note, ("dsr", 1), ("dmse", 2), md)


def paper_readings(plan: Plan) -> str:
    """The paper's Table 3 attack acc read both ways, and which reading its F1 allows."""
    t = plan.paper["table3"]
    lines = ["The paper's attack acc read two ways. Its eq. 11 defines attack acc as 2·P[correct] − 1; read so, "
             "P[correct] = (acc + 1)/2. On balanced members and non-members an attack with P[correct] = P can only "
             "reach F1 between (2P − 1)/P and 1/(2 − P) for P ≥ 1/2 (from TP + TN = 2nP): the paper's F1 fits a reading when it "
             "lies in that range (both figures as printed, ± 0.005). Calling every query a member gives F1 = 2/3.",
             "", "| dataset | P | paper acc | paper F1 | as plain accuracy: P[correct], F1 range, fits | "
             "as 2P − 1: P[correct], F1 range, fits |", "|---|---|---|---|---|---|"]
    for d, accs in t["acc"].items():
        for i, p in enumerate(t["P"]):
            acc, f1 = accs[i], t["f1"][d][i]
            cells = []
            for name, r in F.paper_readings(acc, f1).items():
                lo, hi = r["f1-range"]
                cells.append(f"{r['P']:.3f}, [{lo:.3f}, {hi:.3f}], {'yes' if r['fits'] else 'no'}")
            lines.append(f"| {d} | {p} | {acc:.2f} | {f1:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _tpr(p: dict[str, Any], key: str, target: float) -> str:
    """TPR at a fixed FPR; with fewer than 1/FPR non-members it is the TPR at zero false positives."""
    return pct(p[key]) + (" (at 0 FP: too few non-members)" if p["fpr-resolution"] > target else "")


def _pp(f: F.Fig, signed: bool = True) -> str:
    """A change in a rate, in percentage points with its interval."""
    if not f.ok:
        return "–"
    s = "+" if signed else ""
    v, lo, hi = (100 * x + 0.0 for x in (f.value, f.lo, f.hi))  # + 0.0: no "-0.0"
    return f"{v:{s}.1f} [{lo:{s}.1f}, {hi:{s}.1f}]"


def _cost(change: F.Fig) -> F.Fig:
    """An accuracy cost: the change in accuracy, negated (positive: the defense costs accuracy)."""
    return F.Fig(-change.value, -change.hi, -change.lo, change.n)


def _paper_cost(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.0f} pp"


def defense_amia_row(ev: Evaluator, row: Row) -> dict[str, Any]:
    got, note = ev.results(row)
    paper = row.paper or {}
    out = {**row.labels, "paper-dacc": paper.get("dacc"), "paper-df1": paper.get("df1"),
           "paper-accuracy-cost": paper.get("cost")}
    md = ["–"] * 6
    fig, note = _guard(lambda: {"d": ev.amia(got["defended"]), "b": ev.amia(got["base"])}) if got else ({}, note)
    if fig:
        delta = F.amia_delta(fig["d"], fig["b"])
        cost_pos = _cost(delta["test-acc"])
        out.update({**_fields("dattack-acc", delta["attack-acc"]), **_fields("df1", delta["f1"]),
                    "dauc": delta["auc"].value, **_fields("accuracy-cost", cost_pos),
                    "n": fig["d"]["primary"]["attack-acc"].n})
        md = [num(delta["attack-acc"], signed=True), num(delta["f1"], signed=True), num(delta["auc"], signed=True),
              _pp(cost_pos, signed=False), "none: no (ε, δ) guarantee", str(out["n"])]
    return _defense_out(out, row, note, ("dacc", 2), ("df1", 2), md)


def _defense_out(out: dict[str, Any], row: Row, note: str, first: tuple[str, int], second: tuple[str, int],
                 md: list[str]) -> dict[str, Any]:
    """A Table 6 row's note and markdown cells: the paper's two changes (key, digits) and its cost, then ours."""
    paper = row.paper or {}
    out["note"] = note
    out["_labels"] = list(row.labels)
    out["_md"] = [paper_num(paper.get(first[0]), first[1], True) if row.paper else paper_num(None),
                  paper_num(paper.get(second[0]), second[1], True), _paper_cost(paper.get("cost")), *md, note]
    return out


DEF_ADRA_HEAD = ["paper ΔSR pp", "paper ΔMSE", "paper acc cost", "Δsuccess pp [95% CI]",
                 "Δidentified in D^α pp [95% CI]", "Δidentified in the dataset pp [95% CI]", "ΔMSE [95% CI]",
                 "success defended / undefended", "null success (random aux / aux mean)", "acc cost pp [95% CI]",
                 "ε (training; attacked updates)", "n", "note"]
DEF_AMIA_HEAD = ["paper Δacc", "paper ΔF1", "paper acc cost", "Δattack acc [95% CI]", "ΔF1 [95% CI]", "ΔAUC",
                 "acc cost pp [95% CI]", "ε", "n members", "note"]


def table_rows(ev: Evaluator, table: int) -> list[tuple[str, dict[str, Any]]]:
    """(part, row dict) for every row of one table; in Tables 1 and 2 each group of rows that
    attack the same captures is followed by its null rows. Every row says which commit
    computed it and whether that engine is still the current one."""
    out: list[tuple[str, dict[str, Any]]] = []
    group: tuple[Any, dict[str, Any], dict[str, Any]] | None = None  # (captures, labels, figures)

    def flush() -> None:
        if group is not None and group[2]:
            out.extend(("adra", r) for r in null_rows(group[1], group[2]))

    for row in ev.plan.rows[table]:
        if table in (1, 2):
            r, part = adra_row(ev, row), "adra"
            key = tuple(ev.plan.tasks[row.cells["ours"][0]].deps) if row.cells else None
            if group is None or key != group[0]:
                flush()
                labels = {k: v for k, v in row.labels.items() if k not in ("θ", "mode")}
                group = (key, labels, {})
            fig = r.pop("_fig", None)
            if fig and not group[2] and key is not None:
                group = (key, group[1], fig)
        elif table in (3, 4, 5):
            r, part = amia_row(ev, row), "amia"
        elif "activation" in row.labels:
            r, part = defense_adra_row(ev, row), "defense-adra"
        else:
            r, part = defense_amia_row(ev, row), "defense-amia"
        commits, ok = ev.provenance(row)
        r["commit"], r["engine-matches"] = commits, ok
        r["_md"].insert(-1, "–" if ok is None else f"{commits} {'✓' if ok else '✗ (the engine changed since)'}")
        out.append((part, r))
    flush()
    for _, r in out:
        if r.get("_null"):
            r.setdefault("commit", "")
            if len(r["_md"]) < len(HEADS["adra"]):
                r["_md"].insert(-1, "–")
    return out


HEADS = {part: [*head[:-1], "engine (commit; ✓ = current)", head[-1]] for part, head in
         {"adra": ADRA_HEAD, "amia": AMIA_HEAD, "defense-adra": DEF_ADRA_HEAD, "defense-amia": DEF_AMIA_HEAD}.items()}


def markdown_table(rows: list[dict[str, Any]], head: list[str]) -> str:
    labels = rows[0]["_labels"]
    lines = ["| " + " | ".join([*labels, *head]) + " |", "|" + "---|" * (len(labels) + len(head))]
    for r in rows:
        cells = [str(r[k]) for k in labels] + [str(c) for c in r["_md"]]
        cells[-1] = cells[-1] if len(cells[-1]) <= 400 else cells[-1][:400] + "… (the CSV has it all)"
        lines.append("| " + " | ".join(c.replace("|", "/").replace("\n", " ") for c in cells) + " |")
    return "\n".join(lines)


def definitions(plan: Plan) -> str:
    from attacks import metrics as adra_metrics
    from attacks.amia import metrics as amia_metrics

    d = plan.paper["definitions"]
    amia_defs = amia_metrics.__doc__.split("\n\n", 1)[1].strip()
    return "\n\n".join([
        "**The paper's set-up.** " + " ".join(d["setup"].split()),
        "**The paper's ADRA figures.** " + " ".join(d["sr"].split()),
        "**Ours (ADRA).** " + adra_metrics.DEFINITIONS
        + "\nThe paper's SR stands beside our **success** (its closest reading); **identified** is the stricter, "
          "attack-independent check. Our MSE is on [0, 1] pixels; the paper's scale is not stated, so compare "
          "MSE within a column, not across.",
        "**The paper's AMIA figures.** " + " ".join(d["attack-acc"].split()),
        "**Ours (AMIA)**: members are the clients' D^α samples, non-members the held-out pool. " + amia_defs
        + "\nBeside the paper's attack acc and F1 we report what the field now expects (LiRA's standard): AUC, TPR "
          "at 1% and 0.1% FPR, and the target's train and test accuracy (a target that has not fitted its data says "
          "nothing about membership); D^θ AUC is the weight-level baseline.",
        "**Defenses.** The paper: " + " ".join(d["defenses"].split())
        + " Ours: `dp-update` is the paper's DP_SGD (noise on the architecture update, σ = 0.1 reads N(0, 0.01) as "
          "a variance), with client-level ε; `dp-sgd` is DP-SGD on every α step (example-level ε); LR = `alpha-l2`, "
          "DP = `input-noise-std` (no formal guarantee), MD = `md` (docs/privacy.md, docs/amia.md). Accuracy cost = "
          "undefended minus defended test accuracy. ε is at each run's `dp-delta` (1e-5 unless the scale sets it), "
          "by the RDP accountant, per mechanism with what it covers; with weights shared and only α noised, "
          "the whole reply has no bound (∞), as the project's DP reporting rule says (docs/privacy.md).",
        "**Intervals (95%).** Stated once in `fednas/stats.py`; which one each figure uses:\n\n" + F.INTERVALS,
    ])


def setup(plan: Plan) -> str:
    """What this scale's cells are made of, in words (from the scale file)."""
    s = plan.scale
    a, m, g = s.adra, s.amia, s.defenses

    def kv(d: dict[str, Any]) -> str:
        return ", ".join(f"`{k} = {toml_value(v)}`" for k, v in d.items()) or "the defaults"

    def named(d: dict[str, dict[str, Any]]) -> str:
        return "; ".join(f"{k}: {kv(v)}" for k, v in d.items()) or "none"

    rounds = -(-a.samples // a.clients)
    return "\n".join([
        f"- Every run: {kv(s.base)}; the real ServerApp and ClientApp "
        + ("in one process (an in-process Grid, no Ray)." if s.runner == "inprocess" else "through `flwr run`."),
        f"- ADRA captures: {a.clients} clients, eavesdropped (the real eavesdropper); each "
        f"(round, client) update is one capture; {a.samples} images per cell and seed, i.e. ⌈{a.samples}/B⌉ captures "
        f"from the first {rounds} round(s) at B = 1"
        + (" (all from round 1: θ_t1 is the server's initial θ_0, drawn from U(−0.25, 0.25) as in the paper)"
           if rounds == 1 else "") + f"; the clients' procedure: {kv(a.capture)}.",
        f"- ADRA attack: {kv(a.attack)}; attack modes {', '.join(a.modes)}; θ knowledge: "
        + "; ".join(f"`{n}` = {kv(v)}" + (" (the paper's threat model)" if i == 0 else "")
                    for i, (n, v) in enumerate((n, a.theta_modes[n]) for n in a.theta)) + ".",
        f"- AMIA targets: {m.clients} clients, {kv(m.target)}; attack: {kv(m.attack)}; the figures "
        f"beside the paper's are the `{m.primary_attack}` attack with `{m.primary_shadow}` shadows on D^α members; "
        f"a target whose train accuracy on D^θ is below {m.fit_threshold} is flagged as not fitted"
        + (f"; Table 3's improved-AMIA rows (P in {list(m.improved_nodes)}) attack the same targets with "
           f"`searched` shadows beside the `{m.primary_shadow}` ones." if m.improved_nodes else "."),
        f"- Table 6: ADRA defenses ({named(g.adra)}), accuracy cost from a search at "
        f"P = {g.utility_nodes} with {kv(g.utility)} with and without each; AMIA defenses "
        f"({named(g.amia)}; amia-group keys act when attacking, the rest when training).",
    ])


INVOCATIONS = "invocations.json"


def log_invocation(out: Path, command: str, rev: str, wall: float, counts: dict[str, Any]) -> None:
    """Append one run of the harness on ``out`` (a resumed run has several) to its log; ``rev`` is
    :func:`fingerprint.commit` as it was when the run started (the checkout may move while it runs)."""
    path = out / INVOCATIONS
    log = json.loads(path.read_text()) if path.is_file() else []
    log.append({"command": command, "commit": rev, "started": time.strftime("%Y-%m-%dT%H:%M:%S",
                time.localtime(time.time() - wall)), "wall-seconds": round(wall, 1), **counts})
    atomic_write_json(path, log)


def portable(text: str, root: Path = PROJECT) -> str:
    """``text`` as published: every absolute path inside ``root`` relative to it, any other
    cut to ``…/`` and its last parts (:func:`fednas.rundir.portable_paths`); invocations.json
    in the output folder keeps them whole."""
    return portable_paths(text, root)


def provenance(out: Path) -> list[str]:
    """The commands, commits and wall time of every invocation that computed these results."""
    path = out / INVOCATIONS
    log = json.loads(path.read_text()) if path.is_file() else []
    if not log:
        return ["Command: none recorded (results made by an older version of the harness)  "]
    commands = list(dict.fromkeys(portable(e["command"]) for e in log))  # no quoting to undo: … is a display form
    commits = list(dict.fromkeys(e["commit"] for e in log))
    total = sum(e["wall-seconds"] for e in log)
    return [f"Command: {' ; '.join(f'`{c}`' for c in commands)}  ",
            f"Commit: {', '.join(f'`{c}`' for c in commits)}; wall time {human(total)} over {len(log)} "
            f"invocation(s) (first started {log[0]['started']})  "]


def stale_rows(all_rows: dict[int, list[tuple[str, dict[str, Any]]]]) -> int:
    """How many computed rows were computed (wholly or partly) by another engine than the current one."""
    return sum(1 for rows in all_rows.values() for _, r in rows if r.get("engine-matches") is False)


def write(plan: Plan, out: Path, engine: dict[str, Any] | None = None) -> Path:
    """Write ``tables.md`` and ``table<N>.csv`` for the plan's tables; return tables.md.
    ``engine``: the current fingerprint each row is compared with (default: this checkout's)."""
    ev = Evaluator(plan, out, engine)
    s = plan.scale
    libs = ", ".join(f"{k} {v}" for k, v in ev.engine["libraries"].items())
    parts = [f"# Tables 1–6 of Li et al. (2024) beside this project's ({s.name} scale)", "",
             *provenance(out),
             f"Engine now: commit `{ev.engine['commit']}`, source `{ev.engine['source'][:12]}`; {libs}  ",
             f"Scale: `{s.path.name}`: {' '.join(s.about.split())}  ",
             f"Seeds: {', '.join(map(str, s.seeds))}; datasets run: {', '.join(plan.datasets)}; "
             f"written {time.strftime('%Y-%m-%d %H:%M')}", ""]
    counts = {"computed": 0, "not runnable here": 0, "not run yet": 0, "failed": 0, "null": 0}
    body, all_rows = [], {}
    for t in sorted(plan.rows):
        rows = all_rows[t] = table_rows(ev, t)
        body += [f"## {TITLES[t]}", ""]
        for part in dict.fromkeys(p for p, _ in rows):
            these = [r for p, r in rows if p == part]
            body += [markdown_table(these, HEADS[part]), ""]
        if t == 3:
            body += [paper_readings(plan), ""]
        atomic_write_csv(out / f"table{t}.csv", [{k: v for k, v in r.items() if not k.startswith("_")} for _, r in rows])
        for _, r in rows:
            key = ("null" if r.get("_null") else "not run yet" if r["note"] == PENDING
                   else "failed" if r["note"].startswith("failed")
                   else "computed" if r.get("n") is not None else "not runnable here")
            counts[key] += 1
    made = plots.write_all(all_rows, out)
    stale = stale_rows(all_rows)
    parts += ["Rows: " + ", ".join(f"{v} {k}" for k, v in counts.items()) + "; computed by an older engine "
              f"(✗ in the engine column): {stale}.  ",
              "CSV: " + ", ".join(f"`table{t}.csv`" for t in sorted(plan.rows)) + "; plots: "
              + (", ".join(f"`{p.name}`" for p in made) or "none yet (nothing computed)") + ".", ""]
    if plan.notes:
        parts += ["Datasets not available here: " + "; ".join(f"`{d}`: {r}" for d, r in plan.notes.items()), ""]
    parts += ["## This scale's set-up", "", setup(plan), "", "## Definitions, the paper's and ours", "",
              definitions(plan), "", *body]
    return atomic_write_text(out / "tables.md", "\n".join(parts) + "\n")
