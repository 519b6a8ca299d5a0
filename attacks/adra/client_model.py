"""The client's known local α procedure, replayed on dummy batches (the optimizer model).

The server's train config tells the attacker how the client turns gradients into Δα:
the optimizer (SGD, or Adam with β1, β2 = 0.999 and ε = 1e-8 as ``torch.optim.Adam``),
its learning rate and L2 weight decay, FedProx's μ when the term is on α, the number of α
steps, B. ADRA in strong mode replays exactly that, step after step, on K dummy batches,
so that the predicted Δα is comparable to the observed one whatever the optimizer. θ between the client's α steps
moves by θ steps on data the attacker never sees: the victim holds one θ per step, moved
by the client's θ optimizer on the aux pool's mean gradient (``theta.theta_path``,
``theta-between-steps = "aux"``), on random aux batches of the client's size, several
paths (``theta.sampled_theta_paths``, ``sampled``), or θ_t1 throughout (``held``). That is
the one approximation left; one local step is exact.

Adam's first step is lr·g/(|g| + ε): a sign, whose derivative is zero. The replay
replaces ε by ``temperature`` × the mean |g| of the dummy's own gradient, a smooth sign
that tends to the real one as the temperature goes to 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from fednas.search import num_local_steps

ADAM_BETA2 = 0.999
ADAM_EPS = 1e-8


class CaptureError(ValueError):
    """A capture the attack cannot use; the message is the reason reported."""


def local_alpha_steps(search: Any, metrics: dict[str, Any]) -> int:
    """How many α steps the client took: its reply says so, else the train config does."""
    if "local-steps" in metrics:
        return int(metrics["local-steps"])
    if search.local_epochs > 0:
        raise CaptureError("local-epochs > 0 and the reply does not say how many local steps were taken")
    return num_local_steps(search, 0)


@dataclass(frozen=True)
class AlphaProcedure:
    """What the attacker knows of the client's α updates (from the train config)."""

    optimizer: str
    lr: float
    weight_decay: float
    beta1: float
    steps: int
    batch_size: int
    eps: float = ADAM_EPS  # Adam's ε (ENAS's controller uses 1e-3)
    proximal_mu: float = 0.0  # FedProx's term on α (proximal-alpha): μ(α − α_t1) joins the gradient

    @classmethod
    def from_settings(cls, search: Any, steps: int, proximal_mu: float = 0.0) -> AlphaProcedure:
        return cls(search.alpha_optimizer, float(search.alpha_lr), float(search.alpha_weight_decay),
                   float(search.alpha_beta1), int(steps), int(search.alpha_batch_size),
                   proximal_mu=float(proximal_mu) if search.proximal_alpha else 0.0)

    def gradient_estimate(self, delta: torch.Tensor, alpha_t1: torch.Tensor) -> torch.Tensor:
        """Δα read as one plain gradient step: −Δα/lr (the paper's 'architecture gradient')."""
        return -delta / self.lr


def replay(proc: AlphaProcedure, alpha_t1: torch.Tensor,
           grad_fn: Callable[[int, torch.Tensor], torch.Tensor], temperature: float = 0.0) -> torch.Tensor:
    """Predicted Δα of ``proc.steps`` α steps.

    Parameters
    ----------
    proc : AlphaProcedure
    alpha_t1 : tensor (N, n_alpha)
        α at the round's start, one row per hypothesis.
    grad_fn : callable (step, alpha) -> tensor (N, n_alpha)
        ∇_α L of the hypothesis' dummy batch of that step at the given α.
    temperature : float
        > 0 smooths Adam's sign-like normalisation (see the module docstring).
    """
    alpha = alpha_t1
    m = v = None
    for k in range(1, proc.steps + 1):
        g = grad_fn(k - 1, alpha) + proc.weight_decay * alpha
        if proc.proximal_mu:
            g = g + proc.proximal_mu * (alpha - alpha_t1)
        if proc.optimizer == "sgd":
            alpha = alpha - proc.lr * g
            continue
        if proc.optimizer != "adam":
            raise ValueError(f"unknown alpha-optimizer {proc.optimizer!r}; the replay knows adam and sgd")
        m = (1 - proc.beta1) * g if m is None else proc.beta1 * m + (1 - proc.beta1) * g
        v = (1 - ADAM_BETA2) * g * g if v is None else ADAM_BETA2 * v + (1 - ADAM_BETA2) * g * g
        m_hat = m / (1 - proc.beta1**k)
        v_hat = v / (1 - ADAM_BETA2**k)
        eps = proc.eps
        if temperature > 0:
            eps = eps + temperature * g.detach().abs().mean(-1, keepdim=True)
        # clamp: sqrt's derivative at an exactly-zero second moment is infinite
        alpha = alpha - proc.lr * m_hat / (v_hat.clamp_min(1e-30).sqrt() + eps)
    return alpha - alpha_t1


def data_free_update(proc: AlphaProcedure, alpha_t1: torch.Tensor, alpha_l2: float = 0.0) -> torch.Tensor:
    """Δα that ``proc`` makes when the loss gradient is zero: weight decay and the ``alpha-l2``
    penalty alone (a client whose softmax saturates on the right class, loss exactly 0).

    A capture equal to it carries nothing about the client's samples.
    """
    a = alpha_t1.reshape(1, -1).double()
    return replay(proc, a, lambda k, alpha: 2.0 * alpha_l2 * alpha)[0]
