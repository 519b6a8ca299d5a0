"""Null reconstructions: what an attacker holding only its aux pool and the sample's class
would "rebuild" without reading the update at all.

An attack counts where its figures clear these: a random aux image of the sample's class
(``aux-random``) and the aux pool's mean image of that class (``aux-mean``). Both use the
attacker's own data only, never a client's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from attacks.base import Reconstruction

NULL_KINDS = ("aux-random", "aux-mean")


def null_reconstruction(kind: str, capture_id: str, samples: Sequence[tuple[int, int, int]], labels: Sequence[int],
                        aux_x: np.ndarray, aux_y: np.ndarray, rng: np.random.Generator) -> Reconstruction:
    """A stand-in for an attack's reconstruction of one capture that never reads the update.

    ``samples``: (step, position, index) of the capture's true samples; ``labels`` their
    classes. ``aux-random``: for each, a random aux image of its class; ``aux-mean``: the
    mean aux image of its class. Failed where the aux pool has no image of a class."""
    if kind not in NULL_KINDS:
        raise ValueError(f"unknown null {kind!r}; choose from {', '.join(NULL_KINDS)}")
    images = []
    for label in labels:
        pool = aux_x[aux_y == label]
        if len(pool) == 0:
            return Reconstruction.failed(capture_id, f"the aux pool has no image of class {label}")
        images.append(pool[rng.integers(len(pool))] if kind == "aux-random" else pool.mean(axis=0))
    shape = (0, *aux_x.shape[1:])
    return Reconstruction(capture_id, images=np.stack(images).astype(np.float32) if images else np.zeros(shape, np.float32),
                          labels=np.asarray(labels, np.int64), steps=np.array([s for s, _, _ in samples], np.int64),
                          positions=np.array([p for _, p, _ in samples], np.int64))
