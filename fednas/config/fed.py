"""The federation's server side: rounds, the strategy, sampling, the reply guard (``cfg.fed``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fednas.config.schema import Key, in_unit, keys_of, non_negative, positive
from fednas.registry import STRATEGIES

# The Byzantine-robust ones among the registered strategies (server.robust gives their settings).
ROBUST_STRATEGIES = STRATEGIES.names(robust=True)

_k = keys_of("fed")

# fmt: off
KEYS: tuple[Key, ...] = (
    _k("num-server-rounds", 3,
       "Federated rounds.",
       check=positive, rule="> 0"),
    _k("strategy", "fedavg",
       "Server strategy, by name (fednas.registry.STRATEGIES; Flower built-ins). Robust to a minority of "
       "poisoned replies: fedmedian, fedtrimmedavg (trimmed-fraction), krum, multikrum (krum-select), bulyan "
       "(needs 4 byzantine-clients + 3 replies); byzantine-clients sets f for the last three.",
       choices=STRATEGIES),
    _k("proximal-mu", 0.0,
       "FedProx's mu (strategy = fedprox, which sends it to the clients as proximal-mu): clients add mu/2 "
       "||theta - theta_global||^2 to theta's loss (0: FedAvg).",
       check=non_negative, rule=">= 0"),
    _k("reply", "delta",
       "What a client's train reply carries: delta (the round's update, alpha_t2 - alpha_t1 and theta's when "
       "shared; the server adds the weighted mean update to what it sent) or weights (alpha_t2 and theta "
       "themselves). The same global model up to float rounding.",
       choices=("delta", "weights")),
    _k("fraction-train", 1.0,
       "Share of connected clients sampled for training each round.",
       check=in_unit, rule="in (0, 1]"),
    _k("fraction-evaluate", 1.0,
       "Share of clients sampled for federated evaluation (0: none).",
       check=lambda x: 0.0 <= x <= 1.0, rule="in [0, 1]"),
    _k("min-train-clients", 2,
       "Minimum clients per training round (capped at the federation's size).",
       check=positive, rule="> 0"),
    _k("min-evaluate-clients", 2,
       "Minimum clients per evaluation round (capped at the federation's size).",
       check=non_negative, rule=">= 0"),
    _k("round-timeout", 3600.0,
       "Seconds the server waits for replies in a round.",
       check=positive, rule="> 0"),
    _k("central-eval", True,
       "Evaluate the global model on the server's test pool after every round."),
    _k("max-update-norm", 0.0,
       "Absolute bound on a reply's update: the L2 norm over every floating-point array of the update (the reply "
       "itself with reply = delta, reply - what the server sent otherwise); a reply above it is rejected or "
       "clipped as update-guard says (0: no bound).",
       check=non_negative, rule=">= 0"),
    _k("update-guard", "reject",
       "What the server does to a reply whose update is too large: above update-guard-k x the round's "
       "lower-median update norm, per group (alpha, theta), or above max-update-norm. reject: left out of the "
       "aggregate; clip: scaled down to the limit and aggregated; off: no size check (then max-update-norm must "
       "be 0). Counted in rounds.csv (rejected, clipped).",
       choices=("reject", "clip", "off")),
    _k("update-guard-k", 10.0,
       "The update guard's relative limit: k x the round's lower-median norm of the alpha updates and of the "
       "theta updates (the lower median: with 2 clients, the smaller norm).",
       check=lambda x: x >= 1.0, rule=">= 1"),
    _k("trimmed-fraction", 0.2,
       "fedtrimmedavg: share cut off each tail, coordinate-wise, before averaging (Flower's beta).",
       check=lambda x: 0.0 <= x < 0.5, rule="in [0, 0.5)"),
    _k("byzantine-clients", 0,
       "krum, multikrum, bulyan: f, the number of poisoned clients to tolerate per round.",
       check=non_negative, rule=">= 0"),
    _k("krum-select", 0,
       "multikrum: replies kept and averaged (0: the sampled clients minus byzantine-clients).",
       check=non_negative, rule=">= 0"),
)
# fmt: on


def fed_checks(flat: Mapping[str, Any]) -> list[str]:
    """FedProx's mu is sent by the fedprox strategy only; an absolute size limit needs the size check on."""
    errors = []
    if flat["proximal-mu"] > 0 and flat["strategy"] != "fedprox":
        errors.append(f"'proximal-mu' = {flat['proximal-mu']} is sent by the fedprox strategy only; "
                      f"set 'strategy' = \"fedprox\" (now {flat['strategy']!r}) or 'proximal-mu' = 0")
    if flat["update-guard"] == "off" and flat["max-update-norm"] > 0:
        errors.append(f"'max-update-norm' = {flat['max-update-norm']} bounds the update's size, which "
                      "'update-guard' = \"off\" does not check: set 'update-guard' to \"reject\" or \"clip\", "
                      "or 'max-update-norm' = 0")
    return errors
