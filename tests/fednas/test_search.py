import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from fednas.config import parse_config
from fednas.data import client_data
from fednas.search import Proximal, SecondOrder, StepContext, local_search
from fednas.spaces import build_supernet


def _setup(overrides=None, seed=0):
    cfg = parse_config({"dag-nodes": 4, "channels": 4, "batch-size": 16, "alpha-batch-size": 16, "theta-lr": 0.1,
                        "max-samples": 600, **(overrides or {})})
    dataset, split = client_data(cfg.data, cfg.run.seed, 0, 2)
    model = build_supernet(cfg.space, dataset.spec, seed)
    return cfg, dataset, split, model


def test_a_few_search_steps_lower_the_loss_on_digits():
    cfg, ds, split, model = _setup({"local-steps": 30})
    idx = split.theta
    result = local_search(model, ds, split, cfg.search, seed=[0, 1, 0])
    model.train()  # batch statistics on both sides: compare like with like
    with torch.no_grad():
        after = F.cross_entropy(model(ds.x[idx]), ds.y[idx]).item()
        model_before = build_supernet(cfg.space, ds.spec, 0).train()
        before = F.cross_entropy(model_before(ds.x[idx]), ds.y[idx]).item()
    assert after < before - 0.2
    assert result.steps == 30 and len(result.alpha_batches) == 30


def test_alpha_moves_only_through_alpha_steps_and_uses_only_d_alpha():
    cfg, ds, split, model = _setup({"local-steps": 3})
    a0 = model.alpha.detach().clone()
    result = local_search(model, ds, split, cfg.search, seed=[0, 1, 0])
    assert not torch.equal(model.alpha.detach(), a0)
    used = {i for b in result.alpha_batches for i in b}
    assert used <= set(split.alpha.tolist())
    assert all(len(b) == 16 for b in result.alpha_batches)


def test_search_is_determined_by_the_seed():
    runs = []
    for _ in range(2):
        cfg, ds, split, model = _setup({"local-steps": 3})
        r = local_search(model, ds, split, cfg.search, seed=[5, 2, 0])
        runs.append((model.alpha.detach().clone(), r.alpha_batches))
    assert torch.equal(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]


@pytest.mark.parametrize("epochs", [1, 2])
def test_local_epochs_replace_local_steps(epochs, monkeypatch):
    """Watch the D^θ batches the θ steps actually consume: each epoch is one full pass."""
    import fednas.search

    consumed: list[list[int]] = []

    def watched(indices, batch_size, rng):
        for batch in fednas.data.batches(indices, batch_size, rng):
            if set(batch.tolist()) <= theta:
                consumed.append(batch.tolist())
            yield batch

    cfg, ds, split, model = _setup({"local-epochs": epochs, "local-steps": 1})
    theta = set(split.theta.tolist())
    monkeypatch.setattr(fednas.search, "batches", watched)
    r = local_search(model, ds, split, cfg.search, seed=0)
    assert r.steps == len(consumed) and all(len(b) == 16 for b in consumed)
    per_pass = len(consumed) // epochs
    for e in range(epochs):
        seen = [i for b in consumed[e * per_pass : (e + 1) * per_pass] for i in b]
        assert len(seen) == len(set(seen))  # no sample twice within a pass
        assert len(theta) - len(seen) < 16  # and every sample but the dropped remainder


def test_alpha_l2_penalty_pulls_alpha_toward_zero():
    norms = []
    for l2 in (0.0, 50.0):
        cfg, ds, split, model = _setup({"local-steps": 5, "alpha-l2": l2, "alpha-optimizer": "sgd", "alpha-lr": 0.01})
        with torch.no_grad():
            model.alpha.fill_(0.5)
        local_search(model, ds, split, cfg.search, seed=0)
        norms.append(model.alpha.detach().norm().item())
    assert norms[1] < norms[0]


def test_second_order_step_matches_exact_unrolled_gradient():
    """The finite-difference Hessian-vector product against autograd through θ' itself."""
    cfg, ds, split, model = _setup({"theta-momentum": 0.0, "theta-weight-decay": 1e-3, "theta-lr": 0.05})
    model = model.double()
    xt, yt = ds.x[split.theta[:8]].double(), ds.y[split.theta[:8]]
    xv, yv = ds.x[split.alpha[:8]].double(), ds.y[split.alpha[:8]]
    opt = torch.optim.SGD(model.weight_parameters(), lr=0.05)
    ctx = StepContext((xt, yt), opt, cfg.search)
    fd_grads, _, _ = SecondOrder(r=1e-4)(model, (xv, yv), ctx)

    # exact: d/dα L_val(θ − ξ(∇_θ L_train(θ, α) + wd θ), α)
    weights = dict(model.named_weight_parameters())
    alpha = model.alpha
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    loss_t = F.cross_entropy(functional_call(model, {**weights, "alpha": alpha, **buffers}, (xt,)), yt)
    g = torch.autograd.grad(loss_t, list(weights.values()), create_graph=True)
    unrolled = {n: w - 0.05 * (gi + 1e-3 * w) for (n, w), gi in zip(weights.items(), g)}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    loss_v = F.cross_entropy(functional_call(model, {**unrolled, "alpha": alpha, **buffers}, (xv,)), yv)
    (exact,) = torch.autograd.grad(loss_v, [alpha])
    torch.testing.assert_close(fd_grads[0], exact, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("fused", [True, False])
def test_second_order_search_runs_and_leaves_bn_statistics_to_the_real_steps(fused):
    """The unrolled step's extra forwards (θ', θ ± rv on D^θ, D^α at θ') must not touch the
    running statistics: after k steps every BatchNorm has counted exactly the k θ steps
    (a leaking forward would count 3 or more per step), and the θ steps did update them."""
    cfg, ds, split, _ = _setup({"local-steps": 2, "alpha-order": "second", "fused": fused})
    model = build_supernet(cfg.space, ds.spec, 0)
    before = {n: b.clone() for n, b in model.named_buffers()}
    r = local_search(model, ds, split, cfg.search, seed=0)
    assert r.steps == 2 and np.isfinite(list(r.metrics.values())).all()
    counts = {n: int(b) for n, b in model.named_buffers() if n.endswith("num_batches_tracked")}
    assert counts and set(counts.values()) == {2}, counts
    name = next(n for n in before if n.endswith("running_mean"))
    assert not torch.equal(dict(model.named_buffers())[name], before[name])  # the θ steps did update it


def test_alpha_steps_leave_batchnorm_running_statistics_alone():
    """D^α reaches the model only through α: BN running statistics learn from D^θ alone."""
    cfg, ds, split, model = _setup({"local-steps": 3})
    from fednas.search import FirstOrder, StepContext, frozen_running_statistics

    before = {n: b.clone() for n, b in model.named_buffers()}
    opt = torch.optim.SGD(model.weight_parameters(), lr=0.1)
    batch = (ds.x[split.alpha[:8]], ds.y[split.alpha[:8]])
    with frozen_running_statistics(model):
        FirstOrder()(model, batch, StepContext(batch, opt, cfg.search))
    for n, b in model.named_buffers():
        assert torch.equal(b, before[n]), n
    model(batch[0])  # outside the block a train-mode forward does update them
    assert any(not torch.equal(b, before[n]) for n, b in model.named_buffers() if n.endswith("running_mean"))


def test_the_proximal_term_adds_the_gradient_of_mu_half_the_squared_distance():
    cfg, ds, split, model = _setup()
    prox = Proximal.at(model, 0.7, theta=True, alpha=True)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    named = list(model.named_parameters())
    term = 0.35 * sum(((p - prox.anchors[n]) ** 2).sum() for n, p in named)
    expected = torch.autograd.grad(term, [p for _, p in named])
    got = prox.gradients(named, [torch.zeros_like(p) for _, p in named])
    for (n, _), e, g in zip(named, expected, got):
        torch.testing.assert_close(g, e, msg=n)
    theta_only = Proximal.at(model, 0.7, theta=True, alpha=False)
    assert set(theta_only.anchors) == {n for n, _ in model.named_weight_parameters()}


def test_a_large_mu_keeps_the_local_weights_near_the_global_ones():
    distances = []
    for mu in (0.0, 5.0):  # theta-lr 0.1: lr·mu well inside SGD's stable range
        cfg, ds, split, model = _setup({"local-steps": 8, "proximal-alpha": True, "alpha-lr": 0.05})
        prox = Proximal.at(model, mu, theta=True, alpha=True)
        local_search(model, ds, split, cfg.search, seed=[0, 1, 0], proximal=prox)
        distances.append([float(torch.sqrt(sum(((p.detach() - prox.anchors[n]) ** 2).sum() for n, p in named)))
                          for named in (model.named_weight_parameters(), model.named_arch_parameters())])
    (theta0, alpha0), (theta1, alpha1) = distances
    assert theta1 < 0.5 * theta0 and alpha1 < alpha0
