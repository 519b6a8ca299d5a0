"""ENAS against its reference: the controller's REINFORCE estimate, computed by hand on a tiny case."""

import numpy as np
import pytest
import torch

from fednas.config import parse_config
from fednas.data import client_data
from fednas.paradigms import get_paradigm
from fednas.paradigms.arch import OP_CHOICES, arch_genotype
from fednas.paradigms.controller import Controller, Reinforce, controller_optimizer, policy_gradient
from fednas.paradigms.enas import BASELINE, SCORES
from fednas.paradigms.federation import run_federation
from fednas.paradigms.ranking import candidates_of
from fednas.privacy import PrivateAlphaGradient

TINY = {"paradigm": "enas", "dag-nodes": 3, "channels": 4, "local-steps": 2, "batch-size": 8, "alpha-batch-size": 4,
        "max-samples": 300, "enas-controller-steps": 2, "enas-num-aggregate": 3, "enas-derive-samples": 4,
        "enas-lstm-size": 8}


def _one_decision_controller():
    """P = 2 nodes, k = 1: one input decision (a single choice, log π = 0) and one op decision,
    with raw logits (no tanh): −log π(op) has gradient softmax(logits) − onehot(op) in b_soft."""
    torch.manual_seed(3)
    return Controller(nodes=2, k=1, lstm_size=4, tanh_constant=0.0)


def test_the_policy_gradient_equals_the_hand_computed_reinforce_estimate():
    ctrl = _one_decision_controller()
    archs = [((( 0, OP_CHOICES[o]),),) for o in (2, 5, 2)]
    # π over ops, read off the controller one arch at a time
    p = np.array([np.exp(-ctrl.score(((( 0, op),),))[0].item()) for op in OP_CHOICES])
    assert p.sum() == pytest.approx(1.0, abs=1e-6)
    entropy = float(-(p * np.log(p)).sum())
    # rewards and the moving-average baseline, by hand: b <- b - (1 - d)(b - R), then R - b
    accs, lam, decay, b = [0.5, 0.25, 1.0], 0.1, 0.9, 0.2
    rl = Reinforce(lam, decay, b)
    advantages = []
    for acc, arch in zip(accs, archs):
        _, ent = ctrl.score(arch)
        assert float(ent) == pytest.approx(entropy, rel=1e-5)  # the input decision has one choice: H = 0
        reward = acc + lam * entropy
        b = b - (1 - decay) * (b - reward)
        advantages.append(reward - b)
        assert rl.advantage(rl.reward(acc, float(ent))) == pytest.approx(reward - b)
    expected = np.zeros(len(OP_CHOICES))
    for adv, o in zip(advantages, (2, 5, 2)):
        expected += adv * (p - np.eye(len(OP_CHOICES))[o])
    expected /= len(archs)
    grads = dict(zip([n for n, _ in ctrl.named_parameters()], policy_gradient(ctrl, archs, advantages)))
    np.testing.assert_allclose(grads["b_soft"].numpy().ravel(), expected, rtol=1e-5, atol=1e-7)


def test_the_policy_gradient_matches_finite_differences_in_every_parameter():
    torch.manual_seed(0)
    ctrl = Controller(nodes=4, k=2, lstm_size=5).double()
    gen = torch.Generator().manual_seed(1)
    archs = [ctrl.sample(gen)[0] for _ in range(2)]
    advantages = [0.3, -0.7]
    grads = policy_gradient(ctrl, archs, advantages)
    params = list(ctrl.parameters())
    with torch.no_grad():
        for p, g in zip(params, grads):
            flat = p.view(-1)
            for idx in torch.randperm(flat.numel(), generator=gen)[:3]:
                def loss():
                    return sum(a * ctrl.score(arch)[0] for a, arch in zip(advantages, archs)) / len(archs)
                old = flat[idx].item()
                flat[idx] = old + 1e-6
                up = loss().item()
                flat[idx] = old - 1e-6
                down = loss().item()
                flat[idx] = old
                assert g.view(-1)[idx].item() == pytest.approx((up - down) / 2e-6, rel=1e-4, abs=1e-8)


def test_samples_follow_the_policy():
    ctrl = _one_decision_controller()
    p = np.array([np.exp(-ctrl.score(((( 0, op),),))[0].item()) for op in OP_CHOICES])
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        counts = np.bincount([OP_CHOICES.index(ctrl.sample(gen)[0][0][0][1]) for _ in range(3000)],
                             minlength=len(OP_CHOICES))
    assert np.abs(counts / 3000 - p).max() < 4 * np.sqrt(p.max() / 3000)


def test_the_reference_biases_the_first_samples_towards_separable_convolutions():
    torch.manual_seed(0)
    ctrl = Controller(nodes=2, k=1)
    p = {op: np.exp(-ctrl.score(((( 0, op),),))[0].item()) for op in OP_CHOICES}
    sep = [op for op in OP_CHOICES if op in (4, 5)]  # sep_conv_3x3, sep_conv_5x5
    assert min(p[o] for o in sep) > max(p[o] for o in OP_CHOICES if o not in sep)


def test_a_round_trains_the_child_and_the_controller_and_ranks_the_candidates():
    cfg = parse_config(TINY)
    paradigm = get_paradigm("enas")
    dataset, split = client_data(cfg.data, cfg.run.seed, 0, 2)
    arrays = {k: np.asarray(v) for k, v in paradigm.initial_arrays(cfg, dataset.spec).items()}
    model_arrays, state = paradigm.server_configure(cfg, 1, arrays)
    reply = paradigm.client_round(cfg, cfg.search, {**model_arrays, **state}, dataset, split, seed=[0, 1, 0])
    changed = {k for k in reply.arrays if not np.allclose(reply.arrays[k].numpy(), model_arrays[k])}
    assert {"alpha_controller.w_lstm", "alpha_controller.b_soft", BASELINE, SCORES} <= changed
    assert any(k.startswith("edges.") for k in changed)  # shared child weights trained
    assert reply.arrays[SCORES].shape == (4,) and reply.arrays[SCORES].min() >= 0 and reply.arrays[SCORES].max() <= 1
    # each controller step used num-aggregate batches of B samples of D^α, and only D^α
    assert reply.audit["alpha-batch-sizes"] == [3 * 4, 3 * 4]
    assert set(reply.audit["alpha-indices"]) <= set(split.alpha.tolist())
    assert reply.metrics["controller-steps"] == 2


def test_the_final_architecture_is_the_best_ranked_candidate():
    cfg = parse_config({**TINY, "num-server-rounds": 2})
    arrays = run_federation(cfg, 2)
    paradigm = get_paradigm("enas")
    spec = client_data(cfg.data, 0, 0, 2)[0].spec
    best = int(np.argmax(arrays[SCORES]))
    assert paradigm.genotype(cfg, spec, arrays) == arch_genotype(candidates_of(arrays, 3, 2)[best])
    assert paradigm.model(cfg, spec, arrays).arch == candidates_of(arrays, 3, 2)[best]


def test_the_private_controller_step_clips_every_example():
    cfg = parse_config(TINY)
    paradigm = get_paradigm("enas")
    dataset, split = client_data(cfg.data, cfg.run.seed, 0, 2)
    arrays = {k: np.asarray(v) for k, v in paradigm.initial_arrays(cfg, dataset.spec).items()}
    model_arrays, state = paradigm.server_configure(cfg, 1, arrays)
    clip = 1e-3
    rule = PrivateAlphaGradient(clip, 0.0, seed=5)
    reply = paradigm.client_round(cfg, cfg.search, {**model_arrays, **state}, dataset, split, seed=[0, 1, 0],
                                  alpha_gradient=rule)
    report = rule.report()
    assert report["dp-sgd-steps"] == 2
    assert report["dp-sgd-sample-rate"] == pytest.approx(min(1.0, 3 * 4 / len(split.alpha)))
    assert set(reply.audit["alpha-indices"]) <= set(split.alpha.tolist())
    # the private gradient of one step: 6 examples, each clipped to C, divided by the expected 6
    from fednas.paradigms.enas import build_enas, private_step
    model = build_enas(cfg, dataset.spec)
    ctrl = model.alpha_controller
    gen = torch.Generator().manual_seed(0)
    archs = [ctrl.sample(gen)[0] for _ in range(3)]
    corrects = [(np.array([1.0, 0.0, 1.0]), 1.0), (np.array([0.0, 1.0]), 1.0), (np.array([1.0]), 1.0)]
    rule = PrivateAlphaGradient(clip, 0.0, seed=5)
    rule.sampler(np.arange(10), 6, np.random.default_rng(0))  # sets q and |D^α|: expected 6 examples
    grads = private_step(rule, ctrl, archs, corrects, Reinforce(0.0, 0.9, 0.5))
    norm = float(torch.sqrt(sum((g**2).sum() for g in grads)))
    assert 0 < norm <= clip + 1e-9


def test_the_controller_optimizer_is_the_references_adam():
    opt = controller_optimizer([torch.nn.Parameter(torch.zeros(1))], 0.0035)
    group = opt.param_groups[0]
    assert group["betas"] == (0.0, 0.999) and group["eps"] == 1e-3 and group["lr"] == 0.0035
