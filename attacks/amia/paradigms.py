"""AMIA on runs of any NAS paradigm: the served model, the final genotype, the searched shadow.

For ``paradigm = "darts"`` AMIA works as before. For the others the run's ``model.npz``
holds the paradigm's arrays (its server state included), so the target is rebuilt by the
paradigm (:meth:`fednas.paradigms.base.Paradigm.model`): P-DARTS's last-stage supernet,
ENAS's shared child running its final architecture, SMASH's network running the best
candidate with the weights its hypernetwork writes. A searched shadow searches the way
the target did (the paradigm is public): :func:`fednas.paradigms.federation.search_alone`
on the attacker's own data, the paradigm's round schedule included.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from fednas.data import ClientSplit, ImageSet
from fednas.paradigms import STATE_PREFIX, paradigm_of
from fednas.paradigms.federation import search_alone
from fednas.spaces import Genotype, InputSpec, Supernet


class Served(nn.Module):
    """A paradigm's final network as the API serves it: logits of ``forward(x)``, its
    architecture parameters frozen (a distilled student keeps the architecture)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        if isinstance(model, Supernet):
            for p in model.arch_parameters():
                p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def has_weights(arrays: dict[str, Any]) -> bool:
    return any(not k.startswith(("alpha", STATE_PREFIX)) for k in arrays)


def final_model(cfg: Any, spec: InputSpec, arrays: dict[str, Any]) -> Served:
    """The paradigm's network with the run's final arrays."""
    return Served(paradigm_of(cfg).model(cfg, spec, arrays))


def final_genotype(cfg: Any, spec: InputSpec, arrays: dict[str, Any]) -> Genotype:
    return paradigm_of(cfg).genotype(cfg, spec, arrays)


def searched_shadow(cfg: Any, x: torch.Tensor, y: torch.Tensor, split: ClientSplit, steps: int, spec: InputSpec,
                    seed: int, device: str, noise: Any) -> tuple[nn.Module, Genotype]:
    """(served model, genotype) of the target's paradigm searched on the attacker's data."""
    run = cfg.replace(seed=int(seed) % (2**31))
    model, genotype = search_alone(run, ImageSet("attacker", x, y, spec.num_classes), split, steps,
                                   int(np.random.SeedSequence([seed, 85]).generate_state(1)[0]), device, noise)
    return Served(model).eval(), genotype
