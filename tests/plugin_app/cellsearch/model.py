"""One searchable cell: two intermediate nodes, three mixed edges of three candidate operations.

The architecture weights are one parameter, ``cell.arch_weights`` (edges x operations); every
other parameter is a weight. Normalisation uses batch statistics only (no running buffers).
"""

from __future__ import annotations

import torch
from torch import nn

CANDIDATES = ("conv3", "conv1", "avg3")


def _candidate(name: str, width: int) -> nn.Module:
    if name == "avg3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    k = 3 if name == "conv3" else 1
    return nn.Sequential(nn.ReLU(), nn.Conv2d(width, width, k, padding=k // 2, bias=False),
                         nn.BatchNorm2d(width, affine=False, track_running_stats=False))


class Cell(nn.Module):
    """in -> a, in -> b, a -> b; each edge a softmax(arch_weights)-weighted sum of the candidates."""

    EDGES = (("in", "a"), ("in", "b"), ("a", "b"))

    def __init__(self, width: int) -> None:
        super().__init__()
        self.ops = nn.ModuleList(nn.ModuleList(_candidate(c, width) for c in CANDIDATES) for _ in self.EDGES)
        self.arch_weights = nn.Parameter(torch.zeros(len(self.EDGES), len(CANDIDATES)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mix = torch.softmax(self.arch_weights, dim=-1)
        states = {"in": x}
        for node in ("a", "b"):
            states[node] = sum(sum(w * op(states[src]) for w, op in zip(mix[e], self.ops[e]))
                               for e, (src, dst) in enumerate(self.EDGES) if dst == node)
        return states["b"]


class Net(nn.Module):
    def __init__(self, width: int = 4, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(width, affine=False, track_running_stats=False))
        self.cell = Cell(width)
        self.classifier = nn.Linear(width * 8 * 8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.cell(self.stem(x)).flatten(1))


def make_net() -> Net:
    """The model factory the attack calls with no argument."""
    return Net()
