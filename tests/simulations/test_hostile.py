"""Hostile clients in a real federated run (flwr run, Ray): every fault mode at once.

One run, twelve clients: three honest (0, 9, 10) and nine hostile, each misbehaving in its
own way in every round, through the real ClientApp's fault-injection mod. The run must
complete; each hostile reply is left out with its reason (or, for the client whose process
dies, counted as failed, and no healthy client fails after it); the global model is finite
and equal to FedAvg over the honest replies, recomputed here without Flower (its BatchNorm
statistics pooled from the honest clients, ``bn-statistics = "pooled"``); the replies are
updates (``reply = "delta"``, the default): the guard checks the updates, the eavesdropper stores
α_t1 + Δα.
"""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from fednas.batchnorm import is_statistic
from fednas.captures import CaptureStore
from fednas.config import ConfigError, parse_config
from fednas.federated import client_train, initial_arrays
from simulations.launcher import PROJECT_ROOT, launch, prepare

CLIENTS = 12
HONEST = (0, 9, 10)
REJECTED = {1: ("nan", "non-finite"), 2: ("shape", "has shape (24,), expected (3, 8)"),
            3: ("broadcast", "has shape (1, 8), expected (3, 8)"), 4: ("extra-array", "unexpected arrays ['extra']"),
            5: ("missing-alpha", "missing arrays ['alpha']"), 8: ("dtype", "has dtype float64, expected float32"),
            # the size check, on by default: above 10 x the round's lower-median alpha-update norm
            6: ("huge", "alpha update norm 4.9e+30 exceeds update-guard-k"), 11: ("amplify", "exceeds update-guard-k")}
DIES = 7  # os._exit in every train call
FAULTS = ",".join([f"{p}:{mode}" for p, (mode, _) in REJECTED.items()] + [f"{DIES}:exit"])
SETS = ["num-server-rounds=2", "dag-nodes=3", "channels=4", "local-steps=1", "batch-size=8", "alpha-batch-size=2",
        "max-samples=660", "head=flatten", "eavesdrop=true", "attack-online=false",
        "fraction-evaluate=0.0", "min-evaluate-clients=0", "central-eval=false",
        f"fault-partitions={FAULTS}"]


def fedavg_of_honest(cfg, arrays, server_round):
    replies = []
    for pid in HONEST:
        res = client_train(cfg, cfg.search, {k: torch.as_tensor(v) for k, v in arrays.items()}, partition_id=pid,
                           num_clients=CLIENTS, server_round=server_round)
        replies.append((res.metrics["num-examples"], {k: v.numpy().astype(np.float64) for k, v in res.arrays.items()}))
    total = sum(w for w, _ in replies)
    return {k: sum(w * a[k] for w, a in replies) / total for k in replies[0][1]}


def test_fault_partitions_outside_the_federation_are_refused_before_ray_starts():
    with pytest.raises(ConfigError, match=r"names partition\(s\) \[3\], but the federation has 3 clients"):
        prepare(PROJECT_ROOT, None, ["fault-partitions=1,3:nan"], {"clients": 3})


@pytest.mark.slow
def test_one_run_with_every_hostile_client_completes_with_the_honest_aggregate(tmp_path):
    result = launch(None, [*SETS, f"output-dir={tmp_path}", "run-name=hostile"], clients=CLIENTS)
    assert result.returncode == 0, result.status
    run = result.run_dir
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["rounds-completed"] == 2
    # every round: the dead client failed and no healthy one did; the others were rejected with their reasons
    rounds = pd.read_csv(run / "rounds.csv")
    assert (rounds["sampled"] == CLIENTS).all() and (rounds["failed"] == 1).all()
    assert (rounds["rejected"] == len(REJECTED)).all() and rounds["aggregated"].all()
    assert summary["failures"] == 2 and summary["rejected"] == 2 * len(REJECTED) and not summary["rounds-kept-previous"]
    assert sorted((r["round"], r["partition-id"]) for r in summary["rejections"]) == \
        sorted((rnd, p) for rnd in (1, 2) for p in REJECTED)
    for r in summary["rejections"]:
        assert REJECTED[r["partition-id"]][1] in r["reason"], r
    # the global model: FedAvg over the honest replies, round after round
    cfg = parse_config({**json.loads((run / "config.json").read_text())["config"]})
    store = CaptureStore(run)
    caps = {(c.round, c.partition_id): c for c in map(store.load, store.ids())}
    sent_r2 = {**caps[(2, 0)].alpha_t1, **caps[(2, 0)].theta_t1}
    expected_r2 = fedavg_of_honest(cfg, {k: v.numpy() for k, v in initial_arrays(cfg).items()}, 1)
    expected_final = fedavg_of_honest(cfg, sent_r2, 2)
    with np.load(run / "model.npz") as model:
        final = dict(model)
    assert set(final) == set(expected_final) == set(sent_r2)
    for name in final:
        assert np.isfinite(final[name]).all(), name
        if is_statistic(name):  # bn-statistics = "pooled": the honest clients' passes, not an average
            continue
        np.testing.assert_allclose(sent_r2[name], expected_r2[name], rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(final[name], expected_final[name], rtol=1e-5, atol=1e-6, err_msg=name)
    # the eavesdropper kept the hostile replies, marked with the reason; the dead client sent none
    assert {p for (_, p) in caps} == set(range(CLIENTS)) - {DIES}
    for (_, pid), cap in caps.items():
        assert (cap.status, pid in REJECTED) in (("ok", False), ("rejected", True)), (pid, cap.status, cap.reason)
        if pid in REJECTED:
            assert REJECTED[pid][1] in cap.reason
