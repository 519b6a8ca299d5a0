"""The leakage report's differential-privacy section: each ε, what it covers, where the noise came from.

Read from the ``dp-*`` reply metrics the eavesdropper stored with each capture (the DP mods
write them; docs/privacy.md): per mechanism the largest cumulative ε any captured client
reached, by the configured accountant and by both ``rdp`` (an upper bound) and ``prv``
(tight), which arrays it covers, and whether the noise was seeded (reproducible, and
removable by anyone who knows the seed) or drawn from OS entropy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

MECHANISMS = {"dp-sgd": "DP-SGD on every alpha step (unit: one example of D^alpha)",
              "dp-update": "clipped, noised update (unit: the client's whole dataset)"}


def _max(rows: Sequence[Mapping[str, Any]], key: str) -> float | None:
    """The largest value of ``key``; a stored null is ∞ (JSON has no infinity: the capture wrote null)."""
    values = [math.inf if r[key] is None else float(r[key]) for r in rows if key in r and r[key] != ""]
    return max(values) if values else None


def _eps(value: float | None) -> str:
    if value is None:
        return "–"
    return "∞" if not math.isfinite(value) else f"{value:.4g}"


def covers(rows: Sequence[Mapping[str, Any]], mechanism: str) -> str:
    """Which arrays a mechanism's ε covers, in words."""
    flags = {int(float(r[f"{mechanism}-covers-all"])) for r in rows if r.get(f"{mechanism}-covers-all") not in (None, "")}
    if flags == {1}:
        return "every array sent"
    if flags == {0}:
        return "alpha only (theta sent without noise)"
    return "every array sent for some clients, alpha only for others" if flags else "unknown"


def noise_source(rows: Sequence[Mapping[str, Any]]) -> str:
    flags = {int(float(r["dp-secure-rng"])) for r in rows if r.get("dp-secure-rng") not in (None, "")}
    if flags == {1}:
        return "OS entropy (dp-secure-rng = true)"
    if flags == {0}:
        return "seeded (dp-secure-rng = false): reproducible, and removable by anyone who knows the seed"
    return "mixed" if flags else "unknown"


def dp_section(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Markdown lines of the DP section (none when no captured reply was privatised)."""
    present = [m for m in MECHANISMS if any(f"{m}-epsilon" in r for r in rows)]
    if not present:
        return []
    delta = _max(rows, "dp-delta")
    lines = ["## Differential privacy\n",
             f"Largest cumulative ε of any captured client at δ = {delta:g}; noise: {noise_source(rows)}.\n",
             "| mechanism | ε (configured accountant) | ε rdp (upper bound) | ε prv (tight) | covers |",
             "|---|---|---|---|---|"]
    for m in present:
        lines.append(f"| {MECHANISMS[m]} | {_eps(_max(rows, f'{m}-epsilon'))} | {_eps(_max(rows, f'{m}-epsilon-rdp'))} "
                     f"| {_eps(_max(rows, f'{m}-epsilon-prv'))} | {covers(rows, m)} |")
    lines.append(f"| **the reply as a whole** (`dp-epsilon`) | {_eps(_max(rows, 'dp-epsilon'))} | "
                 f"{_eps(_max(rows, 'dp-epsilon-rdp'))} | {_eps(_max(rows, 'dp-epsilon-prv'))} | every array sent |")
    lines += ["", "`dp-epsilon` is the smallest ε among the mechanisms that cover every array the client sends "
              "(∞ when none does): an ε that covers alpha alone says nothing about the theta sent beside it.", ""]
    return lines
