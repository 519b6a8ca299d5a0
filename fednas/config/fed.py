"""The federation's server side: rounds, the strategy, sampling, the reply guard (``cfg.fed``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fednas.config.schema import Key, in_unit, keys_of, non_negative, positive

# Names of the robust strategies (server.robust.ROBUST holds them).
ROBUST_STRATEGIES = ("fedmedian", "fedtrimmedavg", "krum", "multikrum", "bulyan")

_k = keys_of("fed")

# fmt: off
KEYS: tuple[Key, ...] = (
    _k("num-server-rounds", 3,
       "Federated rounds.",
       check=positive, rule="> 0"),
    _k("strategy", "fedavg",
       "Server strategy (Flower built-ins). Robust to a minority of poisoned replies: fedmedian, fedtrimmedavg "
       "(trimmed-fraction), krum, multikrum (krum-select), bulyan (needs 4 byzantine-clients + 3 replies); "
       "byzantine-clients sets f for the last three.",
       choices=("fedavg", "fedavgm", "fedprox") + ROBUST_STRATEGIES),
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
       "Server-side bound on a reply's update: the L2 norm over every array of (reply - what the server sent); a "
       "reply above it is left out of the aggregate (0: no bound).",
       check=non_negative, rule=">= 0"),
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
    """FedProx's mu is sent by the fedprox strategy only."""
    if flat["proximal-mu"] > 0 and flat["strategy"] != "fedprox":
        return [f"'proximal-mu' = {flat['proximal-mu']} is sent by the fedprox strategy only; "
                f"set 'strategy' = \"fedprox\" (now {flat['strategy']!r}) or 'proximal-mu' = 0"]
    return []
