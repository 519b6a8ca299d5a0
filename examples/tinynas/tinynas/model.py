"""A DARTS-style network: 3 mixed edges over 4 candidate ops, α as named parameters.

Node 0 is the stem's output; node 1 = edge(0→1); node 2 = edge(0→2) + edge(1→2). Each
edge is a softmax(α)-weighted sum of its candidate ops. α is one parameter, ``arch.edges``
(3 edges × 4 ops); everything else is θ. A flatten head keeps position in the
architecture gradient.
"""

from __future__ import annotations

import torch
from torch import nn

OPS = ("conv_3x3", "avg_pool_3x3", "max_pool_3x3", "skip_connect")
EDGES = ((0, 1), (0, 2), (1, 2))


def _op(name: str, c: int) -> nn.Module:
    if name == "conv_3x3":
        return nn.Sequential(nn.ELU(), nn.Conv2d(c, c, 3, padding=1, bias=False),
                             nn.BatchNorm2d(c, affine=False, track_running_stats=False))
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, 1, 1, count_include_pad=False)
    if name == "max_pool_3x3":
        return nn.MaxPool2d(3, 1, 1)
    return nn.Identity()


class TinyDarts(nn.Module):
    def __init__(self, channels: int = 4, image_size: int = 8, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels, affine=False, track_running_stats=False))
        self.edges = nn.ModuleList(nn.ModuleList(_op(o, channels) for o in OPS) for _ in EDGES)
        self.arch = nn.ParameterDict({"edges": nn.Parameter(1e-3 * torch.randn(len(EDGES), len(OPS)))})
        self.head = nn.Linear(channels * image_size * image_size, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.arch["edges"], dim=-1)
        nodes = [self.stem(x)]
        for target in (1, 2):
            nodes.append(sum(sum(w * op(nodes[src]) for w, op in zip(weights[e], self.edges[e]))
                             for e, (src, dst) in enumerate(EDGES) if dst == target))
        return self.head(nodes[-1].flatten(1))


def build() -> TinyDarts:
    """The factory the attack calls (``--model tinynas.model:build``)."""
    return TinyDarts()
