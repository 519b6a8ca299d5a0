"""The plots: SR vs P per activation, SR vs B per P, AMIA vs P, AMIA vs η, defense deltas.

Ours are solid lines with 95% error bars, the paper's dashed, from the same row dicts
that make ``tables.md`` and the CSVs (so a plot never shows a figure the tables do not).
"""

from __future__ import annotations

import io
import math
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fednas.rundir import atomic_write_bytes

Rows = list[dict[str, Any]]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _save(fig: Any, path: Path) -> Path:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    _plt().close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def _series(ax: Any, rows: Rows, x: str, y: str, label: str, paper_key: str | None, scale: float, style: dict) -> None:
    """One line of ours (with error bars) and, where given, the paper's (dashed, same colour)."""
    ours = sorted((r[x], r[y], r.get(f"{y}-lo"), r.get(f"{y}-hi")) for r in rows if _finite(r.get(y)))
    line = None
    if ours:
        xs, ys, lo, hi = zip(*ours)
        err = [[max(0.0, scale * (v - (l if _finite(l) else v))) for v, l in zip(ys, lo)],
               [max(0.0, scale * ((h if _finite(h) else v) - v)) for v, h in zip(ys, hi)]]
        line = ax.errorbar(xs, [scale * v for v in ys], yerr=err, marker="o", capsize=3, label=f"{label} (ours)",
                           **style)
    if paper_key:
        paper = sorted({(r[x], r[paper_key]) for r in rows if _finite(r.get(paper_key))})
        if paper:
            colour = line[0].get_color() if line is not None else None
            ax.plot(*zip(*paper), linestyle="--", marker="x", color=colour, label=f"{label} (paper)")


def _grid(groups: dict[Any, Rows], draw: Callable[[Any, Rows], None], title: Callable[[Any], str], path: Path) -> Path | None:
    if not groups:
        return None
    plt = _plt()
    n = len(groups)
    cols = min(n, 3)
    fig, axes = plt.subplots((n + cols - 1) // cols, cols, figsize=(5 * cols, 3.6 * ((n + cols - 1) // cols)),
                             squeeze=False)
    for ax, (key, rows) in zip(axes.flat, groups.items()):
        draw(ax, rows)
        ax.set_title(title(key), fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return _save(fig, path)


def _group(rows: Rows, keys: tuple[str, ...], need: str) -> dict[Any, Rows]:
    """Rows by ``keys``, keeping only groups with something to draw (ours or the paper's)."""
    out: dict[Any, Rows] = defaultdict(list)
    for r in rows:
        out[tuple(r.get(k) for k in keys)].append(r)
    return {k: v for k, v in out.items()
            if any(_finite(r.get(need)) or any(_finite(r.get(p)) for p in r if p.startswith("paper-")) for r in v)}


def _adra_groups(rows: Rows) -> dict[Any, Rows]:
    """One panel per (dataset, θ, attack mode) we computed, each with the paper's lines of
    that dataset (the paper's figures are for its own threat model: θ unknown)."""
    paper: dict[str, Rows] = defaultdict(list)
    for r in rows:
        if _finite(r.get("paper-sr-%")):
            paper[r["dataset"]].append(r)
    groups: dict[Any, Rows] = defaultdict(list)
    for r in rows:
        if _finite(r.get("success")):
            groups[(r["dataset"], r["θ"], r["mode"])].append(r)
    for key in groups:
        groups[key] += [{k: v for k, v in r.items() if not k.startswith("success")} for r in paper[key[0]]]
    for d, rs in paper.items():
        if not any(k[0] == d for k in groups):
            groups[(d, "unknown", "the paper's only")] = rs
    return dict(groups)


def sr_vs(rows: Rows, x: str, line: str, table: int, path: Path) -> Path | None:
    """ADRA success (ours) and SR (the paper's) against ``x`` (P or B), one line per ``line``."""
    def draw(ax: Any, rs: Rows) -> None:
        by_line: dict[Any, Rows] = defaultdict(list)
        for r in rs:
            by_line[r[line]].append(r)
        for value, lr in sorted(by_line.items(), key=lambda kv: (str(type(kv[0])), kv[0])):
            _series(ax, lr, x, "success", f"{line}={value}", "paper-sr-%", 100.0, {})
        ax.set_xscale("log", base=2)
        ax.set_xlabel(x)
        ax.set_ylabel("success / SR (%)")

    return _grid(_adra_groups(rows), draw, lambda k: f"Table {table}: {k[0]}, θ {k[1]}, {k[2]}", path)


def amia_vs(rows: Rows, x: str, table: int, path: Path) -> Path | None:
    # the primary shadow's rows only: Table 3's improved-AMIA rows are a comparison of their own
    groups = _group([r for r in rows if r.get("shadow") != "searched"], ("dataset",), "attack-acc")

    def draw(ax: Any, rs: Rows) -> None:
        _series(ax, rs, x, "attack-acc", "attack acc", "paper-acc", 1.0, {})
        _series(ax, rs, x, "auc", "AUC", None, 1.0, {})
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
        if x == "P":
            ax.set_xscale("log", base=2)
        ax.set_xlabel(x)

    return _grid(groups, draw, lambda k: f"Table {table}: {k[0]} (chance: acc 0, AUC 0.5)", path)


def defense_deltas(adra_rows: Rows, amia_rows: Rows, path: Path) -> Path | None:
    """Bars of our change (with its interval) beside the paper's, per Table 6 row."""
    panels = [(adra_rows, "dsuccess", "paper-dsr-pp", 100.0, "ADRA: Δ success / SR (pp)"),
              (amia_rows, "dattack-acc", "paper-dacc", 1.0, "AMIA: Δ attack acc")]
    panels = [p for p in panels if any(_finite(r.get(p[1])) for r in p[0])]
    if not panels:
        return None
    plt = _plt()
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 3.8 * len(panels)), squeeze=False)
    for ax, (rows, key, paper_key, scale, title) in zip(axes[:, 0], panels):
        ran = {r["dataset"] for r in rows if _finite(r.get(key))}  # the paper's bars only where we have ours too
        shown = [r for r in rows if _finite(r.get(key)) or (_finite(r.get(paper_key)) and r["dataset"] in ran)]
        xs = range(len(shown))
        ours = [scale * r[key] if _finite(r.get(key)) else 0.0 for r in shown]
        err = [[scale * (r[key] - r[f"{key}-lo"]) if _finite(r.get(f"{key}-lo")) else 0 for r in shown],
               [scale * (r[f"{key}-hi"] - r[key]) if _finite(r.get(f"{key}-hi")) else 0 for r in shown]]
        ax.bar([x - 0.2 for x in xs], ours, width=0.4, yerr=err, capsize=2, label="ours")
        ax.bar([x + 0.2 for x in xs], [r[paper_key] if _finite(r.get(paper_key)) else 0.0 for r in shown],
               width=0.4, label="paper", alpha=0.6)
        ax.set_xticks(list(xs))
        ax.set_xticklabels([" ".join(str(r.get(k, "")) for k in ("dataset", "defense", "activation", "point", "P", "θ")
                                     if r.get(k) not in (None, "")) for r in shown], rotation=60, ha="right", fontsize=6)
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    return _save(fig, path)


def write_all(table_rows: dict[int, list[tuple[str, dict[str, Any]]]], out: Path) -> list[Path]:
    """Every plot the computed tables allow; returns the files written."""
    def part(t: int, name: str) -> Rows:
        return [r for p, r in table_rows.get(t, []) if p == name and not r.get("_null")]  # nulls: tables only

    made = [sr_vs(part(1, "adra"), "P", "activation", 1, out / "table1-sr-vs-p.png"),
            sr_vs(part(2, "adra"), "B", "P", 2, out / "table2-sr-vs-b.png"),
            amia_vs(part(3, "amia"), "P", 3, out / "table3-amia-vs-p.png"),
            amia_vs(part(5, "amia"), "η", 5, out / "table5-amia-vs-eta.png"),
            defense_deltas(part(6, "defense-adra"), part(6, "defense-amia"), out / "table6-defense-deltas.png")]
    return [p for p in made if p is not None]
