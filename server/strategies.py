"""Strategies by name (``fednas.registry.STRATEGIES``), node counts capped at the federation's size, the round
book."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import DifferentialPrivacyClientSideFixedClipping, Strategy

from fednas.config import sampled_per_round
from fednas.registry import STRATEGIES, resolve
from server.wrapping import StrategyWrapper

log = logging.getLogger(__name__)


def fedprox_args(fed: Any, sampled: int) -> dict[str, Any]:
    """FedProx's mu (sent to the clients as ``proximal-mu``)."""
    return {"proximal_mu": fed.proximal_mu}


def build_strategy(fed: Any, num_nodes: int, dp: Any = None) -> Strategy:
    """The named Flower strategy with minimum node counts that can be met by ``num_nodes``.

    Flower waits for ``min_available_nodes`` before sampling; a minimum above the
    federation's size would wait forever, so every minimum is capped (and said so).
    With ``dp.dp_server`` the strategy is wrapped in Flower's
    ``DifferentialPrivacyClientSideFixedClipping`` (clients clip with the update mod).
    """
    cls = STRATEGIES.get(fed.strategy)  # a clear error naming the strategies on an unknown one
    args = STRATEGIES.info(fed.strategy, "args")  # f(fed, sampled) -> keywords beyond FedAvg's, or None
    min_train = min(fed.min_train_clients, num_nodes)
    min_eval = min(fed.min_evaluate_clients, num_nodes)
    if (min_train, min_eval) != (fed.min_train_clients, fed.min_evaluate_clients):
        log.warning("min-train-clients/min-evaluate-clients capped at the federation's %d nodes", num_nodes)
    sampled = sampled_per_round(fed, num_nodes)
    strategy = cls(
        fraction_train=fed.fraction_train,
        fraction_evaluate=fed.fraction_evaluate,
        min_train_nodes=min_train,
        min_evaluate_nodes=min_eval,
        min_available_nodes=min(max(min_train, min_eval, 1), num_nodes),
        **(resolve(args)(fed, sampled) if args is not None else {}),
    )
    if dp is not None and dp.dp_server:
        strategy = DifferentialPrivacyClientSideFixedClipping(
            strategy, dp.dp_server_noise_multiplier, dp.dp_update_clip, sampled)
    return strategy


def _number(value: Any) -> float | None:
    """A metric as a float; None for what a client should not have sent (a list, text)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def dp_epsilon(msg: Message) -> float | None:
    """The cumulative ``dp-epsilon`` a reply reports, if it is a number."""
    if msg.has_error():
        return None
    return _number(msg.content.metric_records.get("metrics", {}).get("dp-epsilon"))


# a reply's cumulative ε metrics: the whole reply's and each mechanism's (``dp-sgd-``, ``dp-update-``),
# by the configured accountant and by each (``-rdp``, ``-prv``); not this round's alone (``-round``)
CUMULATIVE_EPSILON = re.compile(r"^dp-(?:(?P<mechanism>.+)-)?epsilon(?:-(?P<accountant>rdp|prv))?$")


def dp_epsilons(msg: Message) -> dict[str, float]:
    """The cumulative ε metrics of a reply (``dp-epsilon``, ``dp-epsilon-prv``, ``dp-sgd-epsilon-rdp``, ...)."""
    if msg.has_error():
        return {}
    metrics = msg.content.metric_records.get("metrics", {})
    out = {k: _number(v) for k, v in metrics.items() if CUMULATIVE_EPSILON.match(k)}
    return {k: v for k, v in out.items() if v is not None}


def dp_round_metrics(replies: Iterable[Message]) -> dict[str, float]:
    """Over this round's replies: max and mean of each client's cumulative ``dp-epsilon``,
    the max of this round's own ``dp-epsilon-round``, and the max of every other cumulative
    ε (``<key>-max``: each accountant's, each mechanism's)."""
    replies = [m for m in replies if dp_epsilon(m) is not None]
    if not replies:
        return {}
    metrics = [m.content.metric_records["metrics"] for m in replies]
    values = [float(r["dp-epsilon"]) for r in metrics]
    rounds = [_number(r.get("dp-epsilon-round")) for r in metrics]
    out = {"dp-epsilon-max": max(values), "dp-epsilon-mean": sum(values) / len(values),
           "dp-epsilon-round-max": max(math.nan if v is None else v for v in rounds)}
    others: dict[str, float] = {}
    for msg in replies:
        for key, value in dp_epsilons(msg).items():
            if key != "dp-epsilon":
                others[f"{key}-max"] = max(others.get(f"{key}-max", -math.inf), value)
    return {**out, **dict(sorted(others.items()))}


def partition_of(msg: Message) -> int | None:
    """The partition-id a client put in its reply (``client`` ConfigRecord), if it is an integer."""
    if msg.has_error() or not msg.has_content():
        return None
    record = msg.content.config_records.get("client")
    value = record.get("partition-id") if record is not None else None
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


class RoundBook(StrategyWrapper):
    """Outermost wrapper of the server's strategy: counts what each round sent and got back.

    It owns one change: replies are handed on sorted by partition-id (errors last), so
    that FedAvg's floating-point sums, hence the α trajectory, do not depend on the order
    in which clients happened to finish. It also keeps each client's latest cumulative
    ``dp-epsilon`` (``epsilons``; every cumulative ε it reports, by each accountant and
    mechanism, in ``dp_epsilons``) and puts the round's max and mean in ``current`` instead
    of FedAvg's example-weighted average of the ``dp-*`` metrics, which means nothing.
    Given the ``guard`` (a :class:`server.guard.ReplyGuard` inside), it counts the replies
    it rejected (``rejected``, ``rejections``, every round's in ``self.rejections``) and
    those it clipped and aggregated (``clipped``, ``clippings``; ``self.clippings``), says
    whether the round aggregated anything (``aggregated``; why not in ``kept_previous``),
    and takes ε only from replies it accepted.
    """

    def __init__(self, strategy: Strategy, guard: Any = None) -> None:
        super().__init__(strategy)
        self.guard = guard  # a ReplyGuard inside ``strategy``: its rejections go into the row
        self.current: dict[str, Any] = {}
        self.epsilons: dict[int, float] = {}
        self.dp_epsilons: dict[int, dict[str, float]] = {}  # each client's latest cumulative ε metrics
        self.rejections: list[dict[str, Any]] = []  # every round's
        self.clippings: list[dict[str, Any]] = []  # every round's replies the guard clipped, and how
        self.kept_previous: list[dict[str, Any]] = []  # rounds without a new global model, and why

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        messages = list(self.strategy.configure_train(server_round, arrays, config, grid))
        self.current = {"round": server_round, "sampled": len(messages)}
        return messages

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = sorted(replies, key=lambda m: (m.has_error(), 1 << 62 if partition_of(m) is None else partition_of(m),
                                                 int(m.metadata.src_node_id)))
        failed = [m for m in replies if m.has_error()]
        for m in failed:
            log.warning("round %d: client node %d failed: %s", server_round, m.metadata.src_node_id, m.error.reason)
        self.current.update({"replied": len(replies) - len(failed),
                             "failed": self.current.get("sampled", len(replies)) - (len(replies) - len(failed))})
        arrays, metrics = self.strategy.aggregate_train(server_round, replies)
        if metrics is not None:
            self.current.update({k: v for k, v in metrics.items()
                                 if not isinstance(v, list) and not k.startswith("dp-")})
        accepted = self._book_rejections(server_round, replies, arrays is not None)
        self.current.update(dp_round_metrics(accepted))
        for m in accepted:
            pid, eps = partition_of(m), dp_epsilon(m)
            if pid is not None and eps is not None:
                self.epsilons[pid] = eps
                self.dp_epsilons[pid] = dp_epsilons(m)
        return arrays, metrics

    def _book_rejections(self, server_round: int, replies: list[Message], aggregated: bool) -> list[Message]:
        """Count the guard's rejections and a round without a new model; return the accepted replies."""
        rejected = list(getattr(self.guard, "rejections", []))
        clipped = list(getattr(self.guard, "clippings", []))
        self.current.update({"rejected": len(rejected), "clipped": len(clipped), "aggregated": aggregated,
                             "rejections": "; ".join(f"partition {r.partition_id}: {r.reason}" for r in rejected),
                             "clippings": "; ".join(f"partition {r.partition_id}: {r.reason}" for r in clipped)})
        self.rejections += [r.as_dict() for r in rejected]
        self.clippings += [r.as_dict() for r in clipped]
        if not aggregated:
            reason = getattr(self.guard, "kept_previous", None)
            if reason is None:  # the guard logs its own reasons
                reason = "no reply was aggregated"
                log.warning("round %d: %s: the global model stays as it was", server_round, reason)
            self.kept_previous.append({"round": server_round, "reason": reason})
        nodes = {r.node_id for r in rejected}
        return [m for m in replies if int(m.metadata.src_node_id) not in nodes]

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        metrics = self.strategy.aggregate_evaluate(server_round, list(replies))
        if metrics is not None:
            self.current.update({k: v for k, v in metrics.items() if not isinstance(v, list)})
        return metrics
