"""Plain supervised training of a classifier (targets retrained, shadows, MD students).

One recipe for every network the attack trains, so that a shadow can mimic the target's:
SGD with momentum and weight decay for a fixed number of steps over shuffled batches,
optional gradient clipping, optional input noise (the DP defense), hard labels or soft
labels (probability vectors: the MD student).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fednas.data import batches
from fednas.noise import InputNoise


@dataclass(frozen=True)
class Recipe:
    """How a network is trained: ``steps`` SGD steps of ``batch_size``, and the defenses."""

    steps: int
    batch_size: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    noise: InputNoise | None = None

    def with_steps(self, steps: int) -> Recipe:
        return replace(self, steps=int(steps))

    def epochs_to_steps(self, epochs: int, n: int) -> Recipe:
        """The same recipe, ``epochs`` passes over ``n`` samples."""
        return self.with_steps(max(1, epochs * max(1, n // self.batch_size)))


def recipe_from_search(search: Any, steps: int, noise: InputNoise | None) -> Recipe:
    """The θ recipe of the run's local search (lr, momentum, decay, clip) for ``steps`` steps."""
    return Recipe(steps, search.batch_size, search.theta_lr, search.theta_momentum,
                  search.theta_weight_decay, search.theta_grad_clip, noise)


def _loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if target.ndim == 2:  # soft labels: cross-entropy against a distribution
        return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    return F.cross_entropy(logits, target)


def train_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor, recipe: Recipe, seed: int,
                     ids: np.ndarray | None = None, device: torch.device | str = "cpu") -> dict[str, float]:
    """Train ``model`` in place.

    Parameters
    ----------
    x, y : tensors
        Images (N, C, H, W) and labels: class indices (N,) or soft labels (N, classes).
    recipe : Recipe
        Steps, batch size, optimiser settings, input noise.
    ids : array, optional
        Sample ids for ``fixed`` input noise (default: positions 0..N-1).
    Returns the mean loss and accuracy of the last 10% of steps.
    """
    if len(x) == 0:
        raise ValueError("cannot train on an empty set")
    ids = np.arange(len(x)) if ids is None else np.asarray(ids)
    rng = np.random.default_rng([seed, 5])
    noise_rng = np.random.default_rng([seed, 6])
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]  # frozen ones (a fixed α) stay
    opt = torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum,
                          weight_decay=recipe.weight_decay)
    tail = max(1, recipe.steps // 10)
    losses, accs = [], []
    for step, pos in zip(range(recipe.steps), batches(np.arange(len(x)), recipe.batch_size, rng)):
        xb = x[pos]
        if recipe.noise is not None:
            xb = recipe.noise(xb, ids[pos], noise_rng)
        xb, yb = xb.to(device), y[pos].to(device)
        logits = model(xb)
        loss = _loss(logits, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if recipe.grad_clip > 0:
            nn.utils.clip_grad_norm_(params, recipe.grad_clip)
        opt.step()
        if step >= recipe.steps - tail:
            hard = yb.argmax(1) if yb.ndim == 2 else yb
            losses.append(loss.item())
            accs.append((logits.argmax(1) == hard).float().mean().item())
    model.eval()
    return {"loss": float(np.mean(losses)), "acc": float(np.mean(accs))}


@torch.no_grad()
def predict_proba(model: nn.Module, x: torch.Tensor, device: torch.device | str = "cpu",
                  batch_size: int = 512, temperature: float = 1.0) -> np.ndarray:
    """Softmax outputs (N, classes) in eval mode, float64."""
    was_training = model.training
    model.eval()
    out = [torch.softmax(model(x[i : i + batch_size].to(device)).double() / temperature, dim=1).cpu()
           for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, 0))


def accuracy(probs: np.ndarray, y: np.ndarray | torch.Tensor) -> float:
    """Share of rows whose largest probability is the label."""
    y = np.asarray(y)
    return float(np.mean(probs.argmax(1) == y)) if len(y) else float("nan")
