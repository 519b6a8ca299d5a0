"""A strategy wrapper that forwards everything: subclasses override what they own.

The pattern of Flower's DP wrappers: hold ``self.strategy``, forward every method, and
expose the inner strategy's other attributes (e.g. a DP wrapper's ``privacy_spent``).
Flower's ``Strategy.start`` logs ``Starting <class name> strategy``; a wrapper's ``start``
makes that name the whole chain (``Eavesdropper(FedAvg)``), so the log shows which strategy
actually aggregates (:func:`strategy_name`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy


def strategy_name(strategy: Any) -> str:
    """``Outer(Inner(FedAvg))``: the class names down a chain of wrappers (each holding ``.strategy``,
    as this project's wrappers and Flower's DP wrappers do)."""
    inner = vars(strategy).get("strategy") if hasattr(strategy, "__dict__") else None
    if isinstance(inner, Strategy):
        return f"{type(strategy).__name__}({strategy_name(inner)})"
    return type(strategy).__name__


@functools.lru_cache(maxsize=64)
def _named(cls: type, name: str) -> type:
    """A subclass of ``cls`` that adds nothing but its ``__name__`` (what Flower's log prints)."""
    return type(name, (cls,), {"__module__": cls.__module__, "__qualname__": name})


def start_named(strategy: Strategy, start: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ``start`` (Flower's ``Strategy.start`` bound to ``strategy``) with the chain's name in its log.

    Flower logs ``self.__class__.__name__``: for the run, the instance's class is a subclass
    named after the chain, which changes no method and no ``isinstance``; it is put back after.
    """
    cls = type(strategy)
    strategy.__class__ = _named(cls, strategy_name(strategy))
    try:
        return start(*args, **kwargs)
    finally:
        strategy.__class__ = cls


class StrategyWrapper(Strategy):
    """Forwards every ``Strategy`` method to ``self.strategy``; its name in Flower's log is the chain's."""

    def __init__(self, strategy: Strategy) -> None:
        self.strategy = strategy

    def __getattr__(self, name: str) -> Any:
        if name == "strategy":  # not set yet (e.g. while unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.strategy, name)

    def __repr__(self) -> str:
        return strategy_name(self)

    def start(self, *args: Any, **kwargs: Any) -> Any:
        return start_named(self, super().start, *args, **kwargs)

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        return self.strategy.aggregate_train(server_round, replies)

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return self.strategy.aggregate_evaluate(server_round, replies)

    def summary(self) -> None:
        self.strategy.summary()
