"""The tables of ``python -m benchmarks.adra``: rates that count captures, the nulls' rows,
the captures that carry information, the θ spread, and several seeds' files joined (``--merge``)."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

from benchmarks.common import t_interval, table
from fednas import stats


def _mean(values: list[float]) -> str:
    m, lo, hi = t_interval(values) if values else (math.nan, math.nan, math.nan)
    return f"{m:.1f} [{lo:.1f}, {hi:.1f}]" if math.isfinite(lo) else f"{m:.1f}"



def spread_lines(rows: list[dict[str, Any]]) -> list[str]:
    """One line per P whose attack measured the spread (θ drawn): means over the seeds; one
    more per local step of a K-step round."""
    out = []
    for r in rows:
        if s := r.get("spread"):
            mean = lambda k, ss=s: sum(x[k] for x in ss) / len(ss)  # noqa: E731
            out.append(f"P={r['nodes']}: Δα's unit direction moves {mean('ratio'):.2f}x as far across "
                       f"{s[0]['draws']} θ draws as across {s[0]['images']} image sets; the nearest set under another "
                       "draw is the same "
                       f"set {100 * mean('retrieval'):.1f} % of the time (chance {100 * mean('chance'):.1f} %), "
                       f"{len(s)} seed(s)")
            for k in range(min(len(x.get("per-step", [])) for x in s)):
                step = [x["per-step"][k] for x in s]
                out.append(f"  step {k + 1} alone (the other steps' images known): ratio "
                           f"{sum(t['ratio'] for t in step) / len(step):.2f}, the same image "
                           f"{100 * sum(t['retrieval'] for t in step) / len(step):.1f} % of the time")
    return out


def seed_spread_lines(rows: list[dict[str, Any]]) -> list[str]:
    """``--spread-only``: one line per P and seed, and per local step of a K-step round (their
    means follow from ``spread_lines``)."""
    out = []
    for r in rows:
        for seed, s, wall in zip(r["seed"], r["spread"], r["wall"]):
            out.append(f"P={r['nodes']} seed {seed}: ratio {s['ratio']:.3f}, retrieval {100 * s['retrieval']:.2f} % "
                       f"(chance {100 * s['chance']:.2f} %), {s['images']} sets x {s['draws']} draws, {wall:.0f} s"
                       f"{_curve(s)}")
            out += [f"  step {k + 1} alone: ratio {t['ratio']:.3f}, retrieval {100 * t['retrieval']:.2f} %{_curve(t)}"
                    for k, t in enumerate(s.get("per-step", []))]
    return out


def _curve(spread: dict[str, Any]) -> str:
    """The retrieval among 2, 4, ... candidates, each a draw's or its mean over the other
    draws (older results have neither)."""
    out = ""
    for key, words in (("retrieval-among", "among"), ("retrieval-mean-among", "against the mean over draws")):
        if among := spread.get(key):
            out += f"; {words} {', '.join(among)}: {', '.join(f'{100 * v:.0f}' for v in among.values())} %"
    return out


def merge_seeds(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of several seeds as one row per (P, solver), their lists joined in seed order."""
    out: dict[tuple[int, str], dict[str, Any]] = {}
    for r in rows:
        key = (r["nodes"], r["solver"])
        if key not in out:
            out[key] = {k: list(v) if isinstance(v, list) else v for k, v in r.items()}
        else:
            for k, v in r.items():
                if isinstance(v, list):
                    out[key].setdefault(k, []).extend(v)
    return list(out.values())



# what may differ between the files --merge joins (everything else must match); the rival
# figure is the dataset's, not a setting, and older files lack it
MERGE_FREE = frozenset({"seed", "seeds", "results", "budget", "threads", "merge", "nearest-other-psnr"})



def load_merged(paths: list[Path]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the common args, the rows as one run over all seeds) of benchmark result files."""
    loaded = []
    for path in paths:
        try:
            data = json.loads(path.read_text())
            loaded.append((path, data["args"], data["rows"]))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise SystemExit(f"--merge: {path} is not a benchmarks.adra result ({type(err).__name__}: {err})") from err
    first_path, first, _ = loaded[0]
    for path, args, _ in loaded[1:]:
        for key in sorted((set(first) | set(args)) - MERGE_FREE):
            if first.get(key) != args.get(key):
                raise SystemExit(f"--merge: {path} has {key} = {args.get(key)!r}, {first_path} has {first.get(key)!r}")
    seen: dict[str, Path] = {}
    for path, _, rows in loaded:
        for cid in dict.fromkeys(c for r in rows for c in r.get("capture", [])):
            if cid in seen:
                raise SystemExit(f"--merge: capture {cid} is in both {seen[cid]} and {path}")
            seen[cid] = path
    return first, merge_seeds([r for _, _, rows in loaded for r in rows])



def _medians(row: dict[str, Any]) -> str:
    """Median match of the reconstructions and of the true samples (older rows have neither)."""
    # a refused capture has none (NaN; null once written to JSON)
    got = [v for v in row.get("match", []) if v is not None and math.isfinite(v)]
    truth = [v for v in row.get("truth-match", []) if v is not None and math.isfinite(v)]
    return f"{statistics.median(got):.2g} / {statistics.median(truth):.2g}" if got and truth else "–"



def _ratio(reference: list[float], this: list[float]) -> float:
    return (sum(reference) / len(reference)) / (sum(this) / len(this))



def _rate(flags: list[bool], clusters: list[str] | None = None) -> str:
    """k/n and the 95 % interval that counts captures (``fednas.stats.cluster_rate``)."""
    if not flags:
        return "–"
    p, lo, hi, _ = stats.cluster_rate(flags, clusters if clusters and len(clusters) == len(flags) else None)
    return f"{sum(flags)}/{len(flags)} [{100 * lo:.0f}, {100 * hi:.0f}] %"



def _trained(row: dict[str, Any]) -> str:
    """Mean seconds of the inverse's pairs and fit over the rounds it was trained for."""
    t = [v for v in row.get("train", []) if v]
    return f"{sum(t) / len(t):.0f} (n = {len(t)})" if t else "–"



def informative(row: dict[str, Any]) -> set[str]:
    """The captures of ``row`` that carry information: those the attack did not refuse (a
    refused capture has no match: Δα was weight decay alone, the sample's loss gradient 0)."""
    ids = list(dict.fromkeys(row.get("capture", [])))
    return {c for c, m in zip(ids, row.get("match", [])) if m is not None and math.isfinite(m)}



def _informative_rate(r: dict[str, Any], keep: set[str] | None) -> str:
    """identified-dataset over the captures that carry information (the attack row's, for a null)."""
    c = r.get("capture")
    if not c or keep is None or len(c) != len(r["identified-dataset"]):
        return "–"
    pairs = [(f, cid) for f, cid in zip(r["identified-dataset"], c) if cid in keep]
    return _rate([f for f, _ in pairs], [cid for _, cid in pairs]) if pairs else "–"



def report(rows: list[dict[str, Any]], reference: str) -> str:
    ref = {r["nodes"]: r for r in rows if r["solver"] == reference}
    first = {}  # the first attack row of each P: its captures are the nulls' captures
    for r in rows:
        if not r["solver"].startswith("null") and r.get("match"):
            first.setdefault(r["nodes"], informative(r))
    lines = []
    for r in rows:
        base = ref.get(r["nodes"])
        null = r["solver"].startswith("null")
        keep = first.get(r["nodes"]) if null else (informative(r) if r.get("match") else None)
        # ratio of the mean seconds per capture (the two may have attacked different counts)
        ratio = (f"{_ratio(base['wall'], r['wall']):.2f}x / {_ratio(base['cpu'], r['cpu']):.2f}x"
                 if base is not None and not null and r.get("wall") else "–")
        c = r.get("capture")
        lines.append([r["nodes"], r["solver"], _theta(r), len(set(c)) if c else len(r.get("wall", [])),
                      _rate(r["identified-dataset"], c), _informative_rate(r, keep), _rate(r["identified"], c),
                      _rate(r["success"], c) if "success" in r else "–", _rate(r["label"], c),
                      _mean(r["psnr"]) if r["psnr"] else "–", "–" if null else _mean(r["wall"]),
                      "–" if null else _mean(r["cpu"]), _trained(r), ratio, "–" if null else _medians(r)])
    return table(lines, ["P", "solver", "θ known to the attacker", "captures", "identified dataset [95]",
                         "of those with information [95]", "identified D^α [95]", "success (SR) [95]",
                         "label correct [95]", "PSNR dB [t95]",
                         "wall s/capture [t95]", "CPU s/capture [t95]", "inverse training s/round",
                         f"{reference} s / this s (wall / CPU)", "match / at truth (medians)"])



def _theta(row: dict[str, Any]) -> str:
    """What the attacker knew of θ, over the row's attacked captures (older rows do not say)."""
    seen = sorted({t for t in row.get("theta", []) if t != "–"})
    return ", ".join(seen) or "–"
