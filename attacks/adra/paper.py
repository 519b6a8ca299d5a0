"""The paper's reconstruction recipe (Li et al. 2024, eq. 5).

One dummy image and soft label from Gaussian noise, the L2 distance between −Δα/lr and
the dummy's ∇_α L, L-BFGS (as DLG; ``adra-optimizer`` may pick adam or lm), then the κ
denoise. With several θ draws the objective is averaged over them.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from attacks.adra.lm import forward_difference_jacobian, levenberg_marquardt
from attacks.adra.solver import FD_STEP, Problem, Report, Solution, iterations, set_chunk
from attacks.adra.victim import Victim


def paper_optimizer(s: Any) -> str:
    return "lbfgs" if s.adra_optimizer == "auto" else s.adra_optimizer


def _paper_grads(v: Victim, x: torch.Tensor, y_logits: torch.Tensor) -> torch.Tensor:
    """∇_α L of one dummy batch under every θ draw: x (1, B, C, h, w) -> (draws, n_alpha)."""
    d = v.draws
    return v.grads(x.expand(d, *x.shape[1:]), torch.softmax(y_logits, -1).expand(d, *y_logits.shape[1:]),
                   draw=torch.arange(d, device=x.device))


def solve_paper(problem: Problem, s: Any, generator: torch.Generator, progress: Report | None = None) -> Solution:
    """The paper's ADRA (see the module docstring); one dummy batch of B, no restarts.

    With several θ draws (``surrogate-draws``), the L2 objective is averaged over them.
    """
    b, c = problem.batch, problem.classes
    v = problem.victim
    report = progress or (lambda *a: None)
    dev = v.device
    target = problem.proc.gradient_estimate(problem.observed, v.alpha_flat)
    x = torch.randn((1, b, *problem.image_shape), generator=generator).to(dev).requires_grad_(True)
    y_logits = torch.randn((1, b, c), generator=generator).to(dev).requires_grad_(True)
    optimizer = paper_optimizer(s)
    total = iterations(s, optimizer)
    if optimizer == "lm":
        xb, yb, its = _paper_lm(problem, x.detach(), y_logits.detach(), target, total, report)
    else:
        xb, yb, its = _paper_first_order(v, x, y_logits, target, optimizer, s.adra_lr, total, report)
    xb = torch.where(xb > s.adra_kappa, torch.zeros_like(xb), xb).clamp(0.0, 1.0)  # the κ denoise
    with torch.no_grad():
        final = float(((_paper_grads(v, xb, yb) - target) ** 2).sum(-1).mean() / (target**2).sum().clamp_min(1e-30))
    report("final", 1, 1, final)
    return Solution(xb[0].cpu(), yb[0].argmax(-1).view(1, b).cpu(), final, 1, its)


def _paper_first_order(v: Victim, x, y_logits, target, optimizer: str, lr: float, total: int, report: Report):
    def objective() -> torch.Tensor:
        return ((_paper_grads(v, x, y_logits) - target) ** 2).sum(-1).mean()

    best = (math.inf, x.detach().clone(), y_logits.detach().clone())
    if optimizer == "lbfgs":
        opt = torch.optim.LBFGS([x, y_logits], lr=1.0, max_iter=1, history_size=100, line_search_fn="strong_wolfe")
    else:
        opt = torch.optim.Adam([x, y_logits], lr=lr)
    it = 0
    for it in range(1, total + 1):
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
        report("refine", it, total, best[0] / float((target**2).sum().clamp_min(1e-30)))
    return best[1], best[2], it


def _paper_lm(problem: Problem, x, y_logits, target, total: int, report: Report):
    """The paper's L2 objective, minimised by Levenberg–Marquardt (pixels and label logits unknown)."""
    v = problem.victim
    n_x = x[0].numel()
    scale = target.norm().clamp_min(1e-30)

    def residual(u: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        h, d = len(u), v.draws
        xx = u[:, :n_x].reshape(h, *x.shape[1:]).repeat_interleave(d, 0)
        yy = torch.softmax(u[:, n_x:].reshape(h, *y_logits.shape[1:]), -1).repeat_interleave(d, 0)
        g = v.grads(xx, yy, draw=torch.arange(d, device=u.device).repeat(h))
        return ((g - target) / scale).reshape(h, -1)

    def jacobian(u: torch.Tensor, rows: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return forward_difference_jacobian(residual, u, rows, r, FD_STEP, set_chunk(problem))

    u0 = torch.cat([x.reshape(1, -1), y_logits.reshape(1, -1)], 1)
    res = levenberg_marquardt(residual, jacobian, u0, iterations=total,
                              report=lambda it, tot, best: report("refine", it, tot, best / v.draws))
    u = res.u[0]
    return u[:n_x].view(x.shape), u[n_x:].view(y_logits.shape), res.iterations
