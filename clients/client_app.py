"""Flower ClientApp: unpack the server's records, run local DARTS search, pack the reply.

Reply layout (one ArrayRecord and one MetricRecord, as Flower's strategies expect):
``arrays`` (α, and θ when the server sent θ; their updates when the server asks for
``reply = "delta"``), ``metrics`` (losses, accuracies, ``num-examples``) and ``client``
(ConfigRecord with ``partition-id``). Which D^α samples the α steps used never goes into
the reply: in a simulation (``write-truth``) the client writes it to the run directory's
``truth/`` for the scoring (:mod:`fednas.truth`). A ``query.bn_statistics`` message asks
for the BatchNorm statistics of the server's model on the client's D^θ (see
``server/bnstats.py``).
"""

from __future__ import annotations

import functools
import logging

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from clients.actors import restart_dead_actors
from clients.dp_mods import dp_sgd_mod, update_dp_mod
from clients.faults import fault_mod
from clients.reply_mod import delta_reply_mod
from fednas.batchnorm import QUERY_ACTION
from fednas.config import Config, parse_config, search_from_record
from fednas.federated import client_evaluate, client_statistics, client_train
from fednas.privacy import noise_seed, private_rule_from_record
from fednas.truth import write_truth

log = logging.getLogger(__name__)

THETA_STATE_KEY = "fednas-theta"  # this client's θ between rounds when weights are not shared

app = ClientApp()
# In a simulation, Ray restarts this ClientApp's actor when its process dies (clients.actors).
restart_dead_actors()


@functools.lru_cache(maxsize=4)
def _parse(items: tuple) -> Config:
    return parse_config(dict(items))


def run_config(context: Context) -> Config:
    """The run's config, parsed once per process."""
    return _parse(tuple(sorted(context.run_config.items())))


def _node(context: Context) -> tuple[int, int]:
    return int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])


def _local_theta(context: Context):
    record = context.state.array_records.get(THETA_STATE_KEY)
    return record.to_torch_state_dict() if record is not None else None


def _write_truth(cfg: Config, server_round: int, pid: int, audit: dict) -> None:
    if cfg.run.run_dir:
        write_truth(cfg.run.run_dir, server_round, pid, audit)
    else:
        _warn_once("write-truth = true but 'run-dir' is empty: this client cannot know the run directory, "
                   "so its captures will not be scored (the launcher always sets run-dir)")


@functools.lru_cache(maxsize=None)
def _warn_once(message: str) -> None:
    log.warning(message)


# Train-only: DP mods registered on the whole app would also wrap evaluate messages. The
# fault-injection mod (a testing knob) is outermost: what it does is what goes on the wire.
# The delta mod comes next: the DP mods inside it privatise the update whatever the form.
@app.train(mods=[fault_mod, delta_reply_mod, dp_sgd_mod, update_dp_mod])
def train(msg: Message, context: Context) -> Message:
    """Local search from the received global arrays; reply the new α (and θ).

    When the DP-SGD mod has put its keys into the train config, α steps use the private
    rule, and its report (sample rate, steps) goes into the metrics for the mod to account.
    """
    cfg = run_config(context)
    pid, num = _node(context)
    train_cfg = msg.content["config"]
    server_round = int(train_cfg.get("server-round", 0))
    private = private_rule_from_record(train_cfg, noise_seed(cfg.run.seed, server_round, pid))
    result = client_train(
        cfg,
        search_from_record(train_cfg),
        msg.content["arrays"].to_torch_state_dict(),
        partition_id=pid,
        num_clients=num,
        server_round=server_round,
        local_theta=_local_theta(context),
        alpha_gradient=private,
        proximal_mu=float(train_cfg["proximal-mu"]) if "proximal-mu" in train_cfg else None,  # Flower's FedProx
    )
    if result.theta:
        context.state[THETA_STATE_KEY] = ArrayRecord(result.theta)
    if cfg.attack.write_truth:  # before the reply: the scorer may read it as soon as the reply lands
        _write_truth(cfg, server_round, pid, result.audit)
    content = RecordDict({
        "arrays": ArrayRecord(result.arrays),
        "metrics": MetricRecord({**result.metrics, **(private.report() if private else {})}),
        "client": ConfigRecord({"partition-id": pid}),
    })
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Evaluate the global model on this client's test split."""
    cfg = run_config(context)
    pid, num = _node(context)
    metrics = client_evaluate(cfg, msg.content["arrays"].to_torch_state_dict(), partition_id=pid,
                              num_clients=num, local_theta=_local_theta(context))
    content = RecordDict({"metrics": MetricRecord(metrics), "client": ConfigRecord({"partition-id": pid})})
    return Message(content=content, reply_to=msg)


@app.query(QUERY_ACTION)
def bn_statistics(msg: Message, context: Context) -> Message:
    """BatchNorm statistics of the server's model on this client's D^θ (``bn-statistics = "pooled"``).

    Reply: ``statistics`` (ArrayRecord of running means and variances after a
    recalibration pass), ``metrics`` (``bn-samples``: how many samples they cover) and
    ``client`` (``partition-id``).
    """
    cfg = run_config(context)
    pid, num = _node(context)
    config = msg.content["config"]
    stats, n = client_statistics(cfg, search_from_record(config), msg.content["arrays"].to_torch_state_dict(),
                                 partition_id=pid, num_clients=num, server_round=int(config.get("server-round", 0)))
    content = RecordDict({"statistics": ArrayRecord(stats), "metrics": MetricRecord({"bn-samples": n}),
                          "client": ConfigRecord({"partition-id": pid})})
    return Message(content=content, reply_to=msg)
