"""The in-process Grid the tests drive strategies with (it lives in ``server.inprocess``), and
helpers that run the project's ServerApp or a strategy on it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flwr.app import RecordDict

from server.inprocess import ClientFn, InProcessGrid, through

__all__ = ["InProcessGrid", "through", "run_server_app", "run_strategy"]


def run_server_app(run_config: Mapping[str, Any], num_nodes: int, client_app: ClientFn | None = None) -> Any:
    """The project's whole ServerApp ``main`` against ``num_nodes`` in-process ClientApps.

    ``run_config`` must name an absolute ``run-dir``; what the run wrote is there.
    """
    from flwr.app import Context

    from clients.client_app import app as default_app
    from server.server_app import main

    client = client_app or default_app
    grid = InProcessGrid(run_config, num_nodes, client, client, query=client)
    main(grid, Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=dict(run_config)))
    return grid


def run_strategy(strategy: Any, keys: Mapping[str, Any], num_nodes: int, rounds: int = 2, train: ClientFn | None = None,
                 query: ClientFn | None = None) -> tuple[Any, InProcessGrid]:
    """``strategy.start`` from the config's initial arrays against in-process ClientApps.

    ``train``/``query`` default to the project's whole ClientApp (with its mods). Returns
    Flower's result and the grid (``grid.sent`` holds every message sent).
    """
    from flwr.app import ArrayRecord, ConfigRecord

    from clients.client_app import app
    from fednas.config import parse_config, search_to_record
    from fednas.federated import initial_arrays

    cfg = parse_config(dict(keys))
    grid = InProcessGrid(cfg.flat(), num_nodes, train or app, query=query or app)
    result = strategy.start(grid=grid, initial_arrays=ArrayRecord(initial_arrays(cfg)), num_rounds=rounds,
                            train_config=ConfigRecord(search_to_record(cfg.search)))
    return result, grid
