"""SMASH's network for the dag space: a hypernetwork writes the weights of the sampled ops.

After SMASH (Brock et al. 2018, ajbrock/SMASH): an architecture is written into an
encoding tensor, a convolutional hypernetwork reads it and outputs the 1x1 (pointwise)
convolution weights of the architecture's ops, while other weights are learnt freely
and shared (the reference's ``W``: its spatial convolutions). Scaled to this space:

- encoding: one column per dag edge (i, j), with a one-hot of the op the architecture
  puts there (``none`` = the edge is unused), the edge's normalised source and target,
  and a fixed random embedding z ~ N(0, 1) (the reference's ``z``);
- hypernetwork: 1-D convolutions along the edges (kernel 3, LeakyReLU(0.02) as the
  reference), ending in a 1x1 convolution with 2·C·C outputs per edge: the pointwise
  weights of a separable conv's two stages (a dilated conv uses the first);
- freely learnt: the stem, every op's depthwise kernels, and the head; BatchNorm keeps
  no affine parameters, as everywhere in this project.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fednas.ops import PRIMITIVES, make_activation
from fednas.paradigms.arch import Arch, arch_genotype, edge_index
from fednas.spaces import Genotype, InputSpec, Supernet
from fednas.spaces.dag import Head, dag_edges

NONE = PRIMITIVES.index("none")
# op -> (kernel, dilation, stages): the ops whose pointwise weights the hypernetwork writes
CONVS = {"sep_conv_3x3": (3, 1, 2), "sep_conv_5x5": (5, 1, 2), "dil_conv_3x3": (3, 2, 1), "dil_conv_5x5": (5, 2, 1)}


class HyperEdge(nn.Module):
    """One edge's ops with their own depthwise kernels and BatchNorms; pointwise weights come in."""

    def __init__(self, c: int, act: str) -> None:
        super().__init__()
        self.act = make_activation(act)
        self.dw = nn.ModuleDict()
        self.bn = nn.ModuleDict()
        for name, (k, d, stages) in CONVS.items():
            for s in range(stages):
                self.dw[f"{name}_{s}"] = nn.Conv2d(c, c, k, padding=d * (k - 1) // 2, dilation=d, groups=c, bias=False)
                self.bn[f"{name}_{s}"] = nn.BatchNorm2d(c, affine=False)
        self.bn["max_pool_3x3"] = nn.BatchNorm2d(c, affine=False)
        self.bn["avg_pool_3x3"] = nn.BatchNorm2d(c, affine=False)

    def forward(self, x: torch.Tensor, op: int, pointwise: torch.Tensor) -> torch.Tensor:
        """``pointwise`` (stages, C, C, 1, 1): this edge's generated weights."""
        name = PRIMITIVES[op]
        if name == "skip_connect":
            return x
        if name == "max_pool_3x3":
            return self.bn[name](F.max_pool2d(x, 3, 1, 1))
        if name == "avg_pool_3x3":
            return self.bn[name](F.avg_pool2d(x, 3, 1, 1, count_include_pad=False))
        if name not in CONVS:
            raise ValueError(f"op {name!r} has no place in a SMASH architecture")
        for s in range(CONVS[name][2]):
            key = f"{name}_{s}"
            x = self.bn[key](F.conv2d(self.dw[key](self.act(x)), pointwise[s]))
        return x


class HyperNet(nn.Module):
    """Encoding (1, ops + 3, edges) -> pointwise weights (edges, 2, C, C, 1, 1)."""

    def __init__(self, edges: int, c: int, hidden: int) -> None:
        super().__init__()
        self.c = c
        self.register_buffer("z", torch.randn(edges))  # re-drawn by the seeded init of build_smash
        self.net = nn.Sequential(
            nn.Conv1d(len(PRIMITIVES) + 3, hidden, 3, padding=1), nn.LeakyReLU(0.02),
            nn.Conv1d(hidden, hidden, 3, padding=1), nn.LeakyReLU(0.02),
            nn.Conv1d(hidden, 2 * c * c, 1),
        )

    def forward(self, encoding: torch.Tensor) -> torch.Tensor:
        out = self.net(encoding)  # (1, 2CC, E)
        return out[0].t().reshape(-1, 2, self.c, self.c, 1, 1)


class SmashDag(Supernet):
    """The dag space with hypernetwork-generated pointwise weights; no architecture parameter."""

    def __init__(self, spec: InputSpec, nodes: int, channels: int, activation: str, head: str, hidden: int = 64) -> None:
        super().__init__()
        self.nodes, self.channels = nodes, channels
        self.edge_list = dag_edges(nodes)
        self.stem = nn.Sequential(nn.Conv2d(spec.channels, channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels, affine=False))
        self.edges = nn.ModuleList(HyperEdge(channels, activation) for _ in self.edge_list)
        self.hyper = HyperNet(len(self.edge_list), channels, hidden)
        self.head = Head(head, channels, spec.image_size, spec.num_classes)
        span = max(nodes - 1, 1)
        self.register_buffer("positions", torch.tensor([[i / span, j / span] for i, j in self.edge_list]).t().contiguous())
        self.arch: Arch | None = None

    def encode(self, arch: Arch) -> torch.Tensor:
        """The architecture's encoding tensor (1, len(PRIMITIVES) + 3, edges)."""
        ops = torch.zeros(len(PRIMITIVES), len(self.edge_list), device=self.positions.device)
        ops[NONE] = 1.0
        for j, node in enumerate(arch, start=1):
            for i, op in node:
                e = edge_index(i, j)
                ops[:, e] = 0.0
                ops[op, e] = 1.0
        return torch.cat([ops, self.hyper.z.view(1, -1), self.positions]).unsqueeze(0)

    def generate(self, arch: Arch) -> dict[tuple[int, int], torch.Tensor]:
        """The weights the hypernetwork writes for ``arch``: {(edge, op): (stages, C, C, 1, 1)}."""
        w = self.hyper(self.encode(arch))
        out = {}
        for j, node in enumerate(arch, start=1):
            for i, op in node:
                if PRIMITIVES[op] in CONVS:
                    e = edge_index(i, j)
                    out[(e, op)] = w[e, : CONVS[PRIMITIVES[op]][2]]
        return out

    def forward(self, x: torch.Tensor, arch: Arch | None = None) -> torch.Tensor:
        arch = self.arch if arch is None else arch
        if arch is None:
            raise ValueError("SmashDag needs an architecture: pass one or set model.arch")
        weights = self.generate(arch)
        states = [self.stem(x)]
        for j, node in enumerate(arch, start=1):
            total = 0
            for i, op in node:
                e = edge_index(i, j)
                total = total + self.edges[e](states[i], op, weights.get((e, op)))
            states.append(total)
        return self.head(states[-1])

    def genotype(self, k: int = 2) -> Genotype:
        if self.arch is None:
            raise ValueError("no architecture set (model.arch)")
        return arch_genotype(self.arch)
