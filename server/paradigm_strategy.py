"""The server side of a NAS paradigm, as a strategy wrapper.

``ParadigmStrategy(strategy, cfg)`` holds ``self.strategy`` and forwards everything; it
owns one thing, the paradigm's server state (``paradigm.*`` arrays, see
:mod:`fednas.paradigms.base`). Before a round it lets the paradigm decide what to send
(:meth:`~fednas.paradigms.base.Paradigm.server_configure`: P-DARTS's stage change and
pruning from the averaged α, ENAS's candidates), hands the model arrays alone to the
inner strategy, and adds the state to every message it built. After the round it adds
the same state to the aggregate, so the next round, the evaluation, the genotype and the
saved ``model.npz`` all see it. FedAvg, Flower's DP wrappers and the client's DP mods
never see the state; the eavesdropper, wrapped outside, records it as sent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fednas.paradigms import paradigm_of
from server.wrapping import StrategyWrapper

log = logging.getLogger(__name__)


def _record(arrays: dict[str, Any]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()})


class ParadigmStrategy(StrategyWrapper):
    """Strategy wrapper running the configured paradigm's server steps (module docstring)."""

    def __init__(self, strategy: Strategy, cfg: Any) -> None:
        super().__init__(strategy)
        self.cfg = cfg
        self.paradigm = paradigm_of(cfg)
        self.state: dict[str, np.ndarray] = {}

    def __repr__(self) -> str:
        return f"ParadigmStrategy({self.paradigm.name}, {self.strategy!r})"

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        current = {k: v.numpy() for k, v in arrays.items()}
        model_arrays, self.state = self.paradigm.server_configure(self.cfg, server_round, current)
        messages = list(self.strategy.configure_train(server_round, _record(model_arrays), config, grid))
        for msg in messages:
            sent = {k: v.numpy() for k, v in msg.content["arrays"].items()}
            msg.content["arrays"] = _record({**sent, **self.state})
        return messages

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        arrays, metrics = self.strategy.aggregate_train(server_round, replies)
        if arrays is not None:
            arrays = _record({**{k: v.numpy() for k, v in arrays.items()}, **self.state})
        return arrays, metrics

    def summary(self) -> None:
        log.info("\t├──> ParadigmStrategy: %s (server state: %s)", self.paradigm.name,
                 ", ".join(sorted(self.state)) or "none yet")
        self.strategy.summary()


def with_paradigm(strategy: Strategy, cfg: Any) -> Strategy:
    """``strategy`` wrapped for the configured paradigm (unchanged for one without server state: darts)."""
    return ParadigmStrategy(strategy, cfg) if paradigm_of(cfg).server_state else strategy
