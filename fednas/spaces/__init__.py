"""Search spaces by name, and one function that builds a seeded supernet from the config."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from fednas.spaces.base import InputSpec, Supernet, init_weights
from fednas.spaces.darts import DartsSupernet
from fednas.spaces.darts_fused import FusedDartsSupernet
from fednas.spaces.dag import DagSupernet, dag_edges
from fednas.spaces.dag_fused import FusedDagSupernet
from fednas.spaces.genotype import Genotype, derive_edges

Builder = Callable[[Any, InputSpec], Supernet]

# name -> {"reference": builder, "fused": builder}; a space without a fused form maps both
# to its reference. Builders take the frozen space section of the config.
SPACES: dict[str, dict[str, Builder]] = {
    "dag": {
        "reference": lambda c, spec: DagSupernet(spec, c.dag_nodes, c.channels, c.activation, c.head),
        "fused": lambda c, spec: FusedDagSupernet(spec, c.dag_nodes, c.channels, c.activation, c.head),
    },
    "darts": {
        "reference": lambda c, spec: DartsSupernet(spec, c.layers, c.cell_nodes, c.channels, c.activation, c.head),
        "fused": lambda c, spec: FusedDartsSupernet(spec, c.layers, c.cell_nodes, c.channels, c.activation, c.head),
    },
}


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
    forms = SPACES.get(space.space)
    if forms is None:
        raise ValueError(f"unknown search space {space.space!r}; choose one of: {', '.join(SPACES)}")
    use_fused = space.fused if fused is None else fused
    builder = forms.get("fused", forms["reference"]) if use_fused else forms["reference"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # torch's default init draws from the global generator
        model = builder(space, spec)
    generator = torch.Generator().manual_seed(seed + 1)
    init_weights(model, space.theta_init, space.theta_init_bound, space.alpha_init_scale, generator)
    return model


__all__ = [
    "SPACES", "InputSpec", "Supernet", "Genotype", "DagSupernet", "DartsSupernet", "FusedDagSupernet",
    "FusedDartsSupernet",
    "build_supernet", "dag_edges", "derive_edges",
]
