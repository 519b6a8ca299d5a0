"""The fused supernets against their per-edge references: same names, values and derivatives.

Everything in float64 with random θ, α and running statistics, so that the tolerance is
tight: the two forms differ only in the order of floating-point sums.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, jacfwd, vmap

from fednas.config import ACTIVATIONS, parse_config
from fednas.spaces import (DagSupernet, DartsSupernet, FusedDagSupernet, FusedDartsSupernet, InputSpec,
                           build_supernet)
from fednas.spaces.depthwise import depthwise

TOL = {"rtol": 1e-9, "atol": 1e-11}


DAG_SPEC = InputSpec(channels=2, image_size=5, num_classes=3)  # odd size: padding edges matter
DARTS_SPEC = InputSpec(channels=1, image_size=8, num_classes=3)


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """θ and α drawn wide (so no op is negligible), running statistics away from (0, 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_((torch.rand(p.shape, generator=g, dtype=p.dtype) - 0.5) * (2.0 if name.startswith("alpha") else 1.0))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g, dtype=b.dtype))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g, dtype=b.dtype))


def _pair(space: str, seed: int = 0, **keys) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(reference, fused) built through the registry, in float64, holding the same random state."""
    cfg = parse_config({"space": space, "channels": 2, **{k.replace("_", "-"): v for k, v in keys.items()}}).space
    spec = DAG_SPEC if space == "dag" else DARTS_SPEC
    ref = build_supernet(cfg, spec, seed, fused=False).double()
    fused = build_supernet(cfg, spec, seed, fused=True).double()
    _randomise(ref, seed)
    fused.load_state_dict(ref.state_dict(), strict=True)
    return ref, fused


def _input(spec: InputSpec, batch: int = 3, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, spec.channels, spec.image_size, spec.image_size, generator=g, dtype=torch.float64)
    return x, torch.randint(0, spec.num_classes, (batch,), generator=g)


def _derivatives(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int = 2,
                 second: bool = True) -> list[torch.Tensor]:
    """Logits; ∇ of the loss w.r.t. α, θ and x; and (``second``) ∇_{x, θ, α} of <∇_α loss, v>, v random."""
    x = x.clone().requires_grad_(True)
    alphas, thetas = model.arch_parameters(), model.weight_parameters()
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    first = torch.autograd.grad(loss, [*alphas, *thetas, x], create_graph=second)
    if not second:
        return [logits.detach(), *first]
    g = torch.Generator().manual_seed(seed)
    inner = sum((d * torch.randn(d.shape, generator=g, dtype=d.dtype)).sum() for d in first[: len(alphas)])
    second = torch.autograd.grad(inner, [x, *thetas, *alphas])
    return [logits.detach(), *(d.detach() for d in first), *second]


def _assert_same(got: list[torch.Tensor], want: list[torch.Tensor]) -> None:
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want)):
        assert a.shape == b.shape, i
        torch.testing.assert_close(a, b, **TOL, msg=lambda m: f"tensor {i}: {m}")


def _assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], **TOL, msg=lambda m: f"{k}: {m}")


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("nodes", [2, 3, 5, 8])
def test_dag_fused_equals_reference_train_mode(nodes, activation):
    ref, fused = _pair("dag", seed=nodes, dag_nodes=nodes, activation=activation)
    x, y = _input(DAG_SPEC, batch=2)
    _assert_same(_derivatives(fused, x, y), _derivatives(ref, x, y))
    _assert_same_state(fused, ref)  # BatchNorm running statistics, step counters included


@pytest.mark.parametrize("head", ["gap", "flatten"])
@pytest.mark.parametrize("nodes", [3, 5])
def test_dag_fused_equals_reference_eval_mode(nodes, head):
    ref, fused = _pair("dag", seed=10 + nodes, dag_nodes=nodes, head=head, activation="tanh")
    ref.eval(), fused.eval()
    x, y = _input(DAG_SPEC, batch=2)
    _assert_same(_derivatives(fused, x, y), _derivatives(ref, x, y))
    _assert_same_state(fused, ref)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_darts_fused_equals_reference(activation):
    ref, fused = _pair("darts", seed=3, layers=3, cell_nodes=2, activation=activation)
    x, y = _input(DARTS_SPEC, batch=2)
    _assert_same(_derivatives(fused, x, y), _derivatives(ref, x, y))
    _assert_same_state(fused, ref)
    ref.eval(), fused.eval()
    _assert_same(_derivatives(fused, x, y), _derivatives(ref, x, y))


def test_darts_fused_equals_reference_default_cells():
    ref, fused = _pair("darts", seed=4, layers=3, cell_nodes=4, head="flatten")
    x, y = _input(DARTS_SPEC, batch=2)
    _assert_same(_derivatives(fused, x, y, second=False), _derivatives(ref, x, y, second=False))
    _assert_same_state(fused, ref)


@pytest.mark.parametrize("space", ["dag", "darts"])
def test_same_names_shapes_and_seeded_init(space):
    cfg = parse_config({"space": space, "dag-nodes": 4, "layers": 3, "cell-nodes": 2}).space
    spec = DAG_SPEC if space == "dag" else DARTS_SPEC
    ref, fused = build_supernet(cfg, spec, 7, fused=False), build_supernet(cfg, spec, 7)
    assert type(fused) is {"dag": FusedDagSupernet, "darts": FusedDartsSupernet}[space]
    assert type(ref) is {"dag": DagSupernet, "darts": DartsSupernet}[space]
    assert [(n, p.shape) for n, p in ref.named_parameters()] == [(n, p.shape) for n, p in fused.named_parameters()]
    assert [(n, b.shape) for n, b in ref.named_buffers()] == [(n, b.shape) for n, b in fused.named_buffers()]
    _assert_same_state(fused, ref)  # the same seed gives the same θ and α
    # θ and α move between the forms, strictly, both ways
    _randomise(fused, 1)
    ref.load_state_dict(fused.state_dict(), strict=True)
    fused2 = build_supernet(cfg, spec, 8)
    fused2.load_state_dict(ref.state_dict(), strict=True)
    _assert_same_state(fused2, fused)


def test_functional_call_updates_the_given_buffers_only():
    """With buffers passed in (as the unrolled α step does), the module's own stay untouched."""
    ref, fused = _pair("dag", seed=5, dag_nodes=4)
    x, _ = _input(DAG_SPEC)
    own = {k: v.clone() for k, v in fused.state_dict().items()}
    outs = []
    for model in (ref, fused):
        params = {n: p.detach().clone() for n, p in model.named_parameters()}
        buffers = {n: b.clone() for n, b in model.named_buffers()}
        outs.append((functional_call(model, {**params, **buffers}, (x,)), buffers))
    torch.testing.assert_close(outs[1][0], outs[0][0], **TOL)
    for k in outs[0][1]:
        torch.testing.assert_close(outs[1][1][k], outs[0][1][k], **TOL)
    for k, v in fused.state_dict().items():
        assert torch.equal(v, own[k]), k
    fused(x)  # the module's own buffers still update after the swap is undone
    ref(x)
    _assert_same_state(fused, ref)


def test_copies_and_conversions_keep_running_statistics_right():
    ref, fused = _pair("dag", seed=6, dag_nodes=4)
    x, _ = _input(DAG_SPEC)
    twin = copy.deepcopy(fused)
    twin(x)
    _assert_same_state(fused, _pair("dag", seed=6, dag_nodes=4)[1])  # the original did not move
    ref(x)
    _assert_same_state(twin, ref)
    back, ref = copy.deepcopy(twin).float().double(), ref.float().double()  # conversions replace the buffers
    back(x), ref(x)
    _assert_same_state(back, ref)
    fresh = _pair("dag", seed=9, dag_nodes=4)[1]
    fresh.load_state_dict(ref.state_dict(), assign=True)  # assign replaces them too
    fresh(x), ref(x)
    _assert_same_state(fresh, ref)


def _functional_loss(model: torch.nn.Module):
    """The model's detached parameters, and ``loss(params, x, y)`` through ``functional_call``."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = dict(model.named_buffers())

    def loss(p, x, y):
        return F.cross_entropy(functional_call(model, {**p, **buffers}, (x,)), y)

    return params, loss


def test_per_sample_gradients_through_torch_func():
    """vmap(grad(...)), the usual route to per-example gradients for DP-SGD, in eval mode."""
    ref, fused = _pair("dag", seed=8, dag_nodes=3)
    ref.eval(), fused.eval()
    x, y = _input(DAG_SPEC, batch=2)

    def per_sample(model):
        params, loss = _functional_loss(model)
        return vmap(grad(lambda p, xi, yi: loss(p, xi[None], yi[None])), in_dims=(None, 0, 0))(params, x, y)

    want, got = per_sample(ref), per_sample(fused)
    _assert_same([got[k] for k in want], [want[k] for k in want])


@pytest.mark.parametrize("kernel,dilation", [(3, 1), (5, 1), (3, 2), (5, 2)])
def test_depthwise_matches_conv2d_to_second_order(kernel, dilation):
    g = torch.Generator().manual_seed(kernel * dilation)
    x = torch.randn(2, 2, 6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 1, kernel, kernel, generator=g, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 2, 6, 5, generator=g, dtype=torch.float64)
    pad = dilation * (kernel - 1) // 2

    def derivatives(conv):
        out = conv(x, w)
        gx, gw = torch.autograd.grad((out * v).sum(), [x, w], create_graph=True)
        return [out, gx, gw, *torch.autograd.grad((gx.tanh().sum() + (gw**2).sum()), [x, w])]

    _assert_same(derivatives(lambda a, b: depthwise(a, b, dilation)),
                 derivatives(lambda a, b: F.conv2d(a, b, padding=pad, dilation=dilation, groups=2)))
    assert torch.autograd.gradgradcheck(lambda a, b: depthwise(a, b, dilation), (x, w))


def test_forward_over_reverse_jacobian_equals_reference():
    """jacfwd of the α-gradient with respect to the input (the identifiability figure's Jacobian)."""
    ref, fused = _pair("dag", seed=5, dag_nodes=3)
    ref.eval(), fused.eval()
    x, y = _input(DAG_SPEC, batch=1)

    def jacobian(model):
        params, loss = _functional_loss(model)
        alpha_grad = grad(lambda alpha, xi: loss({**params, "alpha": alpha}, xi, y))
        return jacfwd(lambda xi: alpha_grad(params["alpha"], xi))(x)

    torch.testing.assert_close(jacobian(fused), jacobian(ref), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("head", ["flatten", "gap"])
def test_independent_sample_sets_equal_separate_passes_of_the_reference(head):
    # forward(x, sets=S): S sets of samples, each with its own BatchNorm statistics and its own α,
    # must be S separate train-mode passes (the attacker's hypotheses in one call)
    ref, fused = _pair("dag", dag_nodes=4, head=head)
    fused.train()
    fused.stop_tracking_running_stats()
    ref.train()
    sets, per = 3, 2
    x, y = _input(DAG_SPEC, batch=sets * per, seed=5)
    g = torch.Generator().manual_seed(6)
    alphas = torch.randn(sets, *fused.alpha.shape, generator=g, dtype=torch.float64, requires_grad=True)
    params = {n: p.detach() for n, p in fused.named_parameters() if n != "alpha"}
    logits = functional_call(fused, {**params, "alpha": alphas}, (x,), {"sets": sets})
    losses = F.cross_entropy(logits, y, reduction="none").view(sets, per).mean(1)
    (grads,) = torch.autograd.grad(losses.sum(), alphas)
    for s in range(sets):
        one = copy.deepcopy(ref)
        with torch.no_grad():
            one.alpha.copy_(alphas[s])
        part = slice(s * per, (s + 1) * per)
        want = one(x[part])
        torch.testing.assert_close(logits[part], want, **TOL)
        (want_grad,) = torch.autograd.grad(F.cross_entropy(want, y[part]), [one.alpha])
        torch.testing.assert_close(grads[s], want_grad, **TOL)


def test_independent_sets_refuse_running_statistics():
    _, fused = _pair("dag", dag_nodes=3)
    x, _ = _input(DAG_SPEC, batch=4)
    with pytest.raises(ValueError, match="running statistics"):
        fused.train()(x, sets=2)
