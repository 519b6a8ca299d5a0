"""The federation benchmark: the plain loop's FedAvg and timings, and (slow) both sides end to end."""

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import federation
from benchmarks.loop import fedavg
from fednas.federated import ClientRound


def _args(**kw):
    base = {"rounds": 2, "fed_dag_nodes": 2, "local_steps": 1, "clients": 2, "device": "cpu", "gpus_per_client": 0.5}
    return argparse.Namespace(**{**base, **kw})


def test_the_loops_fedavg_weights_by_examples():
    a = ClientRound({"w": torch.tensor([1.0, 2.0])}, {"num-examples": 1}, {})
    b = ClientRound({"w": torch.tensor([4.0, 8.0])}, {"num-examples": 3}, {})
    np.testing.assert_allclose(fedavg([a, b])["w"].numpy(), (np.array([1, 2]) * 1 + np.array([4, 8]) * 3) / 4)


def test_the_plain_loop_times_every_round_in_a_fresh_process(monkeypatch, tmp_path):
    monkeypatch.setattr(federation, "RESULTS", tmp_path)
    side = federation.plain_loop(_args())
    assert len(side["round-seconds"]) == 2 and side["in-run-s"] == pytest.approx(sum(side["round-seconds"]))
    assert side["round1-s"] == side["round-seconds"][0] and side["torch-threads"] == 1
    assert side["peak-mb"] > 0 and side["cpu-s"] > 0


@pytest.mark.slow
def test_flwr_run_against_the_loop_reports_consistent_sides(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(federation, "RESULTS", tmp_path)
    out = federation.run(_args(), overhead=True, scaling=False)
    loop_first, flower, loop_last = out["sides"]
    assert flower["ray-cpus"] == 1 and len(flower["round-seconds"]) == 2
    assert flower["in-run-s"] == pytest.approx(sum(flower["round-seconds"]))  # per-round seconds from rounds.csv
    assert flower["total-s"] > flower["in-run-s"] and flower["startup-teardown-s"] > 0
    summary = json.loads((Path(flower["run-dir"]) / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["rounds-completed"] == 2
    loops_later = (loop_first["round-seconds"][1] + loop_last["round-seconds"][1]) / 2
    assert out["overhead"] == pytest.approx(flower["round-seconds"][1] / loops_later)
    assert "overhead, flwr run / plain loop" in capsys.readouterr().out
