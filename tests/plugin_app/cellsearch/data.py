"""8x8 digits in [0, 1]; the first 1400 shared among the clients, the rest public."""

from __future__ import annotations

import functools

import numpy as np

CLIENT_SHARE = 1400


@functools.lru_cache(maxsize=1)
def images() -> tuple[np.ndarray, np.ndarray]:
    """All images (N, 1, 8, 8) and labels; what the clients' truth records index."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype(np.float32)[:, None], d.target.astype(np.int64)


def public_images() -> tuple[np.ndarray, np.ndarray]:
    """The images no client holds (the attacker may have them)."""
    x, y = images()
    return x[CLIENT_SHARE:], y[CLIENT_SHARE:]


def partition(pid: int, clients: int) -> tuple[np.ndarray, np.ndarray]:
    """(architecture pool, weight pool) of one client: every clients-th image, split in two."""
    own = np.arange(pid, CLIENT_SHARE, clients)
    return own[: len(own) // 3], own[len(own) // 3:]
