"""The reply guard's bound on the size of an update: reject or clip what is far above the round's norm.

A reply can be well formed, finite and still take the model over: FedAvg averages updates,
so one update 100 times the others' (or α = 1e30) decides the average alone, and with it the
argmax of every edge. The bound is one mechanism with two limits:

- relative (``update-guard-k`` = k): per group of arrays, α (names matching
  ``alpha-pattern``) and θ (the rest), the L2 norm of a reply's update must not exceed k ×
  the round's *reference* norm of that group;
- absolute (``max-update-norm``, 0: none): the L2 norm of the whole update.

and one action (``update-guard``): ``reject`` leaves the reply out of the aggregate (as the
other checks do), ``clip`` scales each group of its update that is too large down to its
limit (then the whole update to ``max-update-norm``) and aggregates it, ``off`` checks no
size at all. Norms are over the floating-point arrays (integer counters are not a direction
of the model) of the update: the reply itself with delta replies, reply − sent otherwise.

Why per group: θ has thousands of entries and α a few dozen, so a reply whose α update alone
is ×100 changes the norm of the whole update by little while it decides the architecture.

Why the reference is the *lower* median of the round's group norms (over the replies that
passed every other check; for an even count the smaller of the two middle values): it is
a norm an honest client sent whenever at most half of the replies (rounded down) are
oversized, and an oversized reply cannot raise the bar it is judged against. With two
clients the plain median is the mean of the two, so a reply of norm N sets its own bar at
k·N/2 and passes for any k ≥ 2; the lower median is the honest one. A norm carried over from
earlier rounds (e.g. the previous aggregate update) is no safer: a clipped oversized reply
moves the aggregate by up to k × the reference, and a reference that follows the aggregate
could then grow k-fold every round. What the lower median cannot do: with two clients one
reply far *below* the other (an update of zero) becomes the reference and the other is
clipped or rejected; that stalls a round, it does not steer the model, and no statistic of
two replies can tell which of the two is honest.

With ``clip`` the aggregate is a convex combination (FedAvg's weights) of updates each at
most k × the reference per group, so the aggregate update is bounded the same way whatever
weights the clients claim.

Plain functions over ``{name: ndarray}``; the Flower side is :mod:`server.guard`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

GUARD_MODES = ("reject", "clip", "off")
ALPHA, THETA = "alpha", "theta"

Arrays = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class UpdateBound:
    """The guard's size limits and what happens to a reply beyond them (see the module doc).

    Parameters
    ----------
    mode : str
        ``reject``, ``clip`` or ``off``.
    k : float
        Relative limit: k × the round's reference norm, per group (>= 1).
    max_norm : float
        Absolute limit on the whole update's norm (0: none).
    alpha_pattern : str
        Regular expression (``re.search``) naming the α arrays; the rest is θ.
    """

    mode: str = "reject"
    k: float = 10.0
    max_norm: float = 0.0
    alpha_pattern: str = "^alpha"

    def __post_init__(self) -> None:
        if self.mode not in GUARD_MODES:
            raise ValueError(f"update guard mode {self.mode!r}: choose one of {', '.join(GUARD_MODES)}")
        if not self.k >= 1.0:
            raise ValueError(f"update-guard-k must be >= 1, got {self.k}")
        if not self.max_norm >= 0:
            raise ValueError(f"max_update_norm must be >= 0, got {self.max_norm}")
        if self.mode == "off" and self.max_norm > 0:
            raise ValueError("max-update-norm bounds the update's size, which update-guard = 'off' does not check")

    @property
    def active(self) -> bool:
        return self.mode != "off"

    def group(self, name: str) -> str:
        """The group an array belongs to (``alpha`` or ``theta``)."""
        return ALPHA if re.search(self.alpha_pattern, name) else THETA

    def describe(self) -> str:
        if not self.active:
            return "no bound on the update's size"
        limits = [f"{self.k:g} x the round's lower-median norm per group (alpha, theta)"]
        if self.max_norm:
            limits.append(f"update norm <= {self.max_norm:g}")
        return f"{self.mode} beyond " + " and ".join(limits)


@dataclass(frozen=True)
class Sizing:
    """One reply's verdict on its size: rejected (``reason``), or accepted with each group in
    ``scales`` multiplied by its factor (< 1; ``note`` says why), or accepted as it is."""

    reason: str | None = None
    scales: dict[str, float] = field(default_factory=dict)
    note: str = ""

    @property
    def clipped(self) -> bool:
        return bool(self.scales)


def is_float(a: np.ndarray) -> bool:
    return np.issubdtype(np.asarray(a).dtype, np.floating)


def update_of(reply: Arrays, sent: Arrays, delta: bool) -> dict[str, np.ndarray]:
    """The update of every floating-point array in float64: the reply (delta) or reply − sent."""
    out = {}
    for name, ref in sent.items():
        if is_float(ref):
            value = np.asarray(reply[name], dtype=np.float64)
            out[name] = value if delta else value - np.asarray(ref, dtype=np.float64)
    return out


def group_norms(update: Arrays, bound: UpdateBound) -> dict[str, float]:
    """L2 norm of the update per group (only groups that have an array)."""
    squares: dict[str, float] = {}
    for name, value in update.items():
        g = bound.group(name)
        squares[g] = squares.get(g, 0.0) + float(np.square(value).sum())
    return {g: math.sqrt(s) for g, s in squares.items()}


def lower_median(values: Sequence[float]) -> float:
    """The median of an odd count; the smaller middle value of an even one."""
    ordered = sorted(values)
    return ordered[(len(ordered) - 1) // 2]


def reference_norms(norms: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Per group, the lower median of the replies' norms."""
    groups = sorted({g for n in norms for g in n})
    return {g: lower_median([n[g] for n in norms if g in n]) for g in groups}


def size_verdicts(norms: Sequence[Mapping[str, float]], bound: UpdateBound) -> list[Sizing]:
    """Each reply's sizing, given every checked reply's group norms (the round's reference
    is taken over them all)."""
    if not bound.active or not norms:
        return [Sizing() for _ in norms]
    refs = reference_norms(norms)
    return [_size_one(n, refs, bound) for n in norms]


def _size_one(norms: Mapping[str, float], refs: Mapping[str, float], bound: UpdateBound) -> Sizing:
    total = math.sqrt(sum(v * v for v in norms.values()))
    over = {g: bound.k * refs[g] for g, v in norms.items() if v > bound.k * refs[g]}
    above_max = bound.max_norm > 0 and total > bound.max_norm
    if bound.mode == "reject":
        if above_max:
            return Sizing(reason=f"update norm {total:.3g} exceeds max-update-norm = {bound.max_norm:g}")
        if over:
            g = max(over, key=lambda g: norms[g] / max(over[g], 1e-300))
            return Sizing(reason=f"{g} update norm {norms[g]:.3g} exceeds update-guard-k x the round's reference "
                                 f"= {bound.k:g} x {refs[g]:.3g}")
        return Sizing()
    scales = {g: limit / norms[g] for g, limit in over.items()}
    notes = [f"{g} update norm {norms[g]:.3g} clipped to {limit:.3g} (update-guard-k x the round's reference "
             f"= {bound.k:g} x {refs[g]:.3g})" for g, limit in over.items()]
    clipped_total = math.sqrt(sum((v * scales.get(g, 1.0)) ** 2 for g, v in norms.items()))
    if bound.max_norm > 0 and clipped_total > bound.max_norm:
        factor = bound.max_norm / clipped_total
        scales = {g: scales.get(g, 1.0) * factor for g in norms}
        notes.append(f"update norm {clipped_total:.3g} clipped to max-update-norm = {bound.max_norm:g}")
    return Sizing(scales=scales, note="; ".join(notes))


def clipped_arrays(reply: Arrays, sent: Arrays, delta: bool, scales: Mapping[str, float],
                   bound: UpdateBound) -> dict[str, np.ndarray]:
    """The reply with each group's update multiplied by its scale (in the reply's own form
    and dtypes; integer arrays and groups without a scale unchanged)."""
    out = {}
    for name, value in reply.items():
        s = scales.get(bound.group(name))
        ref = sent.get(name)
        if s is None or ref is None or not is_float(ref):
            out[name] = np.asarray(value)
            continue
        v = np.asarray(value, dtype=np.float64)
        scaled = v * s if delta else np.asarray(ref, np.float64) + (v - np.asarray(ref, np.float64)) * s
        out[name] = scaled.astype(np.asarray(value).dtype)
    return out
