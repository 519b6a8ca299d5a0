"""θ between the client's unrolled α steps: the aux pool's mean-gradient path, read per step by the victim."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from attacks.adra.attack import ADRA
from attacks.adra.solver import match_at
from attacks.adra.theta import PATH_IMAGES, sampled_theta_paths, server_init_theta, theta_path
from attacks.adra.victim import Victim
from attacks.base import Knowledge
from fednas.config import parse_config
from fednas.data import ClientSplit, ImageSet
from fednas.spaces import build_supernet
from tests.attacks.test_adra import SPEC, _blobs, make_capture

BASE = {"dag-nodes": 4, "channels": 4, "head": "flatten", "alpha-optimizer": "adam", "local-steps": 3,
        "alpha-batch-size": 1, "batch-size": 8, "theta-lr": 0.2, "theta-momentum": 0.9, "theta-weight-decay": 1e-3}


@pytest.fixture(scope="module")
def setup():
    cfg = parse_config(BASE)
    gen = torch.Generator().manual_seed(0)
    x = _blobs(80, gen)
    data = ImageSet("blobs", x, torch.randint(0, 4, (80,), generator=gen), 4)
    split = ClientSplit(0, np.arange(0, 30), np.arange(30, 50), np.arange(0))
    aux = np.arange(50, 80)
    return cfg, data, split, Knowledge(cfg, SPEC, data.x[aux].numpy(), data.y[aux].numpy())


def _path_inputs(cfg, knowledge):
    """The supernet at its seeded start, its α, θ_0 and the aux pool as tensors."""
    model = build_supernet(cfg.space, SPEC, cfg.run.seed)
    alpha = {k: v.clone() for k, v in model.arch_state().items()}
    return (model, alpha, server_init_theta(cfg, SPEC), torch.as_tensor(knowledge.aux_images),
            torch.as_tensor(knowledge.aux_labels))


def _client_theta_step(weights, grads, opt, s) -> None:
    """The client's θ step as fednas.search takes it: set the gradients, clip, step."""
    for p, g in zip(weights, grads):
        p.grad = g
    if s.theta_grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(weights, s.theta_grad_clip)
    opt.step()


def test_the_path_takes_the_clients_theta_steps_on_the_aux_pools_mean_batch_gradient(setup):
    cfg, _, _, knowledge = setup
    s = cfg.search
    model, alpha, theta0, ax, ay = _path_inputs(cfg, knowledge)
    path = theta_path(cfg, SPEC, s, alpha, theta0, 3, ax, ay, seed=0)
    assert len(path) == 3 and all(torch.equal(path[0][n], theta0[n]) for n in theta0)
    # reference: the same steps written out, each gradient the size-weighted mean over client-sized batches
    model.train()
    named = model.named_weight_parameters()
    weights = [p for _, p in named]
    opt = torch.optim.SGD(weights, lr=s.theta_lr, momentum=s.theta_momentum, weight_decay=s.theta_weight_decay)
    assert len(ax) <= PATH_IMAGES
    for k in (1, 2):
        grads = [torch.zeros_like(p) for p in weights]
        for i in range(0, len(ax), s.batch_size):
            xb, yb = ax[i : i + s.batch_size], ay[i : i + s.batch_size]
            g = torch.autograd.grad(F.cross_entropy(model(xb), yb), weights)
            grads = [a + len(xb) / len(ax) * b for a, b in zip(grads, g)]
        _client_theta_step(weights, grads, opt, s)
        for n, p in named:
            assert torch.allclose(path[k][n], p.detach(), rtol=1e-4, atol=1e-6), (k, n)
    assert any(not torch.equal(path[1][n], path[0][n]) for n in theta0)


def test_the_victim_reads_one_theta_per_step_and_the_last_beyond(setup):
    cfg, _, _, _ = setup
    model = build_supernet(cfg.space, SPEC, cfg.run.seed)
    alpha = model.arch_state()
    a = server_init_theta(cfg, SPEC)
    b = {n: 1.5 * v for n, v in a.items()}
    pair = Victim(cfg.space, SPEC, alpha, [a, b])
    pair.per_step(2)
    assert pair.draws == 1
    x = _blobs(3, torch.Generator().manual_seed(1)).unsqueeze(1)
    y = F.one_hot(torch.tensor([0, 1, 2]), 4).float().unsqueeze(1)
    for step, theta in ((0, a), (1, b), (4, b)):
        assert torch.allclose(pair.grads(x, y, step=step), Victim(cfg.space, SPEC, alpha, [theta]).grads(x, y),
                              rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="cannot be read as draws of 3 steps"):
        Victim(cfg.space, SPEC, alpha, [a, b]).per_step(3)


def test_moving_theta_between_adam_steps_brings_the_truth_nearer_its_capture(setup):
    cfg, data, split, knowledge = setup
    held, moved = [], []
    for seed in range(3):
        cap, used = make_capture(cfg, data, split, seed=seed)
        for mode, out in (("held", held), ("aux", moved)):
            run = parse_config({**BASE, "theta-between-steps": mode})
            problem, known = ADRA(run.attack).problem(cap, dataclasses.replace(knowledge, config=run))
            assert ("aux pool's mean gradient" in known["fidelity"]) == (mode == "aux")
            shape = (problem.steps, problem.batch, *problem.image_shape)
            out.append(match_at(problem, data.x[used].reshape(shape), data.y[used].reshape(shape[:2])))
    assert all(m < h for m, h in zip(moved, held)), (moved, held)


def test_sampled_paths_take_the_clients_theta_step_on_one_random_aux_batch_each(setup):
    cfg, _, _, knowledge = setup
    s = cfg.search
    model, alpha, theta0, ax, ay = _path_inputs(cfg, knowledge)
    paths = sampled_theta_paths(cfg, SPEC, s, alpha, theta0, 3, ax, ay, seed=5, draws=2)
    assert len(paths) == 2 and all(len(p) == 3 for p in paths)
    # reference: the client's loop written out, its D^θ batches drawn from the aux pool by the same generator
    gen = torch.Generator().manual_seed(5)
    for path in paths:
        model = build_supernet(cfg.space, SPEC, cfg.run.seed)
        model.load_arrays(alpha)
        model.train()
        named = model.named_weight_parameters()
        weights = [p for _, p in named]
        opt = torch.optim.SGD(weights, lr=s.theta_lr, momentum=s.theta_momentum, weight_decay=s.theta_weight_decay)
        assert all(torch.equal(path[0][n], theta0[n]) for n in theta0)
        for k in (1, 2):
            idx = torch.randperm(len(ax), generator=gen)[:s.batch_size]
            g = torch.autograd.grad(F.cross_entropy(model(ax[idx]), ay[idx]), weights)
            _client_theta_step(weights, g, opt, s)
            for n, p in named:
                assert torch.allclose(path[k][n], p.detach(), rtol=1e-4, atol=1e-6), (k, n)
    assert any(not torch.equal(paths[0][2][n], paths[1][2][n]) for n in theta0)  # the batches differ


def test_sampled_paths_are_the_victims_draws_and_the_report_says_so(setup):
    cfg, data, split, knowledge = setup
    cap, _ = make_capture(cfg, data, split, seed=0)
    run = parse_config({**BASE, "theta-between-steps": "sampled", "theta-paths": 3})
    problem, known = ADRA(run.attack).problem(cap, dataclasses.replace(knowledge, config=run))
    assert (problem.victim.draws, problem.victim.steps) == (3, 3)
    assert "draws 3 paths" in known["fidelity"]


def test_spread_across_sampled_paths_per_step_vanishes_when_the_paths_are_one(setup):
    from attacks.adra.pairs import one_step_varied, theta_spread

    cfg, data, split, knowledge = setup
    cap, _ = make_capture(cfg, data, split, seed=0)
    run = parse_config({**BASE, "theta-between-steps": "sampled", "theta-paths": 3})
    problem, _ = ADRA(run.attack).problem(cap, dataclasses.replace(knowledge, config=run))
    x = torch.as_tensor(knowledge.aux_images[:18]).float().view(6, 3, 1, SPEC.channels, SPEC.image_size, SPEC.image_size)
    y = torch.as_tensor(knowledge.aux_labels[:18]).long().view(6, 3, 1)
    xs, ys = one_step_varied(x, y, 2)
    assert torch.equal(xs[:, :2], x[:1, :2].expand(6, -1, -1, -1, -1, -1)) and torch.equal(xs[:, 2], x[:, 2])
    assert torch.equal(ys[:, 2], y[:, 2]) and (ys[:, :2] == y[:1, :2]).all()
    whole, last = theta_spread(problem, x, y), theta_spread(problem, xs, ys)
    assert whole["draws"] == last["draws"] == 3 and whole["images"] == 6 and whole["across-theta"] > 0
    with pytest.raises(ValueError, match="K x B = 3 x 1"):
        theta_spread(problem, x[:, :2], y[:, :2])
    v = problem.victim
    for t in v.thetas.values():  # every path made the first (draw d's step k is entry d * steps + k)
        t.copy_(t[: v.steps].repeat(v.draws, *[1] * (t.dim() - 1)))
    same = theta_spread(problem, xs, ys)
    assert same["across-theta"] < 1e-10 and same["retrieval"] == 1.0
