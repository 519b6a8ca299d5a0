"""Pooled BatchNorm statistics: the aggregate gets the statistics of its own weights.

FedAvg averages the clients' BatchNorm running statistics, each taken under that
client's own θ; they do not describe the averaged θ, and every eval-mode number of the
global model (central accuracy, federated evaluation, the saved model) is off until many
rounds have passed. ``PooledStatistics`` wraps any strategy: after the inner strategy has
aggregated a round, it sends the new global arrays to the clients that replied in a
``query.bn_statistics`` message; each runs a recalibration pass on its D^θ (gradients
off, :func:`fednas.batchnorm.recalibrate`) and replies its running means, variances and
sample count; the wrapper pools them (:func:`fednas.batchnorm.pool_statistics`: the
statistics of the union of the clients' D^θ) and puts them into the aggregate. One
extra message exchange per round, of the size of an evaluate round.

It changes nothing else: the inner strategy aggregates what it would alone, θ and α are
untouched. A client that fails or replies something unusable is left out (logged); with
no usable reply the inner strategy's statistics stay. ``bn-clients`` in the round's
train metrics says how many clients' statistics were pooled.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fednas.batchnorm import QUERY_ACTION, is_statistic, pool_statistics
from server.strategies import partition_of
from server.wrapping import StrategyWrapper

log = logging.getLogger(__name__)

QUERY_TYPE = f"query.{QUERY_ACTION}"


def _usable(msg: Message, expected: dict[str, tuple[int, ...]]) -> tuple[dict[str, torch.Tensor], float] | str:
    """The statistics and sample count of a query reply, or why it cannot be used."""
    if msg.has_error():
        return f"error {msg.error.reason}"
    if "statistics" not in msg.content.array_records or "metrics" not in msg.content.metric_records:
        return "no 'statistics' ArrayRecord or 'metrics' MetricRecord"
    n = float(msg.content["metrics"].get("bn-samples", 0))
    if not (math.isfinite(n) and n > 0):
        return f"bn-samples = {n}"
    stats = {k: v.numpy() for k, v in msg.content["statistics"].items()}
    if set(stats) != set(expected):
        return f"statistics name {len(stats)} buffers, the model has {len(expected)}"
    for name, value in stats.items():
        if value.shape != expected[name] or not np.isfinite(value).all():
            return f"{name!r}: shape {value.shape} or non-finite values"
        if name.endswith("running_var") and (value < 0).any():
            return f"{name!r}: negative variance"
    return {k: torch.from_numpy(np.array(v, dtype=np.float64)) for k, v in stats.items()}, n


class PooledStatistics(StrategyWrapper):
    """Strategy wrapper: the aggregate's BatchNorm statistics are pooled from the clients'
    recalibration passes under the aggregate itself.

    Parameters
    ----------
    strategy : Strategy
        The strategy to wrap (any Flower strategy whose aggregate holds the statistics).
    timeout : float
        Seconds to wait for the clients' statistics.
    """

    def __init__(self, strategy: Strategy, timeout: float = 3600.0) -> None:
        super().__init__(strategy)
        self.timeout = timeout
        self._grid: Grid | None = None
        self._config: dict[str, Any] = {}

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        messages = list(self.strategy.configure_train(server_round, arrays, config, grid))
        self._grid = grid
        self._config = dict(config)  # the local-search settings (batch size, batches of the pass)
        return messages

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        arrays, metrics = self.strategy.aggregate_train(server_round, replies)
        if arrays is None or self._grid is None:
            return arrays, metrics
        nodes = [m.metadata.src_node_id for m in replies if not m.has_error()]
        pooled, used = self.pool(server_round, arrays, nodes)
        if pooled:
            arrays = ArrayRecord({k: Array(pooled[k].numpy().astype(v.numpy().dtype)) if k in pooled else v
                                  for k, v in arrays.items()})
        metrics = metrics if metrics is not None else MetricRecord()
        metrics["bn-clients"] = used
        return arrays, metrics

    def pool(self, server_round: int, arrays: ArrayRecord, nodes: list[int]) -> tuple[dict[str, torch.Tensor], int]:
        """Ask ``nodes`` for their statistics of ``arrays``; the pooled ones and how many clients they cover."""
        expected = {k: tuple(v.numpy().shape) for k, v in arrays.items() if is_statistic(k)}
        if not expected or not nodes:
            return {}, 0
        content = RecordDict({"arrays": arrays, "config": ConfigRecord({**self._config, "server-round": server_round})})
        messages = [Message(content=content, message_type=QUERY_TYPE, dst_node_id=node) for node in nodes]
        try:
            replies = list(self._grid.send_and_receive(messages, timeout=self.timeout))
        except Exception as err:  # the statistics must never stop the federation
            log.warning("round %d: BatchNorm statistics query failed (%s: %s); keeping the aggregated ones",
                        server_round, type(err).__name__, err)
            return {}, 0
        parts = []
        # in partition order: the pooled sums, hence the run, do not depend on who answered first
        for msg in sorted(replies, key=lambda m: (partition_of(m) is None, partition_of(m) or 0)):
            part = _usable(msg, expected)
            if isinstance(part, str):
                log.warning("round %d: BatchNorm statistics of node %s left out: %s", server_round,
                            msg.metadata.src_node_id, part)
            else:
                parts.append(part)
        if not parts:
            log.warning("round %d: no client returned usable BatchNorm statistics; keeping the aggregated ones", server_round)
            return {}, 0
        return pool_statistics(parts), len(parts)

    def summary(self) -> None:
        log.info("\t├──> PooledStatistics: BatchNorm statistics pooled from the clients' D^theta each round")
        self.strategy.summary()
