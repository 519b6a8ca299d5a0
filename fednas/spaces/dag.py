"""The paper's search space: P nodes after a stem, every earlier node feeding every later one.

Node 0 is the stem's output; node j (1 <= j < P) is the sum over i < j of a mixed op on
node i. α has one row per edge (i, j), ordered by j then i: P(P-1)/2 rows of 8 logits.
The classifier reads the last node. This is the straightforward per-edge reference form.
"""

from __future__ import annotations

import torch
from torch import nn

from fednas.ops import PRIMITIVES, MixedOp
from fednas.spaces.base import InputSpec, Supernet
from fednas.spaces.genotype import Genotype, derive_edges


def dag_edges(nodes: int) -> list[tuple[int, int]]:
    """Edges (i, j), i < j, in α's row order."""
    return [(i, j) for j in range(1, nodes) for i in range(j)]


class Head(nn.Module):
    """Classifier: ``gap`` (global average pool, linear) or ``flatten`` (linear over all)."""

    def __init__(self, kind: str, channels: int, spatial: int, num_classes: int) -> None:
        super().__init__()
        if kind not in ("gap", "flatten"):
            raise ValueError(f"unknown head {kind!r}; choose gap or flatten")
        self.kind = kind
        width = channels if kind == "gap" else channels * spatial * spatial
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.mean(dim=(2, 3)) if self.kind == "gap" else x.flatten(1)
        return self.classifier(x)


class DagSupernet(Supernet):
    """Per-edge reference implementation of the ``dag`` space."""

    def __init__(self, spec: InputSpec, nodes: int = 8, channels: int = 8,
                 activation: str = "elu", head: str = "gap") -> None:
        super().__init__()
        if nodes < 2:
            raise ValueError(f"nodes (P) must be >= 2, got {nodes}")
        self.spec, self.nodes, self.channels = spec, nodes, channels
        self.activation = activation
        self.stem = nn.Sequential(
            nn.Conv2d(spec.channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels, affine=False),
        )
        self.edges = nn.ModuleList(MixedOp(channels, 1, activation) for _ in dag_edges(nodes))
        self.alpha = nn.Parameter(torch.zeros(len(self.edges), len(PRIMITIVES)))
        self.head = Head(head, channels, spec.image_size, spec.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last node's feature map."""
        weights = torch.softmax(self.alpha, dim=-1)
        states = [self.stem(x)]
        e = 0
        for j in range(1, self.nodes):
            total = 0
            for i in range(j):
                total = total + self.edges[e](states[i], weights[e])
                e += 1
            states.append(total)
        return states[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def genotype(self, k: int = 2) -> Genotype:
        weights = torch.softmax(self.alpha.detach(), dim=-1).cpu().numpy()
        edges = derive_edges(weights, list(range(1, self.nodes)), k)
        return Genotype("dag", {"dag": edges}, (self.nodes - 1,))
