"""Privacy accounting: ε at a stated δ for compositions of (subsampled) Gaussian mechanisms.

Two accountants, by name, both reported side by side (``epsilons``):

* ``rdp``: Rényi DP of the Poisson-subsampled Gaussian (Mironov et al. 2019, Opacus's
  ``RDPAccountant``), converted to (ε, δ) with the improved bound of Balle et al. 2020;
  Opacus's orders plus a few larger ones. An upper bound, loose for few steps (one DP-SGD
  step at z = 1, q = 1/243: 0.80 where the exact ε is 0.075).
* ``prv``: the tight one. Without subsampling (every event q = 1, the update mod) the
  composition of T Gaussians of multiplier z is one Gaussian mechanism with μ = √(Σ T/z²),
  whose ε(δ) has a closed form (Balle & Wang 2018), solved here exactly; with subsampling,
  the privacy random variable accountant (Gopi et al. 2021, Opacus's ``PRVAccountant``),
  numerically tight to ``eps_error`` = 0.01.

A :class:`Ledger` is a client's history of Gaussian events (z, q, steps); it serialises to
JSON so that a client can keep it in Flower's ``context.state`` between rounds. Events of
the same (z, q) are merged before accounting (T steps then S steps is T + S steps: exact).
Adjacency: add/remove one unit (an example for DP-SGD; for the update mechanism the
sensitivity is folded into z, see ``clients/dp_mods.py``).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.optimize import brentq
from scipy.special import log_ndtr, ndtr

from fednas.privacy import check_delta
from fednas.registry import ACCOUNTANTS

# Opacus's RDPAccountant.DEFAULT_ALPHAS (a test checks they agree), then a few larger orders. Opacus is
# imported where it accounts, not here: it pulls in torch.distributed (~2 s), and every ClientApp
# process imports this module through the DP mods
OPACUS_ORDERS: tuple[float, ...] = tuple([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)))
RDP_ORDERS: tuple[float, ...] = OPACUS_ORDERS + (80.0, 128.0, 256.0, 512.0, 1024.0)


@dataclass(frozen=True)
class GaussianEvent:
    """``steps`` releases of a Gaussian mechanism with noise multiplier z (std/sensitivity)
    on a Poisson sample of rate q (q = 1: no subsampling)."""

    noise_multiplier: float
    sample_rate: float
    steps: int

    def __post_init__(self) -> None:
        if not (self.noise_multiplier >= 0 and math.isfinite(self.noise_multiplier)):
            raise ValueError(f"noise_multiplier must be a finite number >= 0, got {self.noise_multiplier!r}")
        if not 0.0 < self.sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be in (0, 1], got {self.sample_rate!r}")
        if int(self.steps) != self.steps or self.steps < 0:
            raise ValueError(f"steps must be an integer >= 0, got {self.steps!r}")


def rdp_epsilon(events: list[GaussianEvent], delta: float) -> float:
    """ε by Opacus's RDP accountant (``ACCOUNTANTS["rdp"]``; an upper bound)."""
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    acc.history = [(e.noise_multiplier, e.sample_rate, e.steps) for e in events]
    return float(acc.get_epsilon(delta, alphas=list(RDP_ORDERS)))


def gaussian_epsilon(mu: float, delta: float) -> float:
    """Exact ε at ``delta`` of a Gaussian mechanism with μ = sensitivity/σ (μ-GDP).

    Its privacy profile is δ(ε) = Φ(μ/2 − ε/μ) − e^ε Φ(−μ/2 − ε/μ) (Balle & Wang 2018,
    Theorem 8), decreasing in ε; solved by bisection in log space (no overflow for large ε).
    """
    check_delta(delta)
    if mu <= 0:
        return 0.0

    def profile(eps: float) -> float:
        return float(ndtr(mu / 2 - eps / mu) - np.exp(eps + log_ndtr(-mu / 2 - eps / mu)))

    if profile(0.0) <= delta:
        return 0.0
    high = max(1.0, mu * mu)
    while profile(high) > delta:
        high *= 2
    return float(brentq(lambda e: profile(e) - delta, 0.0, high, xtol=1e-12, rtol=1e-12))


def prv_epsilon(events: list[GaussianEvent], delta: float) -> float:
    """ε by the tight accountant (``ACCOUNTANTS["prv"]``): the Gaussian's closed form, else Opacus's PRV."""
    if all(e.sample_rate == 1.0 for e in events):  # one Gaussian: the closed form, exactly
        return gaussian_epsilon(math.sqrt(sum(e.steps / e.noise_multiplier**2 for e in events)), delta)
    from opacus.accountants import PRVAccountant

    acc = PRVAccountant()
    acc.history = [(e.noise_multiplier, e.sample_rate, e.steps) for e in events]
    with warnings.catch_warnings(), np.errstate(all="ignore"):  # its grid's log(0) and overflows are handled
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(acc.get_epsilon(delta, eps_error=0.01))


def merged(events: Iterable[GaussianEvent]) -> list[GaussianEvent]:
    """Events of the same (z, q) as one with their steps summed (composition is exact)."""
    steps: dict[tuple[float, float], int] = {}
    for e in events:
        key = (e.noise_multiplier, e.sample_rate)
        steps[key] = steps.get(key, 0) + int(e.steps)
    return [GaussianEvent(z, q, t) for (z, q), t in steps.items()]


def epsilon(events: Iterable[GaussianEvent], delta: float, accountant: str = "rdp") -> float:
    """ε at ``delta`` of the composition of ``events``.

    0 for no event (nothing released), ∞ when any event has z = 0 (clipping alone).
    """
    check_delta(delta)
    compute = ACCOUNTANTS.get(accountant)  # a clear error naming the accountants on an unknown one
    events = [e for e in merged(events) if e.steps > 0]
    if not events:
        return 0.0
    if any(e.noise_multiplier == 0 for e in events):
        return math.inf
    return compute(events, delta)


def epsilons(events: Iterable[GaussianEvent], delta: float) -> dict[str, float]:
    """ε of ``events`` by every accountant, ``{"rdp": ..., "prv": ...}``."""
    events = list(events)
    return {name: epsilon(events, delta, name) for name in ACCOUNTANTS}


@dataclass
class Ledger:
    """One client's history of private releases, by mechanism name."""

    events: dict[str, list[GaussianEvent]]

    @classmethod
    def empty(cls) -> Ledger:
        return cls({})

    def add(self, mechanism: str, event: GaussianEvent) -> None:
        self.events.setdefault(mechanism, []).append(event)

    def epsilon(self, mechanism: str, delta: float, accountant: str = "rdp") -> float:
        """Cumulative ε of one mechanism's releases so far."""
        return epsilon(self.events.get(mechanism, []), delta, accountant)

    def epsilons(self, mechanism: str, delta: float) -> dict[str, float]:
        """Cumulative ε of one mechanism by every accountant."""
        return epsilons(self.events.get(mechanism, []), delta)

    def to_json(self) -> str:
        return json.dumps({m: [asdict(e) for e in evs] for m, evs in self.events.items()})

    @classmethod
    def from_json(cls, text: str) -> Ledger:
        data = json.loads(text) if text else {}
        return cls({m: [GaussianEvent(**e) for e in evs] for m, evs in data.items()})


def dp_summary(dp: Any) -> dict[str, Any]:
    """What a run's DP settings (the ``dp`` config section) protect, for summary.json."""
    mechanisms: dict[str, Any] = {}
    if dp.dp_sgd:
        mechanisms["dp-sgd"] = {"unit": "one example of D^alpha (add/remove)",
                                "sampling": "Poisson, q = alpha-batch-size / |D^alpha|",
                                "clip": dp.dp_sgd_clip, "noise-multiplier": dp.dp_sgd_noise_multiplier,
                                "batchnorm": dp.dp_sgd_batchnorm,
                                "covers": "every array sent (theta and statistics are post-processing as far as D^alpha is concerned)"}
    if dp.dp_update:
        mechanisms["dp-update"] = {"unit": "one client's dataset (any two neighbours: sensitivity 2C)",
                                   "sampling": "none: every round the client takes part counts",
                                   "clip": dp.dp_update_clip, "noise-std": dp.dp_update_noise_std,
                                   "covers-theta": bool(dp.dp_update_theta or dp.dp_server),
                                   "covers": "every array sent" if (dp.dp_update_theta or dp.dp_server)
                                   else "alpha only (with shared weights theta is sent without noise)"}
    other = [name for name in ACCOUNTANTS if name != dp.dp_accountant]
    noise = ("os-entropy: not reproducible" if dp.dp_secure_rng else
             "seeded from (seed, round, partition) (dp-secure-rng = false): reproducible, and removable by "
             "anyone who knows the seed")
    return {"delta": dp.dp_delta, "accountant": ACCOUNTANTS.entry(dp.dp_accountant).doc,
            "also-reported": {name: ACCOUNTANTS.entry(name).doc for name in other},
            "noise": noise, "secure-rng": bool(dp.dp_secure_rng), "mechanisms": mechanisms}
