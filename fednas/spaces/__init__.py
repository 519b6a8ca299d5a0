"""Search spaces by name (:data:`fednas.registry.SPACES`), and one function that builds a seeded supernet.

A space is a builder ``(space section, InputSpec, fused) -> Supernet``; a space without a
fused form ignores ``fused``.
"""

from __future__ import annotations

from typing import Any

import torch

from fednas.registry import SPACES
from fednas.spaces.base import InputSpec, Supernet, init_weights
from fednas.spaces.darts import DartsSupernet
from fednas.spaces.darts_fused import FusedDartsSupernet
from fednas.spaces.dag import DagSupernet, dag_edges
from fednas.spaces.dag_fused import FusedDagSupernet
from fednas.spaces.genotype import Genotype, derive_edges


def build_dag(c: Any, spec: InputSpec, fused: bool = True) -> Supernet:
    """The paper's P-node DAG supernet (``SPACES["dag"]``); fused or the per-edge reference."""
    cls = FusedDagSupernet if fused else DagSupernet
    return cls(spec, c.dag_nodes, c.channels, c.activation, c.head)


def build_darts(c: Any, spec: InputSpec, fused: bool = True) -> Supernet:
    """Stacked DARTS cells (``SPACES["darts"]``); fused or the per-edge reference."""
    cls = FusedDartsSupernet if fused else DartsSupernet
    return cls(spec, c.layers, c.cell_nodes, c.channels, c.activation, c.head)


def build_supernet(space: Any, spec: InputSpec, seed: int, fused: bool | None = None) -> Supernet:
    """Build the supernet named by ``space.space``, initialised deterministically from ``seed``.

    Parameters
    ----------
    space : SpaceConfig
        The ``space`` section of the config.
    spec : InputSpec
        Input channels, image size and classes (from the dataset).
    seed : int
        Seed of θ and α initialisation.
    fused : bool, optional
        Override ``space.fused``. Both forms have the same parameters and outputs.
    """
    builder = SPACES.get(space.space)  # a clear error naming the spaces on an unknown one
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # torch's default init draws from the global generator
        model = builder(space, spec, space.fused if fused is None else fused)
    generator = torch.Generator().manual_seed(seed + 1)
    init_weights(model, space.theta_init, space.theta_init_bound, space.alpha_init_scale, generator)
    return model


__all__ = [
    "SPACES", "InputSpec", "Supernet", "Genotype", "DagSupernet", "DartsSupernet", "FusedDagSupernet",
    "FusedDartsSupernet",
    "build_dag", "build_darts", "build_supernet", "dag_edges", "derive_edges",
]
