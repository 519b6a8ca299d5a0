"""Strategies by name, node counts capped at the federation's size, and the round book."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import DifferentialPrivacyClientSideFixedClipping, FedAvg, FedAvgM, FedProx, Strategy

log = logging.getLogger(__name__)

STRATEGIES: dict[str, type[FedAvg]] = {"fedavg": FedAvg, "fedavgm": FedAvgM, "fedprox": FedProx}
# Constructor arguments a strategy takes beyond FedAvg's, from the ``fed`` config section.
STRATEGY_OPTIONS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "fedprox": lambda fed: {"proximal_mu": fed.proximal_mu},  # sent to clients as "proximal-mu"
}


def build_strategy(fed: Any, num_nodes: int, dp: Any = None) -> Strategy:
    """The named Flower strategy with minimum node counts that can be met by ``num_nodes``.

    Flower waits for ``min_available_nodes`` before sampling; a minimum above the
    federation's size would wait forever, so every minimum is capped (and said so).
    With ``dp.dp_server`` the strategy is wrapped in Flower's
    ``DifferentialPrivacyClientSideFixedClipping`` (clients clip with the update mod).
    """
    try:
        cls = STRATEGIES[fed.strategy]
    except KeyError:
        raise ValueError(f"unknown strategy {fed.strategy!r}; choose one of: {', '.join(STRATEGIES)}") from None
    min_train = min(fed.min_train_clients, num_nodes)
    min_eval = min(fed.min_evaluate_clients, num_nodes)
    if (min_train, min_eval) != (fed.min_train_clients, fed.min_evaluate_clients):
        log.warning("min-train-clients/min-evaluate-clients capped at the federation's %d nodes", num_nodes)
    strategy = cls(
        fraction_train=fed.fraction_train,
        fraction_evaluate=fed.fraction_evaluate,
        min_train_nodes=min_train,
        min_evaluate_nodes=min_eval,
        min_available_nodes=min(max(min_train, min_eval, 1), num_nodes),
        **STRATEGY_OPTIONS.get(fed.strategy, lambda _: {})(fed),
    )
    if dp is not None and dp.dp_server:
        sampled = max(int(num_nodes * fed.fraction_train), min_train)  # as FedAvg samples
        strategy = DifferentialPrivacyClientSideFixedClipping(
            strategy, dp.dp_server_noise_multiplier, dp.dp_update_clip, sampled)
    return strategy


def dp_round_metrics(replies: Iterable[Message]) -> dict[str, float]:
    """Over this round's replies: max and mean of each client's cumulative ``dp-epsilon``,
    and the max of this round's own ``dp-epsilon-round``."""
    metrics = [m.content.metric_records["metrics"] for m in replies
               if not m.has_error() and "dp-epsilon" in m.content.metric_records.get("metrics", {})]
    if not metrics:
        return {}
    values = [float(r["dp-epsilon"]) for r in metrics]
    return {"dp-epsilon-max": max(values), "dp-epsilon-mean": sum(values) / len(values),
            "dp-epsilon-round-max": max(float(r.get("dp-epsilon-round", math.nan)) for r in metrics)}


def partition_of(msg: Message) -> int | None:
    """The partition-id a client put in its reply (``client`` ConfigRecord), if any."""
    if msg.has_error() or not msg.has_content():
        return None
    record = msg.content.config_records.get("client")
    value = record.get("partition-id") if record is not None else None
    return int(value) if value is not None else None


class RoundBook(Strategy):
    """Outermost wrapper of the server's strategy: counts what each round sent and got back.

    It owns one change: replies are handed on sorted by partition-id (errors last), so
    that FedAvg's floating-point sums, hence the α trajectory, do not depend on the order
    in which clients happened to finish. It also keeps each client's latest cumulative
    ``dp-epsilon`` (``epsilons``) and puts the round's max and mean in ``current`` instead
    of FedAvg's example-weighted average of the ``dp-*`` metrics, which means nothing.
    """

    def __init__(self, strategy: Strategy) -> None:
        self.strategy = strategy
        self.current: dict[str, Any] = {}
        self.epsilons: dict[int, float] = {}

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        messages = list(self.strategy.configure_train(server_round, arrays, config, grid))
        self.current = {"round": server_round, "sampled": len(messages)}
        return messages

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = sorted(replies, key=lambda m: (m.has_error(), partition_of(m) if partition_of(m) is not None else 1 << 62))
        failed = [m for m in replies if m.has_error()]
        for m in failed:
            log.warning("round %d: client node %d failed: %s", server_round, m.metadata.src_node_id, m.error.reason)
        self.current.update({"replied": len(replies) - len(failed),
                             "failed": self.current.get("sampled", len(replies)) - (len(replies) - len(failed))})
        arrays, metrics = self.strategy.aggregate_train(server_round, replies)
        if metrics is not None:
            self.current.update({k: v for k, v in metrics.items()
                                 if not isinstance(v, list) and not k.startswith("dp-")})
        self.current.update(dp_round_metrics(replies))
        for m in replies:
            pid = partition_of(m)
            if pid is not None and "dp-epsilon" in m.content.metric_records.get("metrics", {}):
                self.epsilons[pid] = float(m.content.metric_records["metrics"]["dp-epsilon"])
        return arrays, metrics

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        metrics = self.strategy.aggregate_evaluate(server_round, list(replies))
        if metrics is not None:
            self.current.update({k: v for k, v in metrics.items() if not isinstance(v, list)})
        return metrics

    def summary(self) -> None:
        self.strategy.summary()
