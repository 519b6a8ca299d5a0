"""The standard DARTS cell space: stacked normal and reduction cells of 4 steps (14 edges).

Written after DARTS's ``model_search.py``: a stem, ``layers`` cells with reductions at
1/3 and 2/3 of the depth, each cell reading the two previous cells' outputs, and one α
per cell kind (``alpha_normal`` and ``alpha_reduce``, 14 x 8 each at 4 steps).
"""

from __future__ import annotations

import torch
from torch import nn

from fednas.ops import PRIMITIVES, ActConvBN, FactorizedReduce, MixedOp
from fednas.spaces.base import InputSpec, Supernet
from fednas.spaces.dag import Head
from fednas.spaces.genotype import Genotype, derive_edges


class Cell(nn.Module):
    """One searchable cell: ``steps`` nodes, each the sum of mixed ops on all earlier states."""

    def __init__(self, steps: int, multiplier: int, c_pp: int, c_p: int, c: int,
                 reduction: bool, reduction_prev: bool, act: str) -> None:
        super().__init__()
        self.reduction, self.steps, self.multiplier = reduction, steps, multiplier
        self.preprocess0 = FactorizedReduce(c_pp, c, act) if reduction_prev else ActConvBN(c_pp, c, 1, 1, 0, act)
        self.preprocess1 = ActConvBN(c_p, c, 1, 1, 0, act)
        self.ops = nn.ModuleList(
            MixedOp(c, 2 if reduction and j < 2 else 1, act) for i in range(steps) for j in range(2 + i)
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for _ in range(self.steps):
            s = sum(self.ops[offset + j](h, weights[offset + j]) for j, h in enumerate(states))
            offset += len(states)
            states.append(s)
        return torch.cat(states[-self.multiplier :], dim=1)


class DartsSupernet(Supernet):
    """DARTS's search network with a choice of activation and head."""

    def __init__(self, spec: InputSpec, layers: int = 5, steps: int = 4, channels: int = 8,
                 activation: str = "elu", head: str = "gap", multiplier: int | None = None,
                 stem_multiplier: int = 3) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError(f"the darts space needs an even channel count, got channels={channels}")
        if spec.image_size % 4:
            raise ValueError(f"the darts space halves the image twice; image size {spec.image_size} is not a multiple of 4")
        multiplier = multiplier or steps
        self.steps, self.layers = steps, layers
        c_curr = stem_multiplier * channels
        self.stem = nn.Sequential(
            nn.Conv2d(spec.channels, c_curr, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_curr, affine=False),
        )
        c_pp, c_p, c_curr = c_curr, c_curr, channels
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                c_curr *= 2
            self.cells.append(Cell(steps, multiplier, c_pp, c_p, c_curr, reduction, reduction_prev, activation))
            reduction_prev = reduction
            c_pp, c_p = c_p, multiplier * c_curr
        n_edges = sum(2 + i for i in range(steps))
        self.alpha_normal = nn.Parameter(torch.zeros(n_edges, len(PRIMITIVES)))
        self.alpha_reduce = nn.Parameter(torch.zeros(n_edges, len(PRIMITIVES)))
        self.head = Head(head, c_p, spec.image_size // 4, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w_normal = torch.softmax(self.alpha_normal, dim=-1)
        w_reduce = torch.softmax(self.alpha_reduce, dim=-1)
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, w_reduce if cell.reduction else w_normal)
        return self.head(s1)

    def genotype(self, k: int = 2) -> Genotype:
        inputs = [2 + i for i in range(self.steps)]
        cells = {
            kind: derive_edges(torch.softmax(a.detach(), dim=-1).cpu().numpy(), inputs, k)
            for kind, a in (("normal", self.alpha_normal), ("reduce", self.alpha_reduce))
        }
        return Genotype("darts", cells, tuple(range(2, 2 + self.steps)))
