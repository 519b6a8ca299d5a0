"""scikit-learn's 8×8 digits: 80% split over the clients, 20% public (the attacker may hold it)."""

from __future__ import annotations

import functools

import numpy as np

PUBLIC_SHARE = 0.2


@functools.lru_cache(maxsize=1)
def load_all() -> tuple[np.ndarray, np.ndarray]:
    """Every image (N, 1, 8, 8) in [0, 1] and its label, in a fixed shuffled order."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))
    x = (digits.images[order] / 16.0).astype(np.float32)[:, None]
    return x, digits.target[order].astype(np.int64)


def _cut() -> int:
    return int(len(load_all()[1]) * (1 - PUBLIC_SHARE))


def client_split(partition_id: int, num_partitions: int) -> tuple[np.ndarray, np.ndarray]:
    """(arch indices, weight indices) of one client: its share of the clients' pool, halved."""
    own = np.arange(_cut())[partition_id::num_partitions]
    half = len(own) // 2
    return own[:half], own[half:]


def public_pool() -> tuple[np.ndarray, np.ndarray]:
    """The public 20% (no client trains on it): the attacker's auxiliary images."""
    x, y = load_all()
    return x[_cut():], y[_cut():]
