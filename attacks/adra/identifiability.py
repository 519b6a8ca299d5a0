"""An attack-free leakage indicator: how many input directions the α-gradient sees.

The numerical rank of the Jacobian ∂(∇_α L)/∂x at a batch, over the batch's input size:
1 means every pixel direction changes the architecture gradient (locally, x is determined
by it); lower values count the directions a gradient-matching attack cannot recover.
Singular values count when above ``rtol`` × the largest one and above ``atol`` (float32
round-off: with ``head = gap`` and B = 1, BatchNorm zeroes every channel mean and the
gradient is pure round-off, which a relative tolerance alone would call full rank).
"""

from __future__ import annotations

import torch
from torch.func import jacfwd

from attacks.adra.victim import Victim

RTOL = 1e-3
ATOL = 1e-6


def jacobian(victim: Victim, x: torch.Tensor, y: torch.Tensor, draw: int = 0) -> torch.Tensor:
    """∂(∇_α L)/∂x at one batch x (B, C, H, W), labels y (B, classes): (n_alpha, B·C·H·W)."""
    theta = {k: v[draw] for k, v in victim.thetas.items()}

    def f(xx: torch.Tensor) -> torch.Tensor:
        return victim.batch_gradient(theta, victim.alpha_flat, xx, y)

    jac = jacfwd(f)(x.float())
    return jac.reshape(jac.shape[0], -1)


def jacobian_rank(victim: Victim, x: torch.Tensor, y: torch.Tensor, rtol: float = RTOL, atol: float = ATOL) -> tuple[int, int]:
    """(numerical rank, input size) of the Jacobian at the batch (see the module docstring)."""
    jac = jacobian(victim, x, y).double().cpu()
    s = torch.linalg.svdvals(jac)
    if len(s) == 0:
        return 0, int(jac.shape[1])
    tol = max(rtol * float(s[0]), atol)
    return int((s > tol).sum()), int(jac.shape[1])
