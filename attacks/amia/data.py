"""Who is a member, and what the attacker holds.

Members are the clients' D^α samples (what trained α); non-members the ``holdout`` pool,
never trained on. D^θ samples, members through the weights, are scored against the same
non-members as the weight-level baseline. The attacker holds the ``aux`` pool, of which
only a share η is kept when its data is shifted (Table 5); the rest comes from an
unrelated source available offline:

- ``patches``: square crops (16-128 px) of the two photos shipped with scikit-learn
  (``load_sample_images``: a temple in China and a flower), turned to the target's
  channels (luma for grey) and size, labelled by k-means into the target's classes;
- ``fashion-mnist``: Fashion-MNIST from ``data-root`` (when a local copy exists), resized,
  its 10 classes taken modulo the target's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fednas.data import ImageSet, load_dataset, make_pools, partition_clients
from fednas.spaces import InputSpec


class AMIAInputError(ValueError):
    """The run directory or the AMIA settings cannot give what the attack needs."""


@dataclass(frozen=True)
class MembershipSets:
    """Global indices of the queried samples (equal numbers of members and non-members)."""

    alpha: np.ndarray  # D^α members
    theta: np.ndarray  # D^θ members (weight-level baseline)
    nonmembers: np.ndarray  # holdout
    available: dict[str, int]


def membership_sets(dataset: ImageSet, cfg: Any, num_clients: int, n: int = 0) -> MembershipSets:
    """Sample ``n`` D^α members, up to ``n`` D^θ members and ``n`` non-members (0: all the
    pools allow), seeded by the run's seed; the clients' splits as the run made them."""
    splits = partition_clients(dataset, cfg.data, cfg.run.seed, num_clients)
    alpha = np.sort(np.concatenate([s.alpha for s in splits]))
    theta = np.sort(np.concatenate([s.theta for s in splits]))
    holdout = make_pools(len(dataset), cfg.data, cfg.run.seed).holdout
    available = {"alpha": len(alpha), "theta": len(theta), "holdout": len(holdout)}
    most = min(len(alpha), len(holdout))
    if n > most:
        raise AMIAInputError(
            f"'amia-members' = {n} asks for more than exist: the run has {len(alpha)} D^alpha members "
            f"and {len(holdout)} held-out non-members (holdout-fraction={cfg.data.holdout_fraction}); "
            f"use at most {most}, or 0 for as many as possible")
    n = n or most
    if n < 2:
        raise AMIAInputError(f"too few samples to attack: {len(alpha)} D^alpha members, {len(holdout)} held out")
    rng = np.random.default_rng([cfg.run.seed, 61])
    pick = lambda a, k: np.sort(rng.choice(a, size=min(k, len(a)), replace=False))  # noqa: E731
    return MembershipSets(pick(alpha, n), pick(theta, n), pick(holdout, n), available)


@dataclass(frozen=True)
class AttackerData:
    """The attacker's labelled samples; ``ids`` are non-negative and unique (aux samples
    keep their global index, shifted ones come after the dataset's end)."""

    x: torch.Tensor
    y: torch.Tensor
    ids: np.ndarray
    from_target: np.ndarray  # bool: drawn from the target's distribution (aux pool)

    def __len__(self) -> int:
        return int(len(self.y))


def _to_spec(x: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """Images (N, c, h, w) in [0, 1] to the spec's channels and size."""
    if x.shape[1] == 3 and spec.channels == 1:
        x = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    elif x.shape[1] == 1 and spec.channels == 3:
        x = x.repeat(1, 3, 1, 1)
    elif x.shape[1] != spec.channels:
        raise AMIAInputError(f"cannot map {x.shape[1]}-channel images to {spec.channels} channels")
    size = (spec.image_size, spec.image_size)
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def photo_patches(n: int, spec: InputSpec, seed: int, data: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` crops of scikit-learn's two sample photos, k-means labelled into the spec's classes."""
    from sklearn.cluster import KMeans
    from sklearn.datasets import load_sample_images

    photos = [torch.from_numpy(im.astype(np.float32) / 255.0).permute(2, 0, 1) for im in load_sample_images().images]
    rng = np.random.default_rng([seed, 71])
    crops = []
    for _ in range(n):
        im = photos[rng.integers(len(photos))]
        side = int(rng.integers(16, 129))
        top, left = int(rng.integers(im.shape[1] - side + 1)), int(rng.integers(im.shape[2] - side + 1))
        crops.append(_to_spec(im[None, :, top : top + side, left : left + side], spec)[0])
    x = torch.stack(crops) if crops else torch.zeros(0, spec.channels, spec.image_size, spec.image_size)
    k = min(spec.num_classes, n)
    labels = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(x.flatten(1).numpy()) if n else []
    return x, torch.as_tensor(np.asarray(labels, dtype=np.int64))


def fashion_mnist(n: int, spec: InputSpec, seed: int, data: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` Fashion-MNIST images from ``data-root``, resized; labels modulo the spec's classes."""
    fm = load_dataset("fashion-mnist", getattr(data, "data_root", ""))
    pick = np.sort(np.random.default_rng([seed, 72]).choice(len(fm), size=n, replace=False))
    return _to_spec(fm.x[pick], spec), fm.y[pick] % spec.num_classes


SHIFT_SOURCES: dict[str, Callable[..., tuple[torch.Tensor, torch.Tensor]]] = {
    "patches": photo_patches,
    "fashion-mnist": fashion_mnist,
}


def attacker_data(dataset: ImageSet, cfg: Any, eta: float, source: str) -> AttackerData:
    """The aux pool, of which a share ``eta`` is kept and the rest replaced by ``source``."""
    aux = make_pools(len(dataset), cfg.data, cfg.run.seed).aux
    if len(aux) < 4:
        raise AMIAInputError(f"the attacker's pool is {len(aux)} samples (aux-fraction={cfg.data.aux_fraction}); "
                             "shadow models need more: raise aux-fraction")
    n_in = int(round(eta * len(aux)))
    keep = np.sort(np.random.default_rng([cfg.run.seed, 62]).permutation(aux)[:n_in])
    try:
        make = SHIFT_SOURCES[source]
    except KeyError:
        raise AMIAInputError(f"unknown shift source {source!r}; choose one of: {', '.join(SHIFT_SOURCES)}") from None
    xs, ys = make(len(aux) - n_in, dataset.spec, cfg.run.seed, cfg.data) if n_in < len(aux) else (None, None)
    x, y = dataset.x[keep], dataset.y[keep]
    ids = keep.astype(np.int64)
    if xs is not None:
        x, y = torch.cat([x, xs]), torch.cat([y, ys])
        ids = np.concatenate([ids, len(dataset) + np.arange(len(xs))])
    return AttackerData(x, y, ids, np.arange(len(y)) < n_in)
