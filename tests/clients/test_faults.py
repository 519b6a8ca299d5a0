"""Fault injection through the real ClientApp (its mods included), and the actor-restart setting."""

import subprocess
import sys

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict

from clients import actors
from clients.client_app import app
from clients.faults import FAULTS, HUGE
from fednas.config import FAULT_MODES, KEYS, ConfigError, fault_plan, parse_config, search_to_record
from fednas.federated import initial_arrays
from simulations.launcher import PROJECT_ROOT

pytestmark = pytest.mark.usefixtures("server_identity")

RUN = {k.name: k.default for k in KEYS} | {"dag-nodes": 3, "channels": 4, "local-steps": 1, "batch-size": 8,
                                          "alpha-batch-size": 4, "max-samples": 300}


def _reply(pid, **overrides):
    cfg = parse_config(RUN | overrides)
    ctx = Context(run_id=1, node_id=10 + pid, node_config={"partition-id": pid, "num-partitions": 3},
                  state=RecordDict(), run_config=RUN | overrides)
    config = ConfigRecord({**search_to_record(cfg.search), "server-round": 1})
    msg = Message(RecordDict({"arrays": ArrayRecord(initial_arrays(cfg)), "config": config}), dst_node_id=10 + pid,
                  message_type=MessageType.TRAIN)
    return app(msg, ctx)


@pytest.fixture
def honest():
    reply = _reply(1)
    return {k: v.numpy() for k, v in reply.content["arrays"].items()}, dict(reply.content["metrics"])


def test_the_registry_matches_the_config():
    assert set(FAULTS) == set(FAULT_MODES)
    assert fault_plan(parse_config({"fault-partitions": "0, 2:nan", "fault-mode": "exit"})) == {0: "exit", 2: "nan"}
    for bad in ("1:boom", "x", "1;2"):
        with pytest.raises(ConfigError, match="fault-partitions"):
            parse_config({"fault-partitions": bad})


@pytest.mark.parametrize("mode, check", [
    ("nan", lambda a, h: a["alpha"].shape == h["alpha"].shape and np.isnan(a["alpha"]).all()),
    ("shape", lambda a, h: a["alpha"].shape == (h["alpha"].size,) and np.array_equal(a["alpha"], h["alpha"].ravel())),
    ("broadcast", lambda a, h: a["alpha"].shape == (1, h["alpha"].shape[1])),
    ("dtype", lambda a, h: a["alpha"].dtype == np.float64 and np.array_equal(a["alpha"], h["alpha"])),
    ("huge", lambda a, h: (a["alpha"] == np.float32(HUGE)).all()),
    ("extra-array", lambda a, h: set(a) == set(h) | {"extra"}),
    ("missing-alpha", lambda a, h: set(a) == set(h) - {"alpha"}),
])
def test_a_faulty_partition_corrupts_its_honest_reply(mode, check, honest):
    arrays_h, _ = honest
    reply = _reply(1, **{"fault-partitions": f"1:{mode}"})
    arrays = {k: v.numpy() for k, v in reply.content["arrays"].items()}
    assert check(arrays, arrays_h)
    for name in set(arrays_h) & set(arrays) - {"alpha"}:  # θ is the honest θ
        np.testing.assert_array_equal(arrays[name], arrays_h[name])


def test_other_partitions_and_evaluate_are_untouched(honest):
    arrays_h, metrics_h = honest
    reply = _reply(1, **{"fault-partitions": "0:nan,2:raise"})
    for name, value in reply.content["arrays"].items():
        np.testing.assert_array_equal(value.numpy(), arrays_h[name])
    assert _reply(1, **{"fault-partitions": "1:bad-weight"}).content["metrics"]["num-examples"] == -1
    assert metrics_h["num-examples"] > 0


def test_raise_fails_the_call_and_exit_ends_the_process():
    with pytest.raises(Exception, match="fault injection"):
        _reply(1, **{"fault-partitions": "1"})
    code = "from clients.faults import before_train; before_train('exit', 3); print('still here')"
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 17 and "still here" not in out.stdout


def test_client_actors_are_made_restartable_and_the_setting_is_checked(monkeypatch):
    from flwr.simulation.ray_transport.ray_actor import ClientAppActor

    saved = dict(ClientAppActor._default_options)
    try:
        assert actors.restart_dead_actors() is None or "flwr.simulation" in sys.modules  # only in a simulation
        monkeypatch.setenv(actors.ENV, "-1")
        assert actors.restart_dead_actors(force=True) == -1
        assert ClientAppActor._default_options["max_restarts"] == -1
        assert ClientAppActor._default_options["max_task_retries"] == actors.TASK_RETRIES
        monkeypatch.setenv(actors.ENV, "0")
        assert actors.restart_dead_actors(force=True) == 0
        assert "max_restarts" not in ClientAppActor._default_options
        monkeypatch.setenv(actors.ENV, "many")
        with pytest.raises(ValueError, match=actors.ENV):
            actors.restart_dead_actors(force=True)
    finally:
        ClientAppActor._default_options.clear()
        ClientAppActor._default_options.update(saved)
