"""The server half of ``reply = "delta"``: rebuild each client's weights from its update.

``DeltaReplies(strategy)`` wraps any Flower strategy. On the way out it asks for updates
(``reply = "delta"`` in the train config) and remembers what it sent to each node; on the
way back it turns each reply's Δ into sent + Δ, in place, before the inner strategy sees
it. Everything inside (FedAvg, FedAvgM's momentum, FedProx, Flower's DP wrapper, the
pooled BatchNorm statistics) works on weights as it would with ``reply = "weights"``,
and FedAvg's aggregate is what was sent plus the weighted mean update (equal to the
weights form up to float rounding). The ServerApp puts the reply guard outside it (the
guard checks the updates as they came) and the eavesdropper outside the guard (it adds
the α it recorded going out to each Δα itself, so it must not sit inside this wrapper):
``server.server_app.compose``.

A reply whose update names an array that was not sent, or has another shape, is left out
of the round (logged): it cannot be turned into weights.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fednas.updates import REPLY_KEY, apply_update
from server.wrapping import StrategyWrapper

log = logging.getLogger(__name__)


class DeltaReplies(StrategyWrapper):
    """Strategy wrapper: clients reply updates; the inner strategy sees sent + update."""

    def __init__(self, strategy: Strategy) -> None:
        super().__init__(strategy)
        self._sent: dict[int, ArrayRecord] = {}

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        config[REPLY_KEY] = "delta"
        messages = list(self.strategy.configure_train(server_round, arrays, config, grid))
        self._sent = {m.metadata.dst_node_id: m.content["arrays"] for m in messages if "arrays" in m.content.array_records}
        return messages

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        kept = []
        for msg in replies:
            if msg.has_error() or "arrays" not in msg.content.array_records:
                kept.append(msg)
                continue
            node = msg.metadata.src_node_id
            try:
                base = {k: v.numpy() for k, v in self._sent[node].items()}
                weights = apply_update(base, {k: v.numpy() for k, v in msg.content["arrays"].items()})
            except (KeyError, ValueError) as err:
                log.warning("round %d: the update of node %s is left out: %s", server_round, node, err)
                continue
            msg.content["arrays"] = ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in weights.items()})
            kept.append(msg)
        return self.strategy.aggregate_train(server_round, kept)

    def summary(self) -> None:
        log.info("\t├──> DeltaReplies: clients reply their update; weights = sent + update")
        self.strategy.summary()
