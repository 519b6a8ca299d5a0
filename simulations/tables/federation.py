"""Federated runs for the tables: the real ServerApp and ClientApp, in this process or through ``flwr run``.

In process, ``server.server_app.main`` runs on an in-process Grid
(``server.inprocess.InProcessGrid``) whose every node is the real ClientApp
(``clients.client_app.app``, its DP mods included): the same strategy, eavesdropper,
run directory (config.json, rounds.csv, model.npz, summary.json, captures/ with its
manifest, truth/) as a Flower simulation, without Ray and its start-up. ``flower`` launches
the same app through ``flwr run`` instead (``simulations.launcher``). The ServerApp's log
goes to ``server.log`` in the run directory, not to the harness's output.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fednas.config import parse_config, toml_value
from fednas.rundir import atomic_write_json
from simulations.tables import engines

_PROJECT_LOGGERS = ("flwr", "fednas", "server", "clients", "attacks")


@contextlib.contextmanager
def logs_to(path: Path) -> Iterator[None]:
    """Flower's and this project's log records go to ``path`` for the duration."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    flwr = logging.getLogger("flwr")
    saved = (list(flwr.handlers), flwr.propagate)
    flwr.handlers, flwr.propagate = [handler], False
    try:
        yield
    finally:
        flwr.handlers, flwr.propagate = saved
        for name in _PROJECT_LOGGERS:  # the ServerApp routes the project's loggers to Flower's handlers
            logger = logging.getLogger(name)
            if handler in logger.handlers:
                logger.removeHandler(handler)
        handler.close()


def run_federation(run_dir: Path, flat: dict[str, Any], clients: int, runner: str = "inprocess") -> None:
    """One federated run of the project's app with ``clients`` nodes, written to ``run_dir``."""
    settings = {**flat, "run-dir": str(run_dir.resolve())}
    if runner == "flower":
        _flower(run_dir, settings, clients)
        return
    from flwr.app import Context, RecordDict

    from clients.client_app import app
    from server.inprocess import InProcessGrid, through
    from server.server_app import main

    run_config = parse_config(settings).flat()
    grid = InProcessGrid(run_config, clients, through(app), through(app), query=through(app))
    with logs_to(run_dir / "server.log"):
        main(grid, Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=run_config))
    summary = json.loads((run_dir / "summary.json").read_text())
    if summary.get("status") != "completed":
        raise RuntimeError(f"the federated run did not complete ({summary.get('status')}): {summary.get('error')}")


def _flower(run_dir: Path, settings: dict[str, Any], clients: int) -> None:
    from simulations.launcher import launch

    sets = [f"{k}={toml_value(v)}" for k, v in settings.items()]
    log_path = run_dir / "flower.log"
    with open(log_path, "w") as stream:
        result = launch(None, sets, clients=clients, stream=stream)
    if result.returncode != 0:
        raise RuntimeError(f"flwr run did not complete ({result.status}); log: {log_path}")


def build_captures(run_dir: Path, flat: dict[str, Any], clients: int, needed: int,
                   runner: str = "inprocess") -> dict[str, Any]:
    """An eavesdropped run (attacks off) whose every (round, client) update is a capture;
    fails when fewer than ``needed`` usable captures came out of it."""
    t0 = time.perf_counter()
    run_federation(run_dir, {**flat, "eavesdrop": True, "attack-online": False, "amia": False}, clients, runner)
    summary = json.loads((run_dir / "summary.json").read_text())
    ok = engines.usable_captures(run_dir)
    if len(ok) < needed:
        raise RuntimeError(f"{len(ok)} usable captures of {needed} needed ({summary.get('failures')} client failures; "
                           f"see {run_dir / 'server.log'})")
    return {"captures": len(ok), "rounds": summary.get("rounds-completed"), "dp": dp_epsilons(run_dir),
            "seconds": time.perf_counter() - t0}


def build_target(run_dir: Path, flat: dict[str, Any], clients: int, runner: str = "inprocess") -> dict[str, Any]:
    """A searched (and weight-trained) model, saved as a completed run directory. With a DP
    mod on, the run is eavesdropped (nothing attacked) so that each mechanism's ε, which the
    replies carry, is on record."""
    t0 = time.perf_counter()
    private = bool(flat.get("dp-update") or flat.get("dp-sgd"))
    run_federation(run_dir, {**flat, "eavesdrop": private, "attack-online": False, "amia": False}, clients, runner)
    return target_info(run_dir, time.perf_counter() - t0)


def _eps(value: Any) -> float | str | None:
    """ε for JSON, which has no infinity: "inf" (a bound that says nothing), None (no DP)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else "inf"


def dp_epsilons(run_dir: Path) -> dict[str, Any]:
    """What DP bought in a run: per mechanism the largest cumulative ε any client reached and
    what it covers (from the replies' metrics), and the ε of the whole reply (summary.json;
    "inf" when a mechanism covers only part of what is sent, None without DP)."""
    summary = json.loads((run_dir / "summary.json").read_text())
    dp = summary.get("dp") or {}
    mechanisms: dict[str, dict[str, Any]] = {}
    for metrics in engines.capture_metrics(run_dir):
        for key, value in metrics.items():
            m = re.fullmatch(r"dp-(.+)-epsilon", key)
            if m and value is not None:
                name = f"dp-{m.group(1)}"
                entry = mechanisms.setdefault(name, {"epsilon": 0.0, "covers": (dp.get("mechanisms") or {}).get(
                    name, {}).get("covers", "")})
                entry["epsilon"] = max(entry["epsilon"], float(value))
    return {"reply": _eps(dp["epsilon"]) if "epsilon" in dp else None, "delta": dp.get("delta"),
            "mechanisms": {k: {**v, "epsilon": _eps(v["epsilon"])} for k, v in mechanisms.items()}}


def target_info(run_dir: Path, seconds: float) -> dict[str, Any]:
    """Test accuracy (eval mode, the server's test pool) and ε of a finished run."""
    summary = json.loads((run_dir / "summary.json").read_text())
    acc, n_test = engines.test_accuracy(run_dir)
    info = {"central-acc": acc, "n-test": n_test, "status": summary.get("status"), "dp": dp_epsilons(run_dir),
            "seconds": seconds, "rounds": summary.get("rounds-completed")}
    atomic_write_json(run_dir / "target.json", info)
    return info
