"""ADRA and AMIA on the other NAS paradigms: the replica each attack rebuilds is the client's."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from attacks.adra.attack import ADRA
from attacks.adra.client_model import replay
from attacks.adra.identifiability import jacobian_rank
from attacks.amia.runner import run_amia
from attacks.base import Knowledge
from fednas.captures import Capture
from fednas.config import parse_config
from fednas.data import client_data
from fednas.paradigms import get_paradigm
from fednas.paradigms.federation import run_federation
from fednas.rundir import atomic_save_npz, atomic_write_json

TINY = {"dag-nodes": 3, "channels": 4, "local-steps": 1, "batch-size": 8, "alpha-batch-size": 2, "max-samples": 300,
        "head": "flatten", "alpha-optimizer": "sgd", "alpha-lr": 0.1, "enas-controller-steps": 1,
        "enas-num-aggregate": 1, "enas-derive-samples": 3, "enas-lstm-size": 8, "smash-candidates": 4,
        "smash-hyper-channels": 8, "pdarts-dropout": "0,0,0", "adra-iterations": 5, "adra-restarts": 1}


def _capture(cfg, server_round=2):
    """One client round of the configured paradigm as the eavesdropper records it, and its batch."""
    paradigm = get_paradigm(cfg.paradigm.paradigm)
    dataset, split = client_data(cfg.data, cfg.run.seed, 0, 2)
    arrays = {k: np.asarray(v) for k, v in paradigm.initial_arrays(cfg, dataset.spec).items()}
    model_arrays, state = paradigm.server_configure(cfg, server_round, arrays)
    reply = paradigm.client_round(cfg, cfg.search, {**model_arrays, **state}, dataset, split, seed=[0, 1, 0],
                                  server_round=server_round)
    sent = {**model_arrays, **state}
    capture = Capture("r002-n1", server_round, 1, 0,
                      {k: v for k, v in sent.items() if k.startswith("alpha")},
                      {k: v.numpy() for k, v in reply.arrays.items() if k.startswith("alpha")},
                      {k: v for k, v in sent.items() if not k.startswith("alpha")},
                      {"alpha-optimizer": "sgd", "alpha-lr": 0.1, "alpha-batch-size": 2, "local-steps": 1},
                      reply.metrics)
    idx = reply.audit["alpha-indices"]
    return capture, dataset.x[idx], F.one_hot(dataset.y[idx], dataset.spec.num_classes).float(), dataset.spec


def test_the_pdarts_replica_predicts_the_clients_update_exactly():
    # round 2 is stage 1: α has 5 columns, the replica must be the stage's pruned network
    cfg = parse_config({**TINY, "paradigm": "pdarts", "num-server-rounds": 3})
    capture, x, y, spec = _capture(cfg)
    assert capture.alpha_t1["alpha"].shape == (3, 5)
    problem, known = ADRA(cfg.attack).problem(capture, Knowledge(cfg, spec))
    assert known["theta-knowledge"] == "wire θ_t1" and known["fidelity"] == "exact"
    v = problem.victim
    predicted = replay(problem.proc, v.alpha_flat[None], lambda k, a: v.grads(x[None], y[None], a))[0]
    torch.testing.assert_close(predicted, problem.observed, rtol=1e-4, atol=1e-7)


def test_the_enas_replica_is_reinforce_on_its_best_guess_and_sees_no_pixel():
    cfg = parse_config({**TINY, "paradigm": "enas"})
    capture, x, y, spec = _capture(cfg, server_round=1)
    problem, _ = ADRA(cfg.attack).problem(capture, Knowledge(cfg, spec))
    v = problem.victim
    assert problem.proc.optimizer == "adam" and problem.proc.eps == 1e-3 and problem.proc.beta1 == 0.0
    # the predicted gradient, by hand: (R − b')·∇(−log π(a)) with a the controller's greedy architecture
    model = v.model
    theta = {k: t[0] for k, t in v.thetas.items()}
    buffers = {k: b.clone() for k, b in v.buffers.items()}
    with torch.no_grad():
        logits = functional_call(model, {**theta, **buffers}, (x,), {"arch": v.arch})
    reward = float((logits.argmax(1) == y.argmax(1)).float().mean()) + cfg.paradigm.enas_entropy_weight * v.entropy
    b = v.baseline - (1 - cfg.paradigm.enas_baseline_decay) * (v.baseline - reward)
    ctrl = model.alpha_controller
    params = list(ctrl.parameters())
    for p in params:  # the replica froze them; its gradients go through functional_call
        p.requires_grad_(True)
    nlp, _ = ctrl.score(v.arch)
    grads = torch.autograd.grad(nlp, params, allow_unused=True)
    by_hand = torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads)])
    torch.testing.assert_close(v.grads(x[None], y[None])[0], (reward - b) * by_hand, rtol=1e-4, atol=1e-8)
    # the reward is an accuracy: no input direction changes the update
    rank, size = jacobian_rank(v, x, y)
    assert rank == 0 and size == x.numel()


def test_smash_captures_fail_with_the_reason():
    cfg = parse_config({**TINY, "paradigm": "smash"})
    capture, _, _, spec = _capture(cfg, server_round=1)
    rec = ADRA(cfg.attack).reconstruct([capture], Knowledge(cfg, spec))[0]
    assert rec.status == "failed" and "sends no architecture gradient" in rec.reason


@pytest.mark.parametrize("name, target", [("pdarts", "supernet"), ("enas", "derived"), ("smash", "supernet")])
def test_amia_attacks_the_final_model_of_every_paradigm(name, target, tmp_path):
    cfg = parse_config({**TINY, "paradigm": name, "num-server-rounds": 2, "local-steps": 2, "alpha-batch-size": 4,
                        "amia-shadows": "cnn,searched", "amia-num-shadows": 2, "amia-target": target,
                        "amia-retrain-epochs": 1, "amia-mlp-epochs": 3, "amia-attacks": "mlp,loss", "max-samples": 200})
    arrays = run_federation(cfg, 2)
    atomic_write_json(tmp_path / "config.json", {"config": cfg.flat(), "federation": {"supernodes": 2}})
    atomic_save_npz(tmp_path / "model.npz", arrays)
    metrics = json.loads((run_amia(tmp_path) / "metrics.json").read_text())
    assert metrics["target"]["kind"] == target
    assert {r["shadow"] for r in metrics["results"]} == {"cnn", "searched"}
    assert all(0 <= r["auc"] <= 1 for r in metrics["results"])
    if target == "derived":  # the paradigm's final architecture, retrained
        spec = client_data(cfg.data, 0, 0, 2)[0].spec
        assert metrics["target"]["genotype"] == get_paradigm(name).genotype(cfg, spec, arrays).pretty()
