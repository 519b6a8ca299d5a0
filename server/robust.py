"""The settings of Flower's Byzantine-robust aggregators, from the config.

Their names and classes are registered in ``fednas.registry.STRATEGIES`` (``robust=True``,
``args=`` the functions below).

None of them is written here: FedMedian (coordinate-wise median), FedTrimmedAvg
(coordinate-wise trimmed mean, ``trimmed-fraction`` cut off each tail), Krum and MultiKrum
(the reply, or the ``krum-select`` replies, closest to their neighbours, tolerating
``byzantine-clients``) and Bulyan (MultiKrum selection then a trimmed median, which needs
at least 4·f + 3 replies) come from ``flwr.serverapp.strategy``. They bound what a
minority of well-formed but poisoned replies can do; malformed ones never reach them
(``server.guard``).
"""

from __future__ import annotations

from typing import Any


def trimmed_args(fed: Any, sampled: int) -> dict[str, Any]:
    """FedTrimmedAvg: the share cut off each tail."""
    return {"beta": fed.trimmed_fraction}


def krum_args(fed: Any, sampled: int) -> dict[str, Any]:
    """Krum and Bulyan: f, the poisoned clients tolerated."""
    return {"num_malicious_nodes": fed.byzantine_clients}


def multikrum_args(fed: Any, sampled: int) -> dict[str, Any]:
    """MultiKrum: f, and the replies kept (krum-select, else the sampled clients minus f)."""
    return {"num_malicious_nodes": fed.byzantine_clients,
            "num_nodes_to_select": fed.krum_select or max(sampled - fed.byzantine_clients, 1)}
