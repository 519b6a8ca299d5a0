"""From-scratch (ε, δ) references for the DP tests: numerical integration, no accountant code.

Nothing here calls Opacus or ``fednas.accounting``: each figure comes from the definition
of the privacy profile or of Rényi divergence, integrated numerically.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import logsumexp
from scipy.stats import norm


def hockey_stick(log_p: np.ndarray, log_q: np.ndarray, dx: float, eps: float) -> float:
    """δ(ε) = ∫ max(0, p(x) − e^ε q(x)) dx on an even grid (densities given as logs)."""
    above = log_p - log_q > eps  # only there is the integrand positive (and e^ε q below p: no overflow)
    return float(np.sum(np.exp(log_p[above]) - np.exp(eps + log_q[above])) * dx)


def gaussian_delta(mu: float, eps: float, n: int = 400_001) -> float:
    """δ(ε) of the Gaussian mechanism N(μ, 1) against N(0, 1), integrated on a grid."""
    x, dx = np.linspace(-40.0, mu + 40.0, n, retstep=True)
    return hockey_stick(norm.logpdf(x, mu), norm.logpdf(x), dx, eps)


def subsampled_delta(q: float, z: float, eps: float, n: int = 400_001) -> float:
    """δ(ε) of one Poisson-subsampled Gaussian step (add/remove one example, both directions)."""
    x, dx = np.linspace(-40 * z, 1 + 40 * z, n, retstep=True)
    log_q = norm.logpdf(x, 0, z)  # without the example: N(0, z²); with it: (1 − q) N(0, z²) + q N(1, z²)
    log_p = np.logaddexp(math.log1p(-q) + log_q, math.log(q) + norm.logpdf(x, 1, z))
    return max(hockey_stick(log_p, log_q, dx, eps), hockey_stick(log_q, log_p, dx, eps))


def subsampled_rdp(q: float, z: float, order: float) -> float:
    """Rényi divergence D_α((1 − q)N(0, z²) + qN(1, z²) ‖ N(0, z²)) by quadrature on a fine grid
    (the direction that dominates for the Poisson-subsampled Gaussian, Mironov et al. 2019)."""
    x = np.linspace(-30 * z, 1 + 30 * z + order / z, 40_001)
    log_q = norm.logpdf(x, 0, z)
    log_p = np.logaddexp(math.log1p(-q) + log_q, math.log(q) + norm.logpdf(x, 1, z))
    log_a = logsumexp(order * log_p - (order - 1) * log_q) + math.log(x[1] - x[0])
    return float(log_a / (order - 1))


def rdp_to_epsilon(rdp_of_order, orders, delta: float) -> float:
    """Balle et al. 2020's conversion ε = min_α RDP(α) + log((α−1)/α) − (log δ + log α)/(α−1)."""
    return min(rdp_of_order(a) + math.log((a - 1) / a) - (math.log(delta) + math.log(a)) / (a - 1) for a in orders)
