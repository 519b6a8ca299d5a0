"""Every strategy wrapper of the server is a ``StrategyWrapper``: one forwarding, one log name."""

import importlib
import inspect
import pkgutil

from flwr.serverapp.strategy import FedAvg, Strategy

import server
from fednas.config import parse_config
from server.guard import ReplyGuard
from server.paradigm_strategy import ParadigmStrategy
from server.strategies import RoundBook
from server.wrapping import StrategyWrapper, strategy_name


def _server_strategy_classes() -> list[type]:
    classes = []
    for info in pkgutil.iter_modules(server.__path__):
        module = importlib.import_module(f"server.{info.name}")
        classes += [c for _, c in inspect.getmembers(module, inspect.isclass)
                    if issubclass(c, Strategy) and c.__module__ == module.__name__]
    return classes


def test_every_strategy_the_server_defines_is_a_strategy_wrapper():
    classes = _server_strategy_classes()
    # the six wrappers of server_app.compose, plus the base itself
    assert {c.__name__ for c in classes} >= {"RoundBook", "Eavesdropper", "ParadigmStrategy", "ReplyGuard",
                                             "DeltaReplies", "PooledStatistics", "StrategyWrapper"}
    assert [c.__name__ for c in classes if not issubclass(c, StrategyWrapper)] == []


def test_wrappers_forward_attributes_and_name_the_chain():
    inner = FedAvg(fraction_train=0.25)
    cfg = parse_config({"paradigm": "pdarts"})
    chain = RoundBook(ParadigmStrategy(ReplyGuard(inner), cfg))
    assert chain.fraction_train == 0.25  # through three wrappers' __getattr__
    assert strategy_name(chain) == "RoundBook(ParadigmStrategy(ReplyGuard(FedAvg)))"
    # each wrapper forwards configure_evaluate untouched (none re-implements it)
    for cls in (RoundBook, ParadigmStrategy, ReplyGuard):
        assert cls.configure_evaluate is StrategyWrapper.configure_evaluate
