"""Membership attacks on API outputs, calibrated on shadow models.

Every attack learns from a :class:`~attacks.amia.shadows.ShadowBank` (shadow outputs on
the attacker's data, with who was "in") and then scores query points: higher = more
likely a member. ``threshold`` turns scores into the hard calls that attack acc and F1
need; AUC and TPR at low FPR use the scores alone.

- ``mlp`` (the paper's attack, after Shokri et al. and ML-Leaks): a 3-layer perceptron
  on the sorted probability vector, trained with SGD; members are called at p >= 0.5.
- ``lira`` (Carlini et al. 2022, offline): per query point, the shadows' logit-scaled
  confidences φ = log p_y − log Σ_{c≠y} p_c fit a Gaussian "out" distribution (the
  shadows never trained on the target's candidates); the score is the one-sided z of the
  target's φ. With fewer than 16 shadows one variance is pooled over all points (LiRA's
  advice for few shadows). Threshold: leave-one-shadow-out on the attacker's data.
- ``loss`` (Yeom et al.): score = log p_y (low loss: member), threshold from the shadows.

Hidden probabilities (top-k or label-only APIs) are read as their share of the hidden
mass: a label outside the top k gets (1 − shown mass) / (number of hidden classes).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from attacks.amia.metrics import best_threshold
from attacks.amia.shadows import ShadowBank

TINY = 1e-30


def true_class_confidence(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """p_y and Σ_{c≠y} p_c per row, with hidden entries given their share of the hidden mass."""
    probs = np.asarray(probs, dtype=np.float64)
    rows = np.arange(len(labels))
    hidden_mass = np.clip(1.0 - probs.sum(axis=1), 0.0, 1.0)
    n_hidden = np.maximum((probs <= 0).sum(axis=1), 1)
    shown_y = probs[rows, labels]
    is_shown = shown_y > 0
    p_y = np.where(is_shown, shown_y, hidden_mass / n_hidden)
    # summing the other entries directly keeps Σ_{c≠y} p_c exact when p_y is close to 1
    masked = probs.copy()
    masked[rows, labels] = 0.0
    shown_others = masked.sum(axis=1)
    others = shown_others + hidden_mass - np.where(is_shown, 0.0, p_y)
    return p_y, np.maximum(others, 0.0)


def logit_confidence(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """LiRA's φ = log p_y − log Σ_{c≠y} p_c."""
    p_y, others = true_class_confidence(probs, labels)
    return np.log(np.maximum(p_y, TINY)) - np.log(np.maximum(others, TINY))


def log_likelihood(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """log p_y, i.e. minus the cross-entropy loss."""
    return np.log(np.maximum(true_class_confidence(probs, labels)[0], TINY))


def sorted_probs(probs: np.ndarray) -> np.ndarray:
    """Each probability vector sorted in decreasing order (label-free, as the paper's attack)."""
    return -np.sort(-np.asarray(probs, dtype=np.float64), axis=1)


class MLPAttack:
    """The paper's attack model: 3-layer MLP on sorted probability vectors, SGD."""

    name = "mlp"

    def __init__(self, epochs: int = 100, lr: float = 0.05, hidden: int = 64, seed: int = 0) -> None:
        self.epochs, self.lr, self.hidden, self.seed = epochs, lr, hidden, seed
        self.threshold = 0.5

    def fit(self, bank: ShadowBank) -> MLPAttack:
        x = sorted_probs(bank.probs.reshape(-1, bank.probs.shape[-1]))
        y = bank.in_mask.reshape(-1).astype(np.float32)
        self.mean, self.std = x.mean(0), x.std(0) + 1e-6  # standardised inputs: SGD converges
        xt = torch.from_numpy(((x - self.mean) / self.std).astype(np.float32))
        yt = torch.from_numpy(y)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.net = nn.Sequential(nn.Linear(x.shape[1], self.hidden), nn.ReLU(),
                                     nn.Linear(self.hidden, self.hidden), nn.ReLU(), nn.Linear(self.hidden, 1))
        opt = torch.optim.SGD(self.net.parameters(), lr=self.lr, momentum=0.9)
        rng = np.random.default_rng([self.seed, 91])
        for _ in range(self.epochs):
            for batch in np.array_split(rng.permutation(len(yt)), max(1, len(yt) // 128)):
                loss = nn.functional.binary_cross_entropy_with_logits(self.net(xt[batch]).squeeze(1), yt[batch])
                opt.zero_grad()
                loss.backward()
                opt.step()
        return self

    @torch.no_grad()
    def score(self, probs: np.ndarray, labels: np.ndarray, shadow_probs: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(((sorted_probs(probs) - self.mean) / self.std).astype(np.float32))
        return torch.sigmoid(self.net(x).squeeze(1)).double().numpy()


class LossAttack:
    """Loss threshold: members have low loss on the model; threshold from the shadows."""

    name = "loss"

    def fit(self, bank: ShadowBank) -> LossAttack:
        scores = np.stack([log_likelihood(p, bank.labels) for p in bank.probs])
        self.threshold = best_threshold(bank.in_mask.reshape(-1).astype(int), scores.reshape(-1))
        return self

    def score(self, probs: np.ndarray, labels: np.ndarray, shadow_probs: np.ndarray) -> np.ndarray:
        return log_likelihood(probs, labels)


class LiRAOffline:
    """Offline likelihood-ratio attack: z of the target's φ under the shadows' out-Gaussian."""

    name = "lira"

    def __init__(self, per_example_min: int = 16) -> None:
        self.per_example_min = per_example_min

    def z(self, phi: np.ndarray, out_phis: np.ndarray, out_mask: np.ndarray) -> np.ndarray:
        """z per column: ``out_phis`` (shadows, n) restricted by ``out_mask`` to out shadows."""
        count = out_mask.sum(0)
        mu = np.where(count > 0, (out_phis * out_mask).sum(0) / np.maximum(count, 1), np.nan)
        resid = np.where(out_mask, out_phis - mu, 0.0)
        pooled = np.sqrt((resid**2).sum() / max(int((count - 1).clip(0).sum()), 1))
        if out_mask.shape[0] >= self.per_example_min:
            sigma = np.sqrt((resid**2).sum(0) / np.maximum(count - 1, 1))
        else:
            sigma = np.full(phi.shape, pooled)
        return (phi - mu) / np.maximum(sigma, 1e-6)

    def fit(self, bank: ShadowBank) -> LiRAOffline:
        phis = np.stack([logit_confidence(p, bank.labels) for p in bank.probs])
        out = ~bank.in_mask
        scores, labels = [], []
        for s in range(len(phis)):  # shadow s plays the target, the others are the attacker's shadows
            others = np.arange(len(phis)) != s
            z = self.z(phis[s], phis[others], out[others])
            ok = np.isfinite(z)
            scores.append(z[ok])
            labels.append(bank.in_mask[s][ok].astype(int))
        scores, labels = np.concatenate(scores), np.concatenate(labels)
        self.threshold = best_threshold(labels, scores) if 0 < labels.sum() < len(labels) else 0.0
        return self

    def score(self, probs: np.ndarray, labels: np.ndarray, shadow_probs: np.ndarray) -> np.ndarray:
        phis = np.stack([logit_confidence(p, labels) for p in shadow_probs])
        z = self.z(logit_confidence(probs, labels), phis, np.ones_like(phis, dtype=bool))
        return np.nan_to_num(z, nan=0.0)


# AMIA's membership-inference variants (``amia-attacks``), not attacks on captures
# (those are fednas.registry.ATTACKS); fednas.config.AMIA_ATTACKS lists the same names.
MIA_VARIANTS: dict[str, Callable[..., object]] = {
    "mlp": lambda cfg, seed: MLPAttack(cfg.amia.amia_mlp_epochs, cfg.amia.amia_mlp_lr, seed=seed),
    "lira": lambda cfg, seed: LiRAOffline(),
    "loss": lambda cfg, seed: LossAttack(),
}


def make_variant(name: str, cfg: object, seed: int) -> object:
    """An unfitted membership-inference variant by name."""
    try:
        return MIA_VARIANTS[name](cfg, seed)
    except KeyError:
        raise ValueError(f"unknown membership-inference attack {name!r}; choose one of: "
                         f"{', '.join(MIA_VARIANTS)}") from None
