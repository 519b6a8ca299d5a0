"""The attacker's batched gradients against plain autograd, and the optimizer replay
against the client's own local search."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from attacks.adra.client_model import AlphaProcedure, replay
from attacks.adra.theta import surrogate_theta
from attacks.adra.victim import Victim
from fednas.config import parse_config
from fednas.data import ClientSplit, ImageSet
from fednas.search import Proximal, local_search
from fednas.spaces import InputSpec, build_supernet

SPEC = InputSpec(1, 6, 5)


def _cfg(**kw):
    return parse_config({"dag-nodes": 3, "channels": 4, "head": "flatten", **kw})


def test_batched_gradients_equal_plain_autograd_per_batch():
    cfg = _cfg()
    model = build_supernet(cfg.space, SPEC, 1)
    model.train()
    alpha = {n: p.detach() + 0.3 * torch.randn_like(p) for n, p in model.named_arch_parameters()}
    thetas = [model.weight_state(), surrogate_theta(model, 0.25, 1, 5)[0]]
    victim = Victim(cfg.space, SPEC, alpha, thetas, alpha_l2=0.01)
    x = torch.rand(4, 2, 1, 6, 6, requires_grad=True)  # 4 independent batches of B = 2
    y = F.one_hot(torch.randint(0, 5, (4, 2)), 5).float()
    draw = torch.tensor([0, 1, 1, 0])
    g = victim.grads(x, y, draw=draw)
    target = torch.randn_like(g)
    (gx,) = torch.autograd.grad(((g - target) ** 2).sum(), x)
    for i in range(4):
        ref = copy.deepcopy(model)
        ref.load_arrays({**alpha, **{k: torch.as_tensor(v) for k, v in thetas[int(draw[i])].items()}})
        xi = x[i].detach().clone().requires_grad_(True)
        loss = F.cross_entropy(ref(xi), y[i].argmax(1)) + 0.01 * sum((a**2).sum() for a in ref.arch_parameters())
        gi = torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss, ref.arch_parameters(), create_graph=True)])
        (gxi,) = torch.autograd.grad(((gi - target[i]) ** 2).sum(), xi)
        torch.testing.assert_close(g[i], gi, rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(gx[i], gxi, rtol=1e-3, atol=1e-6)


def test_victims_sharing_one_model_each_hold_their_own_theta():
    # a victim keeps its θ in the model between calls (only α is swapped per call); another
    # victim of the same model must swap its own back in, whichever ran last
    cfg = _cfg()
    model = build_supernet(cfg.space, SPEC, 1)
    assert getattr(model, "supports_sets", False)  # the path that holds θ
    alpha = {n: p.detach() for n, p in model.named_arch_parameters()}
    thetas = surrogate_theta(model, 0.25, 2, 7)
    x = torch.rand(3, 1, 1, 6, 6)
    y = F.one_hot(torch.tensor([[0], [3], [4]]), 5).float()
    first = [Victim(cfg.space, SPEC, alpha, [t], model=copy.deepcopy(model)).grads(x, y) for t in thetas]
    a, b = (Victim(cfg.space, SPEC, alpha, [t], model=model) for t in thetas)
    for _ in range(2):
        torch.testing.assert_close(a.grads(x, y), first[0])
        torch.testing.assert_close(b.grads(x, y), first[1])
    assert not torch.allclose(first[0], first[1])


@pytest.mark.parametrize("optimizer, mu", [("adam", None), ("sgd", None), ("adam", 20.0), ("sgd", 20.0)])
def test_replay_with_the_true_batches_reproduces_the_clients_delta_alpha(optimizer, mu):
    # θ barely moves (theta-lr 1e-9), so the replay's one approximation (θ fixed) is exact;
    # mu: FedProx's term on α (proximal-alpha), which the replay knows from the train config
    cfg = _cfg(**{"alpha-optimizer": optimizer, "local-steps": 3, "alpha-batch-size": 2, "alpha-lr": 0.01,
                  "theta-lr": 1e-9, "theta-momentum": 0.0, "theta-weight-decay": 0.0, "alpha-l2": 0.05,
                  "proximal-alpha": mu is not None})
    gen = torch.Generator().manual_seed(0)
    data = ImageSet("toy", torch.rand(40, 1, 6, 6, generator=gen), torch.randint(0, 5, (40,), generator=gen), 5)
    split = ClientSplit(0, np.arange(20), np.arange(20, 36), np.arange(36, 40))
    model = build_supernet(cfg.space, SPEC, 2)
    start = copy.deepcopy(model)
    proximal = None if mu is None else Proximal.at(model, mu, theta=False, alpha=True)
    result = local_search(model, data, split, cfg.search, [3], "cpu", proximal=proximal)
    observed = torch.cat([(model.arch_state()[n] - start.arch_state()[n]).reshape(-1) for n in model.arch_state()])
    victim = Victim(cfg.space, SPEC, start.arch_state(), [start.weight_state()], alpha_l2=0.05)
    batches = [torch.as_tensor(b) for b in result.alpha_batches]
    x = torch.stack([data.x[b] for b in batches])[None]  # (1, K, B, C, H, W)
    y = F.one_hot(torch.stack([data.y[b] for b in batches]), 5).float()[None]
    proc = AlphaProcedure.from_settings(cfg.search, 3, mu or 0.0)
    pred = replay(proc, victim.alpha_flat[None], lambda k, a: victim.grads(x[:, k], y[:, k], a))[0]
    torch.testing.assert_close(pred, observed, rtol=2e-3, atol=1e-7)
    assert float(F.cosine_similarity(pred, observed, dim=0)) > 0.9999
