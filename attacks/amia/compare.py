"""``python -m attacks.amia.compare BASELINE OTHER... [--labels ...] [--out DIR]``: defenses side by side.

Each argument is an AMIA folder (``.../amia-N``) or a run directory (its newest AMIA
folder is taken). The first is the baseline (no defense); every other one is reported
with its change in attack acc, F1 and target accuracy against it, per member set,
shadow and attack (the paper's Table 6 layout). Writes ``report.md`` and
``comparison.json`` into a fresh folder (default: ``amia-compare`` beside the baseline's
run directory) and prints the report.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from attacks.amia.data import AMIAInputError
from attacks.amia.report import claim_dir, fmt
from fednas.rundir import atomic_write_json, atomic_write_text


def find_metrics(path: str | Path) -> Path:
    """``metrics.json`` of an AMIA folder, or of a run directory's newest AMIA folder."""
    path = Path(path)
    if (path / "metrics.json").is_file() and (path / "roc.png").exists():
        return path / "metrics.json"
    found = sorted((p for p in path.glob("amia*/metrics.json") if p.parent.name != "amia-compare"),
                   key=lambda p: p.stat().st_mtime)
    if not found:
        raise AMIAInputError(f"{path} holds no AMIA result (no metrics.json in it or in an amia*/ folder)")
    return found[-1]


def default_label(m: dict[str, Any]) -> str:
    d = m["target"]["defenses"]
    parts = [f"LR λ={d['lr']:g}" if d["lr"] else "", f"DP σ={d['dp']:g}" if d["dp"] else "", "MD" if d["md"] else ""]
    return " + ".join(p for p in parts if p) or "none"


def compare(metrics: list[dict[str, Any]], labels: list[str]) -> list[dict[str, Any]]:
    """One row per (result, member set, shadow, attack) with deltas against the first result."""
    base = {(r["members"], r["shadow"], r["attack"]): r for r in metrics[0]["results"]}
    base_acc = metrics[0]["target"]["test-acc"]
    rows = []
    for m, label in zip(metrics, labels):
        for r in m["results"]:
            key = (r["members"], r["shadow"], r["attack"])
            b = base.get(key)
            rows.append({
                "defense": label, "members": key[0], "shadow": key[1], "attack": key[2],
                "attack-acc": r["attack-acc"], "f1": r["f1"], "auc": r["auc"], "tpr@1%fpr": r["tpr@1%fpr"],
                "test-acc": m["target"]["test-acc"], "train-acc-theta": m["target"]["train-acc-theta"],
                "alpha-norm": m["target"].get("alpha-norm"),
                "d-attack-acc": r["attack-acc"] - b["attack-acc"] if b else None,
                "d-f1": r["f1"] - b["f1"] if b else None,
                "d-test-acc": m["target"]["test-acc"] - base_acc,
            })
    return rows


def render(rows: list[dict[str, Any]], sources: list[str], labels: list[str]) -> str:
    cols = ["defense", "shadow", "attack", "attack-acc", "Δ", "f1", "Δ ", "auc", "tpr@1%fpr", "test-acc", "Δ  ", "‖α‖"]
    lines = ["# AMIA: defenses side by side", "",
             "Change (Δ) against the first row's target (no defense): attack acc = 2·P[correct] − 1, F1, "
             "and the served model's test accuracy on held-out data; ‖α‖: norm of the final α.", ""]
    lines += [f"- **{lab}**: `{src}`" for lab, src in zip(labels, sources)] + [""]
    for members, title in (("alpha", "D^α members (architecture)"), ("theta", "D^θ members (weights, baseline)")):
        lines += [f"## {title}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for r in sorted((r for r in rows if r["members"] == members), key=lambda r: (r["shadow"], r["attack"])):
            lines.append("| " + " | ".join([r["defense"], r["shadow"], r["attack"], fmt(r["attack-acc"]),
                                             fmt(r["d-attack-acc"], True), fmt(r["f1"]), fmt(r["d-f1"], True),
                                             fmt(r["auc"]), fmt(r["tpr@1%fpr"]), fmt(r["test-acc"]),
                                             fmt(r["d-test-acc"], True), fmt(r["alpha-norm"])]) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m attacks.amia.compare", description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="AMIA folders or run directories; the first is the baseline")
    parser.add_argument("--labels", help="comma-separated names, one per result (default: from their defenses)")
    parser.add_argument("--out", help="folder to write (a fresh name is taken if it exists)")
    args = parser.parse_args(argv)
    try:
        files = [find_metrics(p) for p in args.results]
        metrics = [json.loads(f.read_text()) for f in files]
        labels = args.labels.split(",") if args.labels else [default_label(m) for m in metrics]
        if len(labels) != len(metrics):
            raise AMIAInputError(f"--labels names {len(labels)} results, {len(metrics)} were given")
    except AMIAInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rows = compare(metrics, labels)
    text = render(rows, [str(f.parent) for f in files], labels)
    out = Path(args.out) if args.out else Path(metrics[0]["run-dir"]) / "amia-compare"
    out = claim_dir(out.parent, out.name)
    atomic_write_json(out / "comparison.json", {"sources": [str(f) for f in files], "labels": labels, "rows": rows})
    atomic_write_text(out / "report.md", text)
    print(text)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
