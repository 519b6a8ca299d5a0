"""Training a derived network (real FedAvg in one process) and judging it against random genotypes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fednas.batchnorm import calibration_batches, pool_statistics, recalibrate, statistics_state
from fednas.config import parse_config
from fednas.data import dataset_from_config
from fednas.derive import DeriveInputError, derive_after_run, derive_run, load_searched_run, task_from_config
from fednas.derive.training import _average, train_network
from fednas.rundir import atomic_write_json
from fednas.spaces.derived import derived_network, random_genotype
from simulations.__main__ import main

TINY = {"dag-nodes": 3, "layers": 3, "cell-nodes": 2, "channels": 4, "max-samples": 300, "derive-rounds": 2,
        "derive-random": 2, "derive-batch-size": 16}


def test_fedavg_is_the_weighted_mean_and_keeps_step_counters():
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(5)}
    out = _average([a, b], [1, 3])
    torch.testing.assert_close(out["w"], torch.tensor([2.5, 5.0]))
    assert out["n"].dtype == torch.int64 and int(out["n"]) == 3


def test_federated_training_learns_and_leaves_the_pooled_statistics():
    cfg = parse_config({**TINY, "derive-rounds": 3, "derive-lr": 0.1, "derive-local-epochs": 4})
    dataset = dataset_from_config(cfg.data, cfg.run.seed)
    task = task_from_config(cfg, dataset, 2)
    assert len(task.clients) == 2 and not set(task.clients[0]) & set(task.clients[1])
    assert not set(np.concatenate(task.clients)) & set(task.test)
    model = derived_network(random_genotype(cfg.space, dataset.spec, 2, 0), cfg.space, dataset.spec, 0)
    curve = train_network(model, task, cfg.derive, seed=0)
    assert len(curve) == 3 and curve[-1] > 0.3  # 10 classes: chance is 0.1
    # the statistics are those pooled from both clients' passes under the final weights
    parts = []
    for indices in task.clients:
        local = derived_network(random_genotype(cfg.space, dataset.spec, 2, 0), cfg.space, dataset.spec, 0)
        local.load_state_dict(model.state_dict())
        parts.append((statistics_state(local), recalibrate(local, calibration_batches(dataset, indices, 16))))
    for k, v in pool_statistics(parts).items():
        torch.testing.assert_close(statistics_state(model)[k], v, msg=k)


def _fake_run(tmp_path, keys, clients=2):
    """A finished search's directory: its config and final genotype (what derive reads)."""
    cfg = parse_config(keys)
    dataset = dataset_from_config(cfg.data, cfg.run.seed)
    genotype = random_genotype(cfg.space, dataset.spec, cfg.space.genotype_k, 99)
    atomic_write_json(tmp_path / "config.json", {"config": cfg.flat(), "federation": {"supernodes": clients}})
    atomic_write_json(tmp_path / "genotype.json", {"final": genotype.to_dict()})
    return genotype


@pytest.mark.parametrize("space, extra", [("dag", {}), ("darts", {"derive-auxiliary-weight": 0.4, "derive-drop-path": 0.2,
                                                                   "derive-layers": 4, "derive-mode": "central"})])
def test_derive_writes_the_searched_and_random_accuracies_and_a_plot(tmp_path, space, extra):
    genotype = _fake_run(tmp_path, {**TINY, "space": space, **extra})
    out = derive_run(tmp_path)
    m = json.loads((out / "metrics.json").read_text())
    for key in ("test-acc", "params", "rounds", "random-test-acc-mean", "random-test-acc-std", "random-n"):
        assert m[key] is not None, key
    assert m["rounds"] == 2 and m["random-n"] == 2 and len(m["searched"]["curve"]) == 2
    assert m["genotype"] == genotype.pretty() and all(r["genotype"] != genotype.pretty() for r in m["random"])
    assert m["random-test-acc-mean"] == pytest.approx(np.mean([r["test-acc"] for r in m["random"]]))
    lo, hi = m["test-acc-ci95"]
    cfg = parse_config({**TINY, "space": space})
    assert lo <= m["test-acc"] <= hi
    assert m["test-n"] == len(task_from_config(cfg, dataset_from_config(cfg.data, cfg.run.seed), 2).test)
    assert (out / "derive.png").stat().st_size > 1000
    assert m["mode"] == extra.get("derive-mode", "federated")


def test_bad_inputs_are_named_before_any_training(tmp_path):
    with pytest.raises(DeriveInputError, match="config.json is missing"):
        load_searched_run(tmp_path)
    _fake_run(tmp_path, TINY)
    with pytest.raises(DeriveInputError, match="'dag-nodes'"):
        load_searched_run(tmp_path, {"dag-nodes": 5})
    with pytest.raises(DeriveInputError, match="derive-rounds"):
        load_searched_run(tmp_path, {"derive-rounds": 0})
    assert derive_after_run(tmp_path / "missing")["status"] == "failed"  # never raises


def test_the_command_line_derives_a_run(tmp_path, capsys):
    _fake_run(tmp_path, {**TINY, "derive-random": 0})
    assert main(["derive", str(tmp_path), "--set", "derive-rounds=1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == str(tmp_path / "derived") and "searched: test accuracy" in lines[0]
    assert main(["derive", str(tmp_path), "--set", "dag-nodes=4"]) == 2
