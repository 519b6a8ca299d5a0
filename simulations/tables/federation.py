"""Federated runs for the tables, made in this process or through ``flwr run``.

In process, the clients are the real ClientApp (``clients.client_app.app``: its train
function with the DP mods it registers, each client with a Flower ``Context`` of its own
that keeps its DP ledger across rounds), fed Flower messages by a FedAvg loop that plays
the server. What a Flower run would put in its run directory comes out the same way
(``RunLog``: config.json, rounds.csv, model.npz, summary.json; ``CaptureStore``:
captures/ and truth/), so the attack engines read these runs as any other. ``flower``
launches the real ServerApp instead (for a NAS paradigm whose server side is its own).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fednas.config import Config, parse_config, search_to_record, toml_value
from fednas.rundir import atomic_write_json

log = logging.getLogger(__name__)

NODE_BASE = 1000  # node id of partition 0 (any distinct ids do: the attack never sees them)


@dataclass
class Reply:
    """One client's answer to a train message (``error`` set when it failed)."""

    partition_id: int
    node_id: int
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    audit: dict[str, Any] = field(default_factory=dict)
    error: str = ""


class InProcessFederation:
    """The real ClientApp for ``clients`` partitions, driven round by round by :meth:`train`."""

    def __init__(self, cfg: Config, clients: int) -> None:
        from flwr.app import Context, RecordDict

        flat = cfg.flat()
        self.cfg, self.clients = cfg, clients
        self.contexts = [Context(run_id=1, node_id=NODE_BASE + pid, node_config={"partition-id": pid,
                                 "num-partitions": clients}, state=RecordDict(), run_config=dict(flat))
                         for pid in range(clients)]

    def train(self, server_round: int, arrays: dict[str, np.ndarray]) -> list[Reply]:
        """Every client's train call on the global ``arrays``, in partition order."""
        from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, Metadata, RecordDict

        from clients.client_app import app

        config = {**search_to_record(self.cfg.search), "server-round": server_round}
        replies = []
        for pid, ctx in enumerate(self.contexts):
            md = Metadata(run_id=1, message_id=f"r{server_round}-p{pid}", src_node_id=1, dst_node_id=ctx.node_id,
                          reply_to_message_id="", group_id=str(server_round), created_at=time.time(), ttl=3600.0,
                          message_type=MessageType.TRAIN)
            content = RecordDict({"arrays": ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()}),
                                  "config": ConfigRecord(config)})
            reply = Reply(pid, ctx.node_id)
            try:
                out = app(Message(content=content, metadata=md), ctx)
            except Exception as err:  # a failing client is one failed reply, as in a Flower run
                log.warning("client %d failed in round %d: %s: %s", pid, server_round, type(err).__name__, err)
                reply.error = f"{type(err).__name__}: {err}"
                replies.append(reply)
                continue
            if out.has_error():
                reply.error = out.error.reason
            else:
                reply.arrays = {k: np.array(v.numpy(), copy=True) for k, v in out.content["arrays"].items()}
                reply.metrics = {k: v for k, v in out.content["metrics"].items()}
                audit = out.content.config_records.get("audit")
                reply.audit = {k: v for k, v in audit.items()} if audit is not None else {}
            replies.append(reply)
        return replies


def fedavg(replies: list[Reply]) -> dict[str, np.ndarray]:
    """Weighted mean of the replies' arrays, weights = ``num-examples`` (Flower's FedAvg)."""
    weights = np.array([float(r.metrics.get("num-examples", 1)) for r in replies])
    weights = weights / weights.sum()
    return {k: sum(w * r.arrays[k].astype(np.float64) for w, r in zip(weights, replies)).astype(replies[0].arrays[k].dtype)
            for k in replies[0].arrays}


def initial(cfg: Config) -> dict[str, np.ndarray]:
    from fednas.federated import initial_arrays

    return {k: v.numpy() for k, v in initial_arrays(cfg).items()}


def _max_epsilon(replies: list[Reply], so_far: float | None) -> float | None:
    eps = [float(r.metrics["dp-epsilon"]) for r in replies if "dp-epsilon" in r.metrics]
    return max([*eps, *([] if so_far is None else [so_far])]) if eps else so_far


def build_captures(run_dir: Path, flat: dict[str, Any], clients: int, captures: int) -> dict[str, Any]:
    """Rounds of the in-process federation until ``captures`` (round, client) updates are stored.

    What the eavesdropper would store (α_t1 and θ_t1 as sent, α_t2 as replied, the train
    settings, the reply's metrics) goes to ``captures/``, the clients' audit records to
    ``truth/``, exactly as ``server.eavesdrop`` writes them.
    """
    from attacks.captures import CaptureStore, split_arrays
    from fednas.runlog import RunLog

    cfg = parse_config(flat)
    t0 = time.perf_counter()
    runlog = RunLog(cfg, run_dir, {"nodes": clients, "made-by": "simulations.tables (in process)"})
    store, fed = CaptureStore(run_dir), InProcessFederation(cfg, clients)
    arrays, stored, rnd, eps = initial(cfg), 0, 0, None
    while stored < captures:
        rnd += 1
        alpha, theta = split_arrays(arrays, cfg.attack.alpha_pattern)
        sent = store.write_sent(rnd, alpha, theta if cfg.search.share_weights else {})
        replies = fed.train(rnd, arrays)
        ok = [r for r in replies if not r.error]
        for r in replies:
            reply_alpha = split_arrays(r.arrays, cfg.attack.alpha_pattern)[0]
            store.write(server_round=rnd, node_id=r.node_id, sent=sent, alpha_t2=reply_alpha, partition_id=r.partition_id,
                        train_config={**search_to_record(cfg.search), "server-round": rnd}, metrics=r.metrics,
                        status="failed" if r.error else "ok", reason=r.error, truth=r.audit or None)
        stored += len(ok)
        if not ok:
            raise RuntimeError(f"every client failed in round {rnd}: {replies[0].error}")
        eps = _max_epsilon(ok, eps)
        arrays = fedavg(ok)
    runlog.summary["dp-epsilon-max"] = eps
    runlog.finish(arrays)
    return {"rounds": rnd, "captures": stored, "epsilon": eps, "seconds": time.perf_counter() - t0}


def build_target(run_dir: Path, flat: dict[str, Any], clients: int, runner: str = "inprocess") -> dict[str, Any]:
    """A searched (and weight-trained) model, saved as a completed run directory."""
    if runner == "flower":
        return _flower_target(run_dir, flat, clients)
    from fednas.federated import central_evaluate, genotype_of
    from fednas.runlog import RunLog

    cfg = parse_config(flat)
    t0 = time.perf_counter()
    runlog = RunLog(cfg, run_dir, {"nodes": clients, "made-by": "simulations.tables (in process)"})
    fed, arrays, eps = InProcessFederation(cfg, clients), initial(cfg), None
    for rnd in range(1, cfg.fed.num_server_rounds + 1):
        replies = fed.train(rnd, arrays)
        ok = [r for r in replies if not r.error]
        if not ok:
            raise RuntimeError(f"every client failed in round {rnd}: {replies[0].error}")
        arrays = fedavg(ok)
        eps = _max_epsilon(ok, eps)
        state = {k: torch.from_numpy(v) for k, v in arrays.items()}
        row = {"round": rnd, "sampled": clients, "replied": len(ok), "failed": len(replies) - len(ok),
               **{k: float(np.mean([r.metrics[k] for r in ok if k in r.metrics]))
                  for k in ("theta-loss", "theta-acc", "alpha-loss", "alpha-acc") if any(k in r.metrics for r in ok)},
               "seconds": round(time.perf_counter() - t0, 3)}
        if cfg.fed.central_eval and cfg.search.share_weights:
            row.update(central_evaluate(cfg, state))
        runlog.add_round(row, genotype_of(cfg, state))
    runlog.summary["dp-epsilon-max"] = eps
    runlog.finish(arrays, genotype=genotype_of(cfg, {k: torch.from_numpy(v) for k, v in arrays.items()}).pretty())
    return target_info(run_dir, time.perf_counter() - t0)


def _flower_target(run_dir: Path, flat: dict[str, Any], clients: int) -> dict[str, Any]:
    from simulations.launcher import launch

    sets = [f"{k}={toml_value(v)}" for k, v in flat.items()] + [f"run-dir={run_dir.resolve()}"]
    t0 = time.perf_counter()
    with open(run_dir.parent / f"{run_dir.name}.flower.log", "w") as stream:
        result = launch(None, sets, clients=clients, stream=stream)
    if result.returncode != 0:
        raise RuntimeError(f"flwr run did not complete ({result.status}); log: {stream.name}")
    return target_info(run_dir, time.perf_counter() - t0)


def target_info(run_dir: Path, seconds: float) -> dict[str, Any]:
    """Test accuracy (eval mode, the server's test pool) and ε of a finished run."""
    import json

    from fednas.data import dataset_from_config, make_pools
    from fednas.federated import central_evaluate
    from fednas.rundir import load_npz

    summary = json.loads((run_dir / "summary.json").read_text())
    cfg = parse_config(json.loads((run_dir / "config.json").read_text())["config"])
    n_test = len(make_pools(len(dataset_from_config(cfg.data, cfg.run.seed)), cfg.data, cfg.run.seed).test)
    model = {k: torch.from_numpy(v) for k, v in load_npz(run_dir / "model.npz").items()}
    acc = central_evaluate(cfg, model)["central-acc"] if cfg.search.share_weights else None
    eps = summary.get("dp-epsilon-max", (summary.get("dp") or {}).get("epsilon"))
    info = {"central-acc": acc, "n-test": n_test, "status": summary.get("status"),
            "epsilon": math.inf if eps == "inf" else eps, "seconds": seconds,
            "rounds": summary.get("rounds-completed")}
    atomic_write_json(run_dir / "target.json", info)
    return info
