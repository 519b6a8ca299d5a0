"""Local bilevel DARTS search: θ on D^θ, α on D^α, alternating, fully seeded.

One local step = one α step on a D^α batch, then one θ step on a D^θ batch (DARTS's
order). The α gradient is first-order (∇_α L_α(θ, α)) or second-order (DARTS's unrolled
step with a finite-difference Hessian-vector product). Gradient rules are a small
registry so that a private variant (per-example clipping and noise) can plug in.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

from fednas.data import ClientSplit, ImageSet, batches
from fednas.noise import InputNoise
from fednas.spaces import Supernet

log = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor]


def alpha_loss(model: Supernet, logits: torch.Tensor, y: torch.Tensor, l2: float = 0.0) -> torch.Tensor:
    """Cross-entropy of α's batch, plus the optional L2 penalty l2·Σα² (the LR defense)."""
    loss = F.cross_entropy(logits, y)
    if l2 > 0:
        loss = loss + l2 * sum((a**2).sum() for a in model.arch_parameters())
    return loss


_RUNNING = ("running_mean", "running_var", "num_batches_tracked")


@contextlib.contextmanager
def frozen_running_statistics(model: Supernet) -> Iterator[None]:
    """Leave BatchNorm running statistics as they were before the block."""
    saved = [(b, b.clone()) for n, b in model.named_buffers() if n.endswith(_RUNNING)]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)  # in place: views of packed buffers stay views


def _buffers(model: Supernet) -> dict[str, torch.Tensor]:
    # Clones, so that the extra forward passes of the unrolled step leave the model's
    # BatchNorm running statistics as they were.
    return {n: b.clone() for n, b in model.named_buffers()}


def _loss_at(model: Supernet, params: Mapping[str, torch.Tensor], batch: Batch) -> torch.Tensor:
    x, y = batch
    return F.cross_entropy(functional_call(model, {**params, **_buffers(model)}, (x,)), y)


@dataclass
class StepContext:
    """What an α-gradient rule may use beside α's batch."""

    theta_batch: Batch
    theta_optimizer: torch.optim.Optimizer
    settings: Any  # SearchConfig


class FirstOrder:
    """∇_α L(θ, α) on α's batch (DARTS first-order)."""

    def __call__(self, model: Supernet, batch: Batch, ctx: StepContext) -> tuple[list[torch.Tensor], float, float]:
        x, y = batch
        logits = model(x)
        loss = alpha_loss(model, logits, y, ctx.settings.alpha_l2)
        grads = torch.autograd.grad(loss, model.arch_parameters())
        acc = (logits.argmax(1) == y).float().mean().item()
        return list(grads), loss.item(), acc


class SecondOrder:
    """DARTS's unrolled step: ∇_α L_α(θ', α) − ξ ∇²_{α,θ} L_θ(θ, α) ∇_θ' L_α(θ', α),
    θ' = θ − ξ(momentum + ∇_θ L_θ + wd·θ), the Hessian-vector product by central
    finite differences with radius r/‖v‖."""

    def __init__(self, r: float = 1e-2) -> None:
        self.r = r

    def unrolled_weights(self, model: Supernet, ctx: StepContext) -> dict[str, torch.Tensor]:
        s = ctx.settings
        names = [n for n, _ in model.named_weight_parameters()]
        weights = dict(model.named_weight_parameters())
        alphas = dict(model.named_arch_parameters())
        loss = _loss_at(model, {**weights, **{k: a.detach() for k, a in alphas.items()}}, ctx.theta_batch)
        grads = torch.autograd.grad(loss, [weights[n] for n in names])
        out = {}
        for n, g in zip(names, grads):
            w = weights[n].detach()
            buf = ctx.theta_optimizer.state.get(weights[n], {}).get("momentum_buffer")
            moment = buf * s.theta_momentum if buf is not None else torch.zeros_like(w)
            out[n] = w - s.theta_lr * (moment + g + s.theta_weight_decay * w)
        return out

    def __call__(self, model: Supernet, batch: Batch, ctx: StepContext) -> tuple[list[torch.Tensor], float, float]:
        xi = ctx.settings.theta_lr
        alphas = dict(model.named_arch_parameters())
        unrolled = {n: w.requires_grad_(True) for n, w in self.unrolled_weights(model, ctx).items()}
        x, y = batch
        logits = functional_call(model, {**unrolled, **alphas, **_buffers(model)}, (x,))
        loss = alpha_loss(model, logits, y, ctx.settings.alpha_l2)
        names = list(unrolled)
        grads = torch.autograd.grad(loss, list(alphas.values()) + [unrolled[n] for n in names])
        d_alpha, v = grads[: len(alphas)], grads[len(alphas) :]
        implicit = self.hessian_vector_product(model, dict(zip(names, v)), ctx.theta_batch)
        out = [da - xi * h for da, h in zip(d_alpha, implicit)]
        acc = (logits.argmax(1) == y).float().mean().item()
        return out, loss.item(), acc

    def hessian_vector_product(self, model: Supernet, vector: Mapping[str, torch.Tensor], batch: Batch) -> list[torch.Tensor]:
        """(∇_α L(θ + εv) − ∇_α L(θ − εv)) / 2ε with ε = r/‖v‖."""
        norm = torch.sqrt(sum((v**2).sum() for v in vector.values()))
        eps = self.r / (norm + 1e-12)
        weights = {n: w.detach() for n, w in model.named_weight_parameters()}
        alphas = dict(model.named_arch_parameters())
        grads = []
        for sign in (1.0, -1.0):
            shifted = {n: weights[n] + sign * eps * vector[n] for n in weights}
            loss = _loss_at(model, {**shifted, **alphas}, batch)
            grads.append(torch.autograd.grad(loss, list(alphas.values())))
        return [(gp - gm) / (2 * eps) for gp, gm in zip(*grads)]


AlphaGradient = Callable[[Supernet, Batch, StepContext], tuple[list[torch.Tensor], float, float]]
ALPHA_GRADIENTS: dict[str, Callable[[], AlphaGradient]] = {"first": FirstOrder, "second": SecondOrder}


def make_alpha_gradient(order: str) -> AlphaGradient:
    """The α-gradient rule by name (``first`` or ``second``)."""
    try:
        return ALPHA_GRADIENTS[order]()
    except KeyError:
        raise ValueError(f"unknown alpha-order {order!r}; choose one of: {', '.join(ALPHA_GRADIENTS)}") from None


def make_alpha_optimizer(params: list[torch.nn.Parameter], s: Any) -> torch.optim.Optimizer:
    """α's optimizer from the settings (DARTS: Adam with β = (0.5, 0.999))."""
    if s.alpha_optimizer == "adam":
        return torch.optim.Adam(params, lr=s.alpha_lr, betas=(s.alpha_beta1, 0.999), weight_decay=s.alpha_weight_decay)
    if s.alpha_optimizer == "sgd":
        return torch.optim.SGD(params, lr=s.alpha_lr, weight_decay=s.alpha_weight_decay)
    raise ValueError(f"unknown alpha-optimizer {s.alpha_optimizer!r}; choose adam or sgd")


@dataclass(frozen=True)
class Proximal:
    """FedProx's proximal term μ/2 ‖w − w_global‖² on some parameters (Li et al. 2020).

    ``anchors`` holds the global values the round started from, by parameter name; the
    term's gradient μ(w − w_global) is added to those parameters' gradients (before θ's
    clipping, as if it were part of the loss; after DP-SGD's noise on α, since it does not
    depend on data).
    """

    mu: float
    anchors: dict[str, torch.Tensor]

    @classmethod
    def at(cls, model: Supernet, mu: float, theta: bool = True, alpha: bool = False) -> Proximal:
        """The term around the model's current θ (``theta``) and/or α (``alpha``)."""
        named = (model.named_weight_parameters() if theta else []) + (model.named_arch_parameters() if alpha else [])
        return cls(float(mu), {n: p.detach().clone() for n, p in named})

    def gradients(self, named: list[tuple[str, torch.Tensor]], grads: list[torch.Tensor]) -> list[torch.Tensor]:
        """``grads`` of the ``named`` parameters plus the term's gradient where it applies."""
        return [g + self.mu * (p.detach() - self.anchors[n]) if n in self.anchors else g
                for (n, p), g in zip(named, grads)]


def num_local_steps(s: Any, n_theta: int) -> int:
    """Steps of one round: ``local-steps``, or ``local-epochs`` passes over D^θ."""
    if s.local_epochs > 0:
        return s.local_epochs * max(1, n_theta // s.batch_size)
    return s.local_steps


def _alpha_step(model: Supernet, rule: AlphaGradient, batch: Batch, ctx: StepContext, optimizer: torch.optim.Optimizer,
                proximal: Proximal | None) -> tuple[float, float]:
    """One α step on a D^α batch; its loss and accuracy.

    BatchNorm still normalises by batch statistics, but its running statistics must not
    learn from D^α: they are weights, and would carry D^α into θ (a weight-level channel
    beside the architecture).
    """
    with frozen_running_statistics(model):
        grads, loss, acc = rule(model, batch, ctx)
    if proximal is not None:
        grads = proximal.gradients(model.named_arch_parameters(), list(grads))
    optimizer.zero_grad(set_to_none=True)
    for p, g in zip(model.arch_parameters(), grads):
        p.grad = g.detach()
    optimizer.step()
    return loss, acc


@dataclass
class SearchResult:
    """What one round of local search did."""

    steps: int
    metrics: dict[str, float]
    alpha_batches: list[list[int]] = field(default_factory=list)  # global D^α indices per α step
    seconds: float = 0.0


def local_search(model: Supernet, dataset: ImageSet, split: ClientSplit, settings: Any, seed: Any,
                 device: torch.device | str = "cpu", alpha_gradient: AlphaGradient | None = None,
                 input_noise: InputNoise | None = None, proximal: Proximal | None = None,
                 train_alpha: bool = True) -> SearchResult:
    """Run one round of bilevel search in place on ``model``.

    Parameters
    ----------
    model : Supernet
        Already on ``device``, holding the round's starting α and θ.
    dataset, split : ImageSet, ClientSplit
        The data and this client's D^θ / D^α indices.
    settings : SearchConfig
        The local-search section of the config (as the server sent it).
    seed : int or sequence of int
        Seeds the batch order (e.g. ``[seed, round, partition_id]``).
    alpha_gradient : callable, optional
        Overrides the rule named by ``settings.alpha_order``. A rule with a ``sampler``
        attribute (``sampler(indices, batch_size, rng) -> iterator of index arrays``, e.g.
        the Poisson sampler of the private rule) also draws the D^α batches.
    proximal : Proximal, optional
        FedProx's term around the round's global θ (and α), added to their gradients.
    train_alpha : bool
        False: θ steps only, no α step and no D^α batch (a warm-up round).
    input_noise : InputNoise, optional
        Noise added to every training input, of D^θ and D^α alike (the DP defense of
        AMIA); the clean data never reaches the model.
    """
    t0 = time.perf_counter()
    rule = alpha_gradient or make_alpha_gradient(settings.alpha_order)
    rng = np.random.default_rng(seed)
    # its own generator, so that noise leaves the batch order as it is without noise
    noise_rng = np.random.default_rng([*np.atleast_1d(seed).tolist(), 0x6E6F])
    theta_iter = batches(split.theta, settings.batch_size, rng)
    alpha_iter = getattr(rule, "sampler", batches)(split.alpha, settings.alpha_batch_size, rng)
    w_opt = torch.optim.SGD(model.weight_parameters(), lr=settings.theta_lr,
                            momentum=settings.theta_momentum, weight_decay=settings.theta_weight_decay)
    a_opt = make_alpha_optimizer(model.arch_parameters(), settings)
    x_all, y_all = dataset.x, dataset.y
    steps = num_local_steps(settings, len(split.theta))
    sums = dict.fromkeys(("theta-loss", "theta-acc", "alpha-loss", "alpha-acc"), 0.0)
    alpha_batches = []
    alpha_counted = 0
    model.train()
    for _ in range(steps):
        # α's batch first, then θ's, from one generator (and noise in the same order): the
        # batch order of a run does not change with the code paths around it
        ia = next(alpha_iter) if train_alpha else []
        it = next(theta_iter)
        xa = x_all[ia] if input_noise is None or not train_alpha else input_noise(x_all[ia], ia, noise_rng)
        xt = x_all[it] if input_noise is None else input_noise(x_all[it], it, noise_rng)
        t_batch = (xt.to(device), y_all[it].to(device))
        if train_alpha:
            a_loss, a_acc = _alpha_step(model, rule, (xa.to(device), y_all[ia].to(device)),
                                        StepContext(t_batch, w_opt, settings), a_opt, proximal)
            alpha_batches.append([int(i) for i in ia])
        # θ step on D^θ
        logits = model(t_batch[0])
        loss = F.cross_entropy(logits, t_batch[1])
        named = model.named_weight_parameters()
        grads = list(torch.autograd.grad(loss, [p for _, p in named]))  # θ only, never α
        if proximal is not None:
            grads = proximal.gradients(named, grads)
        for (_, p), g in zip(named, grads):
            p.grad = g
        if settings.theta_grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.weight_parameters(), settings.theta_grad_clip)
        w_opt.step()
        sums["theta-loss"] += loss.item()
        sums["theta-acc"] += (logits.argmax(1) == t_batch[1]).float().mean().item()
        if len(ia):  # an empty (Poisson) α batch has no loss to average
            sums["alpha-loss"] += a_loss
            sums["alpha-acc"] += a_acc
            alpha_counted += 1
    counts = {"theta-loss": steps, "theta-acc": steps, "alpha-loss": alpha_counted, "alpha-acc": alpha_counted}
    metrics = {k: v / counts[k] if counts[k] else float("nan") for k, v in sums.items()}
    if not all(math.isfinite(v) for v in metrics.values()):
        log.warning("local search produced non-finite metrics: %s", metrics)
    return SearchResult(steps, metrics, alpha_batches, time.perf_counter() - t0)


@torch.no_grad()
def evaluate(model: Supernet, x: torch.Tensor, y: torch.Tensor, device: torch.device | str = "cpu",
             batch_size: int = 256) -> dict[str, float]:
    """Loss and accuracy of the model (eval mode) on a labelled set."""
    if len(y) == 0:
        return {"loss": float("nan"), "acc": float("nan"), "n": 0}
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(y), batch_size):
        xb, yb = x[start : start + batch_size].to(device), y[start : start + batch_size].to(device)
        logits = model(xb)
        loss_sum += F.cross_entropy(logits, yb, reduction="sum").item()
        correct += int((logits.argmax(1) == yb).sum())
    model.train(was_training)
    return {"loss": loss_sum / len(y), "acc": correct / len(y), "n": int(len(y))}
