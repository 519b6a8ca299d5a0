"""Flower's Byzantine-robust aggregators, by name, with their settings from the config.

None of them is written here: FedMedian (coordinate-wise median), FedTrimmedAvg
(coordinate-wise trimmed mean, ``trimmed-fraction`` cut off each tail), Krum and MultiKrum
(the reply, or the ``krum-select`` replies, closest to their neighbours, tolerating
``byzantine-clients``) and Bulyan (MultiKrum selection then a trimmed median, which needs
at least 4·f + 3 replies) come from ``flwr.serverapp.strategy``. They bound what a
minority of well-formed but poisoned replies can do; malformed ones never reach them
(``server.guard``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flwr.serverapp.strategy import Bulyan, FedAvg, FedMedian, FedTrimmedAvg, Krum, MultiKrum

from fednas.config import ROBUST_STRATEGIES

ROBUST: dict[str, type[FedAvg]] = {
    "fedmedian": FedMedian, "fedtrimmedavg": FedTrimmedAvg, "krum": Krum, "multikrum": MultiKrum, "bulyan": Bulyan,
}
assert tuple(ROBUST) == ROBUST_STRATEGIES, "fednas.config.ROBUST_STRATEGIES and server.robust disagree"


def _krum_select(fed: Any, sampled: int) -> int:
    return fed.krum_select or max(sampled - fed.byzantine_clients, 1)


# name -> constructor keywords beyond FedAvg's, from the fed config and the clients sampled per round
ROBUST_ARGS: dict[str, Callable[[Any, int], dict[str, Any]]] = {
    "fedtrimmedavg": lambda fed, sampled: {"beta": fed.trimmed_fraction},
    "krum": lambda fed, sampled: {"num_malicious_nodes": fed.byzantine_clients},
    "multikrum": lambda fed, sampled: {"num_malicious_nodes": fed.byzantine_clients,
                                       "num_nodes_to_select": _krum_select(fed, sampled)},
    "bulyan": lambda fed, sampled: {"num_malicious_nodes": fed.byzantine_clients},
}
