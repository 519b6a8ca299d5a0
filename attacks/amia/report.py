"""AMIA's outputs: ``metrics.json``, ``results.csv``, ``roc.png`` (log-log) and ``report.md``.

Written into a fresh ``<run-dir>/amia/`` (``amia-1/``, ``amia-2/``... when taken): an
earlier AMIA result is never overwritten. Every file is written atomically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fednas.rundir import atomic_write_bytes, atomic_write_csv, atomic_write_json, atomic_write_text

COLUMNS = ("members", "shadow", "attack", "attack-acc", "f1", "auc", "balanced-acc", "tpr@1%fpr", "tpr@0.1%fpr",
           "threshold", "n-members", "n-nonmembers", "fpr-resolution")
MEMBER_SETS = {"alpha": "D^α members (the architecture's data) vs held-out",
               "theta": "D^θ members (the weights' data, baseline) vs held-out"}


def claim_dir(parent: Path, name: str = "amia") -> Path:
    """Create and return ``parent/name``, or ``name-1``, ``name-2``... (never an existing one)."""
    for n in range(10000):
        path = parent / (name if n == 0 else f"{name}-{n}")
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free {name}-N folder in {parent}")


def fmt(v: Any, signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:+.3f}" if signed else f"{v:.3f}"
    return str(v)


def results_table(rows: Sequence[Mapping[str, Any]], members: str) -> str:
    cols = ("shadow", "attack", "attack-acc", "f1", "auc", "balanced-acc", "tpr@1%fpr", "tpr@0.1%fpr")
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        if r["members"] == members:
            lines.append("| " + " | ".join(fmt(r[c]) for c in cols) + " |")
    return "\n".join(lines)


def render_report(m: Mapping[str, Any]) -> str:
    t, at = m["target"], m["attacker"]
    d = t["defenses"]
    defenses = ", ".join(filter(None, [f"LR λ={d['lr']}" if d["lr"] else "", f"DP σ={d['dp']} ({d['dp-mode']})" if d["dp"]
                                       else "", "MD" if d["md"] else ""])) or "none"
    n_res = m["results"][0] if m["results"] else {}
    lines = [
        "# AMIA: membership inference on the final model", "",
        f"Run: `{m['run-dir']}`. Target: **{t['kind']}**" + (f" (derived, retrained on {t['retrain-on']})" if t["kind"] == "derived" else "")
        + f", served {'as an MD student' if d['md'] else 'as trained'}; API output: `{m['settings']['amia-output']}`.",
        f"Defenses: **{defenses}**; the attacker {'knows them (its shadows apply them too)' if at['defense-known'] else 'does not know them'}.", "",
        f"Target accuracy: train on D^α {fmt(t['train-acc-alpha'])}, on D^θ {fmt(t['train-acc-theta'])}, "
        f"test (held-out) {fmt(t['test-acc'])}" + (f"; the teacher's test {fmt(t['teacher-test-acc'])}" if "teacher-test-acc" in t else "")
        + f". The weights made {fmt(t['weight-passes'])} passes over their data; ‖α‖ = {fmt(t.get('alpha-norm'))}.",
        f"Attacker: {at['pool']} samples, {at['from-target']} from the target's distribution and {at['shifted']} from "
        f"`{at['shift-source']}` (η = {at['eta']}).",
        f"Queries: {n_res.get('n-members', 0)} members and {n_res.get('n-nonmembers', 0)} non-members per set; "
        f"FPRs below {fmt(n_res.get('fpr-resolution'))} cannot be measured (TPR at 0.1% FPR is then the TPR at no false positive).", "",
        "attack acc = 2·P[correct] − 1 (the paper's; 0 = chance), F1 of the member class, AUC, balanced accuracy, TPR at fixed FPR. "
        f"A guessing attack scatters by ±{fmt(n_res.get('attack-acc-chance-sd'))} in attack acc and ±{fmt(n_res.get('auc-chance-sd'))} "
        "in AUC (one standard deviation) on these sets.", "",
    ]
    for members, title in MEMBER_SETS.items():
        lines += [f"## {title}", "", results_table(m["results"], members), ""]
    lines += ["## Shadows", "", "| kind | shadows | train size | train acc | test acc |", "|---|---|---|---|---|"]
    for kind, s in m["shadows"].items():
        lines.append(f"| {kind} | {s['shadows']} | {s['train-size']} | {fmt(s['train-acc'])} | {fmt(s['test-acc'])} |")
    lines += ["", "![ROC](roc.png)", "", f"({m['seconds']} s)", ""]
    return "\n".join(lines)


def plot_roc(curves: Mapping[tuple[str, str, str], tuple[np.ndarray, np.ndarray]]) -> bytes:
    """Log-log ROC, one panel per member set; PNG bytes."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5), sharey=True)
    for ax, (members, title) in zip(axes, MEMBER_SETS.items()):
        floor = 1e-3
        for (mem, shadow, attack), (fpr, tpr) in curves.items():
            if mem == members:
                ax.plot(np.maximum(fpr, floor), np.maximum(tpr, floor), label=f"{attack} / {shadow}")
        ax.plot([floor, 1], [floor, 1], "k:", lw=1, label="chance")
        ax.set(xscale="log", yscale="log", xlim=(floor, 1), ylim=(floor, 1), xlabel="false positive rate",
               title=title.replace("^α", "$^\\alpha$").replace("^θ", "$^\\theta$"))
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("true positive rate")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def write_outputs(run_dir: Path, metrics: dict[str, Any], curves: Mapping) -> Path:
    """Claim a fresh ``amia`` folder in ``run_dir`` and write every output there."""
    out = claim_dir(Path(run_dir))
    metrics = {**metrics, "amia-dir": str(out)}
    atomic_write_csv(out / "results.csv", metrics["results"], COLUMNS)
    atomic_write_bytes(out / "roc.png", plot_roc(curves))
    atomic_write_text(out / "report.md", render_report(metrics))
    atomic_write_json(out / "metrics.json", metrics)  # last: its presence means the folder is complete
    return out
