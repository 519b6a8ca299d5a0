import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict

from clients.client_app import THETA_STATE_KEY, app
from fednas.config import KEYS, parse_config, search_to_record
from fednas.data import client_data
from fednas.federated import initial_arrays
from fednas.truth import read_truth
from tests import reference

pytestmark = pytest.mark.usefixtures("server_identity")

RUN = {k.name: k.default for k in KEYS} | {"dag-nodes": 3, "channels": 4, "local-steps": 2, "batch-size": 8,
                                          "alpha-batch-size": 4, "max-samples": 300}


def _context(pid=1, num=3, **overrides):
    return Context(run_id=1, node_id=10 + pid, node_config={"partition-id": pid, "num-partitions": num},
                   state=RecordDict(), run_config=RUN | overrides)


def _train_message(cfg, arrays, server_round=1):
    config = ConfigRecord({**search_to_record(cfg.search), "server-round": server_round})
    return Message(RecordDict({"arrays": ArrayRecord(arrays), "config": config}), dst_node_id=11,
                   message_type=MessageType.TRAIN)


def test_train_handler_replies_alpha_theta_metrics_partition_and_writes_its_truth_off_the_wire(tmp_path):
    cfg = parse_config(RUN | {"run-dir": str(tmp_path)})
    arrays = initial_arrays(cfg)
    ctx = _context(**{"run-dir": str(tmp_path)})
    reply = app(_train_message(cfg, arrays), ctx)
    assert not reply.has_error()
    content = reply.content
    assert list(content.array_records) == ["arrays"] and list(content.metric_records) == ["metrics"]
    out = content["arrays"].to_torch_state_dict()
    assert set(out) == set(arrays)  # α and θ (share-weights)
    assert not torch.equal(out["alpha"], arrays["alpha"])
    metrics = content["metrics"]
    assert metrics["num-examples"] > 0 and np.isfinite(metrics["alpha-loss"])
    assert metrics["on-cuda"] == float(torch.cuda.is_available())  # device = auto
    assert content["client"]["partition-id"] == 1
    assert list(content.config_records) == ["client"]  # which samples were used never goes on the wire
    audit = read_truth(tmp_path, {"round": 1, "partition-id": 1})
    _, split = client_data(cfg.data, cfg.run.seed, 1, 3)
    assert audit.extra["alpha-steps"] == 2 and len(audit.alpha_indices) == sum(audit.alpha_batch_sizes) == 8
    assert set(audit.alpha_indices) <= set(split.alpha.tolist())


def test_without_shared_weights_theta_stays_on_the_client_across_rounds():
    cfg = parse_config(RUN | {"share-weights": False})
    alpha_only = {k: v for k, v in initial_arrays(cfg).items() if k.startswith("alpha")}
    ctx = _context(**{"share-weights": False})
    reply = app(_train_message(cfg, alpha_only), ctx)
    assert set(reply.content["arrays"].to_torch_state_dict()) == {"alpha"}
    theta1 = ctx.state[THETA_STATE_KEY].to_torch_state_dict()
    app(_train_message(cfg, alpha_only, server_round=2), ctx)
    theta2 = ctx.state[THETA_STATE_KEY].to_torch_state_dict()
    assert any(not torch.equal(theta1[k], theta2[k]) for k in theta1)  # round 2 started from round 1's θ


def test_evaluate_handler_reports_on_the_client_test_split():
    cfg = parse_config(RUN)
    msg = Message(RecordDict({"arrays": ArrayRecord(initial_arrays(cfg)), "config": ConfigRecord({})}),
                  dst_node_id=11, message_type=MessageType.EVALUATE)
    reply = app(msg, _context())
    metrics = reply.content["metrics"]
    _, split = client_data(cfg.data, cfg.run.seed, 1, 3)
    assert metrics["num-examples"] == len(split.test)
    assert metrics["eval-acc"] == reference.accuracy(cfg, initial_arrays(cfg), split.test)  # counted independently


def test_fault_injection_makes_the_handler_raise():
    cfg = parse_config(RUN)
    with pytest.raises(Exception, match="fault injection"):
        app(_train_message(cfg, initial_arrays(cfg)), _context(**{"fault-partitions": "1"}))


def test_query_handler_replies_the_statistics_of_the_servers_model_on_d_theta():
    cfg = parse_config(RUN)
    arrays = initial_arrays(cfg)
    config = ConfigRecord({**search_to_record(cfg.search), "server-round": 2})
    msg = Message(RecordDict({"arrays": ArrayRecord(arrays), "config": config}), dst_node_id=11,
                  message_type="query.bn_statistics")
    reply = app(msg, _context())
    _, split = client_data(cfg.data, cfg.run.seed, 1, 3)
    assert reply.content["metrics"]["bn-samples"] == len(split.theta)
    assert reply.content["client"]["partition-id"] == 1
    stats = reply.content["statistics"].to_torch_state_dict()
    assert set(stats) == {k for k in arrays if k.endswith(("running_mean", "running_var"))}
    assert not torch.equal(stats["stem.1.running_var"], arrays["stem.1.running_var"])  # re-estimated


def test_a_dp_sgd_reply_reports_epsilon_but_never_the_poisson_sample(tmp_path):
    # DP-SGD's guarantee relies on hiding which examples each step sampled: the reply reports ε
    # and carries no trace of the sample, which only the client's own truth record holds
    run = RUN | {"run-dir": str(tmp_path), "dp-sgd": True}
    cfg = parse_config(run)
    reply = app(_train_message(cfg, initial_arrays(cfg)), _context(**run))
    assert not reply.has_error()
    assert reply.content["metrics"]["dp-epsilon"] > 0
    assert list(reply.content.config_records) == ["client"]
    truth = read_truth(tmp_path, {"round": 1, "partition-id": 1})
    assert truth.extra["alpha-steps"] == 2 and len(truth.alpha_batch_sizes) == 2
    assert not any(k.startswith("alpha-indices") or k.startswith("alpha-step") for k in reply.content["metrics"])


def test_without_write_truth_the_client_writes_nothing(tmp_path):
    run = RUN | {"run-dir": str(tmp_path), "write-truth": False}
    cfg = parse_config(run)
    reply = app(_train_message(cfg, initial_arrays(cfg)), _context(**run))
    assert not reply.has_error() and not (tmp_path / "truth").exists()
