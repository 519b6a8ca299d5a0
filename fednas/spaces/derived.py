"""The discrete network a genotype describes, and random genotypes of the same space.

DARTS retrains the architecture it found from scratch, as a network of one op per kept
edge, usually wider and deeper than the search network and with two regularisers of its
evaluation stage: an auxiliary classifier on an intermediate cell (weight 0.4 in DARTS)
and drop-path (each non-identity op's output dropped per sample with a probability that
rises linearly to 0.2). Here, in both spaces, with the supernet's ops, stem and head:

- ``dag``: the stem, then node j = sum of its kept edges (one op each), the head on the
  last node; ``channels`` may differ from the search's.
- ``darts``: DARTS's evaluation network: ``layers`` cells (reductions at 1/3 and 2/3), the
  normal or reduction cell of the genotype, ``channels`` in the first cell, optional
  auxiliary head after the cell at 2/3.

:func:`random_genotype` draws the random-search baseline of the same space (Li &
Talwalkar 2019; Yu et al. 2020): DARTS's parse of α ~ N(0, 1), i.e. per node a uniformly
random set of ``k`` inputs, each with a uniformly random op other than ``none``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from fednas.ops import OPS, ActConvBN, FactorizedReduce, make_activation
from fednas.spaces.base import InputSpec
from fednas.spaces.dag import Head
from fednas.spaces.genotype import Genotype


def drop_path(x: torch.Tensor, p: float) -> torch.Tensor:
    """Zero whole samples with probability ``p``, scale the rest by 1/(1 − p) (DARTS)."""
    if p <= 0:
        return x
    keep = torch.bernoulli(torch.full((x.shape[0], 1, 1, 1), 1.0 - p, device=x.device, dtype=x.dtype))
    return x * keep / (1.0 - p)


class _Node(nn.Module):
    """One node of a derived cell: the sum of its kept edges, one op each."""

    def __init__(self, edges: tuple[tuple[str, int], ...], c: int, act: str, stride_of: Callable[[int], int]) -> None:
        super().__init__()
        self.inputs = [i for _, i in edges]
        self.ops = nn.ModuleList(OPS[op](c, stride_of(i), act) for op, i in edges)

    def forward(self, states: list[torch.Tensor], drop_prob: float = 0.0) -> torch.Tensor:
        outs = []
        for op, i in zip(self.ops, self.inputs):
            h = op(states[i])
            if self.training and drop_prob > 0 and not isinstance(op, nn.Identity):
                h = drop_path(h, drop_prob)
            outs.append(h)
        return sum(outs)


class DerivedNetwork(nn.Module, abc.ABC):
    """Base: ``forward`` gives logits; ``forward_with_aux`` also the auxiliary head's (or None).

    ``drop_prob`` is the current drop-path probability (the trainer schedules it).
    """

    drop_prob: float = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_aux(x)[0]

    @abc.abstractmethod
    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits and the auxiliary head's logits (None without one): each space defines it."""


class DerivedDag(DerivedNetwork):
    """The ``dag`` space's derived network: stem, kept edges, head on the last node."""

    def __init__(self, genotype: Genotype, spec: InputSpec, channels: int, act: str, head: str) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(spec.channels, channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels, affine=False))
        self.nodes = nn.ModuleList(_Node(edges, channels, act, lambda i: 1) for edges in genotype.cells["dag"])
        self.head = Head(head, channels, spec.image_size, spec.num_classes)

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        states = [self.stem(x)]
        for node in self.nodes:
            states.append(node(states, self.drop_prob))
        return self.head(states[-1]), None


class _DerivedCell(nn.Module):
    def __init__(self, nodes: Any, concat: tuple[int, ...], c_pp: int, c_p: int, c: int,
                 reduction: bool, reduction_prev: bool, act: str) -> None:
        super().__init__()
        self.reduction, self.concat = reduction, concat
        self.preprocess0 = FactorizedReduce(c_pp, c, act) if reduction_prev else ActConvBN(c_pp, c, 1, 1, 0, act)
        self.preprocess1 = ActConvBN(c_p, c, 1, 1, 0, act)
        stride = (lambda i: 2 if i < 2 else 1) if reduction else (lambda i: 1)
        self.nodes = nn.ModuleList(_Node(edges, c, act, stride) for edges in nodes)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for node in self.nodes:
            states.append(node(states, drop_prob))
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHead(nn.Module):
    """DARTS's auxiliary classifier, sized for small feature maps: act → pool to 2×2 →
    1×1 conv (128) → BatchNorm → act → linear."""

    def __init__(self, c: int, num_classes: int, act: str) -> None:
        super().__init__()
        self.features = nn.Sequential(make_activation(act), nn.AdaptiveAvgPool2d(2),
                                      nn.Conv2d(c, 128, 1, bias=False), nn.BatchNorm2d(128), make_activation(act))
        self.classifier = nn.Linear(128 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class DerivedDarts(DerivedNetwork):
    """The ``darts`` space's derived network (DARTS's evaluation network): the supernet's
    stem, cell layout and head, ``layers`` cells, an optional auxiliary head."""

    def __init__(self, genotype: Genotype, spec: InputSpec, layers: int, channels: int, act: str,
                 head: str, stem_multiplier: int = 3, auxiliary: bool = False) -> None:
        super().__init__()
        multiplier = len(genotype.concat)
        c_curr = stem_multiplier * channels
        self.stem = nn.Sequential(nn.Conv2d(spec.channels, c_curr, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(c_curr, affine=False))
        c_pp, c_p, c_curr = c_curr, c_curr, channels
        self.cells = nn.ModuleList()
        self.aux_after = 2 * layers // 3 if auxiliary else -1
        self.auxiliary_head = None
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            c_curr *= 2 if reduction else 1
            kind = "reduce" if reduction else "normal"
            self.cells.append(_DerivedCell(genotype.cells[kind], genotype.concat, c_pp, c_p, c_curr,
                                           reduction, reduction_prev, act))
            reduction_prev = reduction
            c_pp, c_p = c_p, multiplier * c_curr
            if i == self.aux_after:
                self.auxiliary_head = AuxiliaryHead(c_p, spec.num_classes, act)
        self.head = Head(head, c_p, spec.image_size // 4, spec.num_classes)

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        s0 = s1 = self.stem(x)
        aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_prob)
            if i == self.aux_after and self.training:
                aux = self.auxiliary_head(s1)
        return self.head(s1), aux


def derived_network(genotype: Genotype, space: Any, spec: InputSpec, seed: int, *, channels: int = 0,
                    layers: int = 0, auxiliary: bool = False) -> DerivedNetwork:
    """The discrete network of ``genotype`` (torch's default init, seeded).

    ``channels``/``layers`` 0 take the search's (``space.channels``, ``space.layers``);
    ``layers`` and ``auxiliary`` apply to the ``darts`` space.
    """
    c = channels or space.channels
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if genotype.space == "dag":
            return DerivedDag(genotype, spec, c, space.activation, space.head)
        if genotype.space == "darts":
            return DerivedDarts(genotype, spec, layers or space.layers, c, space.activation, space.head,
                                auxiliary=auxiliary)
    raise ValueError(f"no derived network for search space {genotype.space!r}")


def random_genotype(space: Any, spec: InputSpec, k: int, seed: int) -> Genotype:
    """A uniformly random genotype of the space: DARTS's parse of α ~ N(0, 1)."""
    from fednas.spaces import build_supernet  # the registry imports this module's neighbours

    model = build_supernet(space, spec, 0, fused=False)
    rng = np.random.default_rng([seed, 0x7A4D])
    model.load_arrays({n: torch.from_numpy(rng.standard_normal(tuple(p.shape)).astype(np.float32))
                       for n, p in model.named_arch_parameters()})
    return model.genotype(k)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters of the network the model serves (the auxiliary head excluded:
    DARTS reports the size of the network used at test time)."""
    aux = getattr(model, "auxiliary_head", None)
    skip = {id(p) for p in aux.parameters()} if aux is not None else set()
    return sum(p.numel() for p in model.parameters() if p.requires_grad and id(p) not in skip)
