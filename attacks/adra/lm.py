"""Batched Levenberg–Marquardt with Broyden updates: strong mode's default solver.

Matching an observed Δα is a nonlinear least-squares problem, r(u) = pred(u) − obs with
thousands of residuals (one per α entry) and few unknowns u (the pixels of an 8×8 image,
or the coefficients of a learned basis). Gauss–Newton steps converge in a handful of
iterations where first-order methods need hundreds (measured in docs/adra.md), and most
of them need no second derivative at all:

- the Jacobian ∂r/∂u is computed by forward differences (one residual per unknown, all
  of them batched: :func:`forward_difference_jacobian`) at the start and again only every
  ``refresh`` iterations or when the steps stall;
- in between, each step costs one residual evaluation (a forward and a backward pass:
  no double backward), and Broyden's rank-one update keeps the Jacobian current;
- the damping λ of every hypothesis adapts on its own (÷3 on success, ×4 on failure),
  with Marquardt's scaling by diag(JᵀJ);
- a hypothesis stops when its cost plateaus (relative decrease below ``tol`` over
  ``patience`` iterations); the worst hypotheses are dropped at the ``keep`` schedule
  (successive halving), so the expensive Jacobians are only paid for the promising ones.

Everything is batched over hypotheses (label guesses, restarts): one residual call
evaluates all the active ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

Residual = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (u [H, n], rows [H]) -> r [H, m]
Report = Callable[[int, int, float], None]  # (iteration, iterations, best cost)

LAMBDA0 = 1e-2
LAMBDA_MAX = 1e8
LAMBDA_MIN = 1e-7


def forward_difference_jacobian(residual: Residual, u: torch.Tensor, rows: torch.Tensor, r0: torch.Tensor,
                                step: float = 1e-2, chunk: int = 256) -> torch.Tensor:
    """∂r/∂u [H, m, n] by forward differences: r(u + step·e_j) for every unknown j, ``chunk``
    points per residual call (one batched call when the residual evaluates many points at once)."""
    h, n = u.shape
    points = (u[:, None, :] + step * torch.eye(n, dtype=u.dtype, device=u.device)).reshape(h * n, n)
    point_rows = rows.repeat_interleave(n)
    out = torch.cat([residual(points[i : i + chunk], point_rows[i : i + chunk]).detach()
                     for i in range(0, h * n, chunk)])
    return ((out.view(h, n, -1) - r0[:, None, :]) / step).transpose(1, 2)


@dataclass
class LMResult:
    u: torch.Tensor  # [H, n] the surviving hypotheses' unknowns
    rows: torch.Tensor  # [H] their indices in the initial set
    cost: torch.Tensor  # [H] ||r||²
    iterations: int
    jacobians: int  # hypotheses × Jacobian evaluations (each costs one tangent per unknown)


def _solve(jac: torch.Tensor, r: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """The damped Gauss–Newton step (JᵀJ + λ·D) δ = −Jᵀr, D = diag(JᵀJ) floored, per row."""
    jtj = jac.transpose(1, 2) @ jac
    diag = torch.diagonal(jtj, dim1=1, dim2=2)
    floor = 1e-6 * diag.amax(1, keepdim=True).clamp_min(1e-30)
    damp = lam[:, None] * torch.maximum(diag, floor)
    a = jtj + torch.diag_embed(damp)
    b = -(jac.transpose(1, 2) @ r[..., None])[..., 0]
    return torch.linalg.solve(a.double(), b.double()).to(r.dtype)


def levenberg_marquardt(residual: Residual, jacobian: Callable[..., torch.Tensor], u0: torch.Tensor,
                        project: Callable[[torch.Tensor], torch.Tensor] | None = None, *, iterations: int = 20,
                        refresh: int = 8, tol: float = 1e-3, patience: int = 3,
                        keep: Mapping[int, int] | None = None, report: Report | None = None) -> LMResult:
    """Minimise ||r(u)||² for every row of ``u0`` (see the module docstring).

    Parameters
    ----------
    residual : callable (u [H, n], rows [H]) -> [H, m]
        ``rows`` says which of the initial hypotheses each row is (fixed labels, ...).
    jacobian : callable (u, rows, r) -> [H, m, n]
        ``r`` is the residual at ``u`` (e.g. for :func:`forward_difference_jacobian`).
    u0 : tensor [H, n]
    project : callable, optional
        Maps a trial point back into the feasible set (e.g. the pixel box).
    iterations : int
        Most steps per hypothesis.
    refresh : int
        Recompute the exact Jacobian at least every ``refresh`` iterations (and after two
        failed steps in a row); Broyden updates in between.
    keep : mapping iteration -> count
        Successive halving: after that iteration only the ``count`` lowest costs go on.
    """
    project = project or (lambda u: u)
    keep = dict(keep or {})
    rows = torch.arange(len(u0), device=u0.device)
    u = project(u0.detach().clone())
    r = residual(u, rows).detach()
    cost = (r * r).sum(1)
    jac = jacobian(u, rows, r).detach()
    n_jac = len(rows)
    age = torch.zeros(len(rows), dtype=torch.long, device=u.device)
    fails = torch.zeros_like(age)
    lam = torch.full((len(rows),), LAMBDA0, device=u.device, dtype=r.dtype)
    done = torch.zeros(len(rows), dtype=torch.bool, device=u.device)
    history = [cost.clone()]
    it = 0
    for it in range(1, iterations + 1):
        act = (~done).nonzero().flatten()
        if len(act) == 0:
            break
        step = _solve(jac[act], r[act], lam[act])
        u_try = project(u[act] + step)
        r_try = residual(u_try, rows[act]).detach()
        c_try = (r_try * r_try).sum(1)
        s = u_try - u[act]
        # Broyden's update from the secant pair, accepted or not: it is information either way
        ss = (s * s).sum(1).clamp_min(1e-30)
        jac[act] += ((r_try - r[act] - (jac[act] @ s[..., None])[..., 0]) / ss[:, None])[..., None] * s[:, None, :]
        good = torch.isfinite(c_try) & (c_try < cost[act])
        ok, bad = act[good], act[~good]
        u[ok], r[ok], cost[ok] = u_try[good], r_try[good], c_try[good]
        lam[ok] = (lam[ok] / 3).clamp_min(LAMBDA_MIN)
        lam[bad] = (lam[bad] * 4).clamp_max(LAMBDA_MAX)
        fails[ok], fails[bad] = 0, fails[bad] + 1
        age[act] += 1
        history.append(cost.clone())
        # plateau: the cost fell by less than tol (relative) over the last `patience` steps
        if len(history) > patience:
            before = history[-1 - patience]
            stalled = (before - cost) <= tol * before.clamp_min(1e-30)
            done |= stalled & (fails == 0) | (lam >= LAMBDA_MAX) | (cost < 1e-12)
        if it in keep and keep[it] < len(rows):
            order = torch.argsort(torch.nan_to_num(cost, nan=math.inf))[: keep[it]]
            rows, u, r, cost, jac, lam, age, fails, done = (
                t[order] for t in (rows, u, r, cost, jac, lam, age, fails, done))
            history = [h[order] for h in history]
        stale = (~done) & ((age >= refresh) | (fails >= 2))
        if stale.any():
            idx = stale.nonzero().flatten()
            jac[idx] = jacobian(u[idx], rows[idx], r[idx]).detach()
            n_jac += len(idx)
            age[idx], fails[idx] = 0, 0
        if report is not None:
            report(it, iterations, float(torch.nan_to_num(cost, nan=math.inf).min()))
    return LMResult(u, rows, cost, it, n_jac)
