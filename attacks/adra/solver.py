"""The two reconstruction recipes: the paper's, and the strong one.

Both search dummy images (and labels) whose architecture gradient explains the observed
Δα. Paper (Li et al. 2024, eq. 5): one dummy image and soft label from Gaussian noise,
the L2 distance between −Δα/lr and the dummy's ∇_α L, L-BFGS, then the κ denoise.
Strong: the client's known α procedure replayed step after step (optimizer model),
a cosine (or normalised L2) distance, every label tried (or soft labels optimised),
TV and box priors or a PCA prior, several restarts per label with the weak labels
dropped early, and the best match kept. All hypotheses of a capture are one batched
computation (see ``victim.Victim.grads``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from attacks.adra.client_model import AlphaProcedure, replay
from attacks.adra.priors import PCA, Pixels, total_variation
from attacks.adra.screen import screen
from attacks.adra.victim import Victim

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (iteration, total)


@dataclass
class Problem:
    """One capture, as the solvers see it."""

    victim: Victim
    proc: AlphaProcedure
    observed: torch.Tensor  # Δα, flat (n_alpha,)
    steps: int  # local α steps modelled (1 when not unrolled)
    batch: int  # B
    local_steps: int  # α steps the client took
    classes: int
    image_shape: tuple[int, int, int]


@dataclass
class Solution:
    images: torch.Tensor  # (steps, B, C, H, W) in [0, 1]
    labels: torch.Tensor  # (steps, B)
    match: float
    hypotheses: int
    iterations: int


def _distance(kind: str, pred: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
    if kind == "cosine":
        return 1.0 - F.cosine_similarity(pred, obs.expand_as(pred), dim=-1, eps=1e-30)
    if kind == "l2":
        return ((pred - obs) ** 2).sum(-1) / (obs**2).sum().clamp_min(1e-30)
    raise ValueError(f"unknown adra-distance {kind!r}; choose cosine or l2")


# --------------------------------------------------------------------------- strong


def _temperature(it: int, total: int, start: float = 1.0, end: float = 0.02) -> float:
    """Adam's smoothed sign: geometric from ``start`` to ``end`` over the run."""
    return start * (end / start) ** (it / max(total - 1, 1))


def _match(problem: Problem, x: torch.Tensor, y: torch.Tensor, distance: str, temperature: float) -> torch.Tensor:
    """Distance per hypothesis, averaged over θ draws. x (H, K, B, C, h, w), y (H, K, B, classes)."""
    v = problem.victim
    h, draws = x.shape[0], v.draws
    xe = x.repeat_interleave(draws, 0)
    ye = y.repeat_interleave(draws, 0)
    draw = torch.arange(draws).repeat(h)
    alpha0 = v.alpha_flat.expand(h * draws, -1)
    pred = replay(problem.proc, alpha0, lambda k, a: v.grads(xe[:, k], ye[:, k], a, draw), temperature)
    return _distance(distance, pred, problem.observed).view(h, draws).mean(1)


def _starts(problem: Problem, s: Any, generator: torch.Generator, aux_images, aux_labels) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Initial images (H, K, B, C, h, w), and fixed labels (H, K, B) or label logits (H, K, B, classes)."""
    k, b, c = problem.steps, problem.batch, problem.classes
    labels_mode = s.adra_labels
    if labels_mode == "auto":
        labels_mode = "try-all" if k * b == 1 else "joint"
    if labels_mode == "try-all" and k * b != 1:
        raise ValueError(f"adra-labels = 'try-all' needs one sample per capture, this one has {k} steps x B={b}; use joint or auto")
    if s.adra_init == "aux":
        if aux_images is None:
            raise ValueError("adra-init = 'aux' needs the attacker's aux pool (Knowledge.aux_images)")
        starts = screen(problem.victim, problem.proc, problem.observed, torch.as_tensor(aux_images),
                        torch.as_tensor(aux_labels), c, k, b, s.adra_restarts,
                        LABELS_KEPT if labels_mode == "try-all" else 1, generator)
        if labels_mode == "try-all":
            return starts.images, starts.labels, None
        return starts.images, None, LABEL_CONFIDENCE * F.one_hot(starts.labels, c).float()
    shape = (k, b, *problem.image_shape)
    if labels_mode == "try-all":
        n = c * s.adra_restarts
        fixed = torch.arange(c).repeat_interleave(s.adra_restarts).view(-1, 1, 1)
        return torch.rand((n, *shape), generator=generator), fixed, None
    n = s.adra_restarts
    return torch.rand((n, *shape), generator=generator), None, 0.1 * torch.randn((n, k, b, c), generator=generator)


LABELS_KEPT = 2  # aux screening, one sample per capture: labels whose best aux images start hypotheses
LABEL_CONFIDENCE = 4.0  # joint labels start as softmax(4 * one-hot): 0.86 on the screened label


def solve_strong(problem: Problem, s: Any, generator: torch.Generator, aux_images=None, aux_labels=None,
                 progress: Progress | None = None) -> Solution:
    """Strong mode (see the module docstring). ``s`` is the ``attack`` config section."""
    k, b, c = problem.steps, problem.batch, problem.classes
    shape = (k, b, *problem.image_shape)
    x0, fixed, logits0 = _starts(problem, s, generator, aux_images, aux_labels)
    param = PCA(shape, aux_images, s.adra_prior_components) if s.adra_prior == "pca" else Pixels(shape)
    params = param.encode(x0).requires_grad_(True)
    label_params = logits0.clone().requires_grad_(True) if logits0 is not None else None
    n = len(x0)
    total = s.adra_iterations
    # successive halving: the best half of the hypotheses at 25% of the run, the best quarter at 50%
    stages = {int(total * 0.25): max(1, n // 2), int(total * 0.5): max(1, n // 4)}
    opt = torch.optim.Adam([params] + ([label_params] if label_params is not None else []), lr=s.adra_lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total)
    adam = problem.proc.optimizer == "adam"
    for it in range(total):
        temp = _temperature(it, total) if adam else 0.0
        y = F.one_hot(fixed.expand(-1, k, b), c).float() if fixed is not None else torch.softmax(label_params, -1)
        x = param.images(params)
        dist = _match(problem, x, y, s.adra_distance, temp)
        loss = dist + s.adra_tv * total_variation(x.flatten(1, 2))
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        sched.step()
        param.project(params)
        if it in stages and stages[it] < len(dist):
            params, fixed, label_params = _prune(opt, [params, fixed, label_params], dist.detach(), stages[it])
        if progress is not None:
            progress(it + 1, total)
    with torch.no_grad():
        x = param.images(params)
    y = F.one_hot(fixed.expand(-1, k, b), c).float() if fixed is not None else torch.softmax(label_params, -1).detach()
    final = _match(problem, x, y, s.adra_distance, _temperature(total - 1, total) if adam else 0.0).detach()
    best = int(torch.argmin(torch.nan_to_num(final, nan=math.inf)))
    return Solution(x[best].detach(), y[best].argmax(-1), float(final[best]), n, total)


def _prune(opt: torch.optim.Optimizer, tensors: list[torch.Tensor | None], dist: torch.Tensor,
           keep: int) -> list[torch.Tensor | None]:
    """Keep the ``keep`` best-matching hypotheses (rows) of every tensor, optimizer state included."""
    rows = torch.argsort(torch.nan_to_num(dist, nan=math.inf))[:keep]
    out: list[torch.Tensor | None] = []
    group = opt.param_groups[0]["params"]
    for t in tensors:
        if t is None:
            out.append(None)
            continue
        if not t.requires_grad:  # fixed labels
            out.append(t[rows])
            continue
        new = t.detach()[rows].clone().requires_grad_(True)
        state = opt.state.pop(t, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key] = state[key][rows].clone()
        group[[i for i, p in enumerate(group) if p is t][0]] = new
        if state:
            opt.state[new] = state
        out.append(new)
    return out


# --------------------------------------------------------------------------- paper


def solve_paper(problem: Problem, s: Any, generator: torch.Generator, progress: Progress | None = None) -> Solution:
    """The paper's ADRA (see the module docstring); one dummy batch of B, no restarts."""
    b, c = problem.batch, problem.classes
    v = problem.victim
    target = problem.proc.gradient_estimate(problem.observed, v.alpha_flat)
    x = torch.randn((1, b, *problem.image_shape), generator=generator).requires_grad_(True)
    y_logits = torch.randn((1, b, c), generator=generator).requires_grad_(True)
    optimizer = s.adra_optimizer if s.adra_optimizer != "auto" else "lbfgs"
    total = s.adra_iterations

    def objective() -> torch.Tensor:
        g = v.grads(x, torch.softmax(y_logits, -1))
        return ((g - target) ** 2).sum()

    best = (math.inf, x.detach().clone(), y_logits.detach().clone())
    if optimizer == "lbfgs":
        opt = torch.optim.LBFGS([x, y_logits], lr=1.0, max_iter=1, history_size=100, line_search_fn="strong_wolfe")
    else:
        opt = torch.optim.Adam([x, y_logits], lr=s.adra_lr)
    for it in range(total):
        def closure() -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            value = objective()
            value.backward()
            return value

        if optimizer == "lbfgs":
            value = float(opt.step(closure).detach())
        else:
            value = float(closure())
            opt.step()
        if not math.isfinite(value):
            break  # diverged: keep the last finite dummy
        if value < best[0]:
            best = (value, x.detach().clone(), y_logits.detach().clone())
        if progress is not None:
            progress(it + 1, total)
    _, xb, yb = best
    xb = torch.where(xb > s.adra_kappa, torch.zeros_like(xb), xb).clamp(0.0, 1.0)  # the κ denoise
    with torch.no_grad():
        final = float(((v.grads(xb, torch.softmax(yb, -1)) - target) ** 2).sum() / (target**2).sum().clamp_min(1e-30))
    return Solution(xb[0], yb[0].argmax(-1).view(1, b), final, 1, total)
