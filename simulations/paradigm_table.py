"""Table 4 measured here: AMIA by NAS paradigm, beside the paper's values.

``python -m simulations.paradigm_table [--paradigms darts,pdarts,enas,smash] [--dataset mnist-5k]
[--experiment simulations/paradigms-amia.toml] [--out outputs/paradigm-table] [--set key=value ...]``

For each paradigm (a *cell*): one federated search through the launcher with AMIA at its
end (:func:`run_cell`), its result saved as ``<out>/cells/<paradigm>-<dataset>.json``
(atomically; a rerun skips finished cells, a failed cell records its error and the rest go
on), then ``<out>/table4.md`` and ``table4.csv``: per paradigm and shadow, the paper's
attack acc / F1 (MNIST, P = 64) and ours with 95% intervals, AUC, the D^θ baseline and the
target's accuracy. The tables harness calls :func:`run_cell` for its Table 4.

Intervals (members and non-members balanced, n each): attack acc = 2p − 1 with p the
share of correct calls over 2n, Wilson; F1 by a parametric bootstrap of the decision
counts (TP ~ Bin(n, TPR), FP ~ Bin(n, FPR), the counts recovered from attack acc and F1,
the rates shrunk by plus-two); AUC by the Hanley–McNeil standard error.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fednas.config import ConfigError, split_names
from fednas.rundir import atomic_write_csv, atomic_write_json, atomic_write_text
from simulations.launcher import PROJECT_ROOT, LaunchError, launch

log = logging.getLogger(__name__)

EXPERIMENT = PROJECT_ROOT / "simulations" / "paradigms-amia.toml"
PARADIGMS = ("darts", "pdarts", "enas", "smash")
# The paper's Table 4, MNIST row, P = 64: (attack acc, F1)
PAPER = {"darts": (0.56, 0.64), "enas": (0.51, 0.64), "pdarts": (0.53, 0.65), "smash": (0.53, 0.61)}
Z = 1.959964


# --------------------------------------------------------------------------- intervals


def wilson(k: float, n: int) -> tuple[float, float]:
    """95% Wilson interval of a rate k/n."""
    if n <= 0:
        return (math.nan, math.nan)
    p = k / n
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / (1 + Z * Z / n)
    return (centre - half, centre + half)


def attack_acc_interval(acc: float, n: int) -> tuple[float, float]:
    """Attack acc 2p − 1 over 2n balanced queries: Wilson on p, mapped back."""
    lo, hi = wilson((acc + 1) / 2 * 2 * n, 2 * n)
    return (2 * lo - 1, 2 * hi - 1)


def decision_counts(acc: float, f1: float, n: int) -> tuple[int, int]:
    """(TP, FP) of n members and n non-members with TPR − FPR = acc and the given F1."""
    a = acc * n  # TP − FP
    if f1 <= 0:
        return 0, int(round(max(-a, 0)))
    fp = (2 * a - f1 * (a + n)) / (2 * f1 - 2) if f1 < 1 else 0.0
    tp = fp + a
    return int(round(min(max(tp, 0), n))), int(round(min(max(fp, 0), n)))


def f1_interval(acc: float, f1: float, n: int, draws: int = 4000, seed: int = 0) -> tuple[float, float]:
    """Parametric bootstrap of F1 = 2TP / (TP + FP + n) from the recovered decision counts."""
    tp, fp = decision_counts(acc, f1, n)
    rng = np.random.default_rng(seed)
    # rates shrunk by plus-two (Agresti-Coull), so that a count of 0 or n still has spread
    tps, fps = rng.binomial(n, (tp + 1) / (n + 2), draws), rng.binomial(n, (fp + 1) / (n + 2), draws)
    values = np.where(tps > 0, 2 * tps / np.maximum(tps + fps + n, 1), 0.0)
    return (float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975)))


def auc_interval(auc: float, n_pos: int, n_neg: int) -> tuple[float, float]:
    """Hanley & McNeil (1982) standard error, normal 95% interval (clipped to [0, 1])."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)
    half = Z * math.sqrt(max(var, 0.0))
    return (max(0.0, auc - half), min(1.0, auc + half))


# --------------------------------------------------------------------------- one cell


def cell_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """The AMIA result rows of one run with their intervals (members D^α, and D^θ's AUC beside)."""
    rows = []
    by_key = {(r["members"], r["shadow"], r["attack"]): r for r in metrics["results"]}
    for (members, shadow, attack), r in by_key.items():
        if members != "alpha":
            continue
        n = int(r["n-members"])
        theta = by_key.get(("theta", shadow, attack), {})
        rows.append({
            "shadow": shadow, "attack": attack, "n": n, "n-nonmembers": int(r["n-nonmembers"]),
            "attack-acc": r["attack-acc"], "attack-acc-ci": attack_acc_interval(r["attack-acc"], n),
            "f1": r["f1"], "f1-ci": f1_interval(r["attack-acc"], r["f1"], n),
            "auc": r["auc"], "auc-ci": auc_interval(r["auc"], n, int(r["n-nonmembers"])),
            "tpr@1%fpr": r["tpr@1%fpr"], "theta-auc": theta.get("auc"),
        })
    return rows


def run_cell(paradigm: str, dataset: str = "mnist-5k", sets: Sequence[str] = (), out_dir: str | Path | None = None,
             experiment: str | Path = EXPERIMENT, stream: Any = None) -> dict[str, Any]:
    """One Table 4 cell: the paradigm's federated search through the launcher, AMIA at its end.

    Returns ``{"paradigm", "dataset", "status", "run-dir", "target", "rows", "seconds", ...}``;
    ``status`` is ``failed`` with an ``error`` when the run or AMIA did not complete.
    """
    t0 = time.time()
    out_dir = Path(out_dir or PROJECT_ROOT / "outputs" / "paradigm-table")
    cell = {"paradigm": paradigm, "dataset": dataset, "sets": list(sets), "experiment": str(experiment)}
    try:
        result = launch(experiment, [f"paradigm={paradigm}", f"dataset={dataset}", f"output-dir={out_dir / 'runs'}",
                                     f"run-name=t4-{paradigm}-{dataset}", *sets], stream=stream)
    except (ConfigError, LaunchError) as err:
        return {**cell, "status": "failed", "error": f"{type(err).__name__}: {err}", "seconds": time.time() - t0}
    cell["run-dir"] = str(result.run_dir)
    summary = json.loads((result.run_dir / "summary.json").read_text()) if (result.run_dir / "summary.json").is_file() else {}
    amia = summary.get("amia") or {}
    if result.returncode != 0 or amia.get("status") != "completed":
        error = amia.get("error") or f"run status {result.status}"
        return {**cell, "status": "failed", "error": error, "seconds": time.time() - t0}
    metrics = json.loads((Path(amia["dir"]) / "metrics.json").read_text())
    t = metrics["target"]
    return {**cell, "status": "completed", "seconds": round(time.time() - t0, 1), "genotype": summary.get("genotype"),
            "central-acc": summary.get("final-central-acc"),
            "target": {k: t.get(k) for k in ("kind", "train-acc-alpha", "train-acc-theta", "test-acc")},
            "rows": cell_rows(metrics)}


# --------------------------------------------------------------------------- the table


def _ci(value: float | None, ci: Sequence[float] | None) -> str:
    if value is None:
        return "–"
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{value:.3f}"


def render(cells: Sequence[dict[str, Any]], attack: str = "mlp") -> tuple[str, list[dict[str, Any]]]:
    """Table 4 as Markdown (the paper's attack, ``mlp``, per shadow) and its CSV rows."""
    lines = ["| paradigm | paper acc / F1 | shadow | n | attack acc [95%] | F1 [95%] | AUC [95%] | best AUC (attack) "
             "| D^θ AUC, best (attack) | target train D^α / D^θ, test |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    csv_rows = []
    for cell in cells:
        paper = PAPER.get(cell["paradigm"], (None, None))
        paper_text = f"{paper[0]:.2f} / {paper[1]:.2f}" if paper[0] is not None else "–"
        if cell.get("status") != "completed":
            lines.append(f"| {cell['paradigm']} | {paper_text} | – | – | not measured: {cell.get('error', 'not run')} "
                         "| | | | | |")
            continue
        t = cell["target"]
        target = f"{t['train-acc-alpha']:.3f} / {t['train-acc-theta']:.3f}, {t['test-acc']:.3f}"
        for shadow in dict.fromkeys(r["shadow"] for r in cell["rows"]):
            rows = [r for r in cell["rows"] if r["shadow"] == shadow]
            main = next((r for r in rows if r["attack"] == attack), rows[0])
            best = max(rows, key=lambda r: r["auc"])
            theta = max((r for r in rows if r["theta-auc"] is not None), key=lambda r: r["theta-auc"], default=None)
            theta_text = f"{theta['theta-auc']:.3f} ({theta['attack']})" if theta else "–"
            lines.append(f"| {cell['paradigm']} | {paper_text} | {shadow} | {main['n']} + {main['n-nonmembers']} | "
                         f"{_ci(main['attack-acc'], main['attack-acc-ci'])} | {_ci(main['f1'], main['f1-ci'])} | "
                         f"{_ci(main['auc'], main['auc-ci'])} | {best['auc']:.3f} ({best['attack']}) | "
                         f"{theta_text} | {target} |")
            csv_rows.append({"paradigm": cell["paradigm"], "dataset": cell["dataset"], "shadow": shadow,
                             "attack": main["attack"], "paper-attack-acc": paper[0], "paper-f1": paper[1],
                             **{k: main[k] for k in ("n", "attack-acc", "f1", "auc", "theta-auc")},
                             "attack-acc-lo": main["attack-acc-ci"][0], "attack-acc-hi": main["attack-acc-ci"][1],
                             "f1-lo": main["f1-ci"][0], "f1-hi": main["f1-ci"][1],
                             "auc-lo": main["auc-ci"][0], "auc-hi": main["auc-ci"][1],
                             "test-acc": t["test-acc"], "run-dir": cell["run-dir"]})
    return "\n".join(lines), csv_rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m simulations.paradigm_table", description=__doc__.splitlines()[0])
    p.add_argument("--paradigms", default=",".join(PARADIGMS), help="comma-separated paradigms (default: all four)")
    p.add_argument("--dataset", default="mnist-5k")
    p.add_argument("--experiment", default=str(EXPERIMENT), help="experiment TOML of every cell")
    p.add_argument("--out", default=str(PROJECT_ROOT / "outputs" / "paradigm-table"))
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key in every cell (repeatable)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    paradigms = split_names(args.paradigms)
    unknown = [x for x in paradigms if x not in PARADIGMS]
    if unknown:
        print(f"error: unknown paradigms {unknown}; choose from {', '.join(PARADIGMS)}", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    cells = []
    for paradigm in paradigms:
        path = out / "cells" / f"{paradigm}-{args.dataset}.json"
        if path.is_file() and json.loads(path.read_text()).get("status") == "completed":
            log.info("cell %s: done before, kept (%s)", path.stem, path)
        else:
            log.info("cell %s: running", path.stem)
            atomic_write_json(path, run_cell(paradigm, args.dataset, args.sets, out, args.experiment, sys.stderr))
        cells.append(json.loads(path.read_text()))
    table, rows = render(cells)
    command = "python -m simulations.paradigm_table " + " ".join(argv if argv is not None else sys.argv[1:])
    atomic_write_text(out / "table4.md", f"# Table 4 measured here ({args.dataset})\n\n{table}\n\n`{command}`\n")
    atomic_write_csv(out / "table4.csv", rows)
    print(table)
    print(out / "table4.md")
    return 0 if all(c.get("status") == "completed" for c in cells) else 1


if __name__ == "__main__":
    sys.exit(main())
