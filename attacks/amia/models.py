"""Networks of the membership attack: fixed shadow architectures and the derived network.

- ``resnet18`` / ``resnet50``: torchvision's ResNets (random init), adapted to small
  inputs as is usual for CIFAR-size images: a 3x3 stride-1 first convolution taking the
  dataset's channels, and no max-pool. The paper's fixed shadow is ResNet-50; ResNet-18
  is the light default.
- ``cnn``: a small two-layer CNN (a light shadow, and the "concise" MD student).
- :func:`derived_network`: the discrete network a genotype describes (one op per kept
  edge), the architecture DARTS retrains after its search, in the ``dag`` and ``darts``
  spaces, built from the same ops, stem and head as the supernet.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from fednas.ops import OPS, ActConvBN, FactorizedReduce
from fednas.spaces import Genotype, InputSpec
from fednas.spaces.dag import Head


def resnet(depth: int, spec: InputSpec) -> nn.Module:
    """torchvision ResNet-``depth`` for ``spec``'s channels, size and classes."""
    from torchvision.models import resnet18, resnet50

    builders = {18: resnet18, 50: resnet50}
    if depth not in builders:
        raise ValueError(f"resnet depth {depth} not offered; choose one of {sorted(builders)}")
    model = builders[depth](weights=None, num_classes=spec.num_classes)
    model.conv1 = nn.Conv2d(spec.channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()  # small images: keep the resolution for the residual stages
    return model


class SmallCNN(nn.Sequential):
    """conv(32) → pool → conv(64) → pool to 2x2 → 128 → classes."""

    def __init__(self, spec: InputSpec) -> None:
        super().__init__(
            nn.Conv2d(spec.channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
            nn.Flatten(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, spec.num_classes),
        )


FIXED_ARCHITECTURES: dict[str, Callable[[InputSpec], nn.Module]] = {
    "resnet18": lambda spec: resnet(18, spec),
    "resnet50": lambda spec: resnet(50, spec),
    "cnn": SmallCNN,
}


def fixed_architecture(name: str, spec: InputSpec, seed: int) -> nn.Module:
    """A freshly initialised fixed architecture by name (seeded)."""
    try:
        build = FIXED_ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown fixed architecture {name!r}; choose one of: {', '.join(FIXED_ARCHITECTURES)}") from None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build(spec)


class _Node(nn.Module):
    """One node of a derived cell: the sum of its kept edges, one op each."""

    def __init__(self, edges: tuple[tuple[str, int], ...], c: int, act: str, stride_of: Callable[[int], int]) -> None:
        super().__init__()
        self.inputs = [i for _, i in edges]
        self.ops = nn.ModuleList(OPS[op](c, stride_of(i), act) for op, i in edges)

    def forward(self, states: list[torch.Tensor]) -> torch.Tensor:
        return sum(op(states[i]) for op, i in zip(self.ops, self.inputs))


class DerivedDag(nn.Module):
    """The ``dag`` space's derived network: stem, kept edges, head on the last node."""

    def __init__(self, genotype: Genotype, spec: InputSpec, channels: int, act: str, head: str) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(spec.channels, channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels, affine=False))
        self.nodes = nn.ModuleList(_Node(edges, channels, act, lambda i: 1) for edges in genotype.cells["dag"])
        self.head = Head(head, channels, spec.image_size, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states = [self.stem(x)]
        for node in self.nodes:
            states.append(node(states))
        return self.head(states[-1])


class _DerivedCell(nn.Module):
    def __init__(self, nodes: Any, concat: tuple[int, ...], c_pp: int, c_p: int, c: int,
                 reduction: bool, reduction_prev: bool, act: str) -> None:
        super().__init__()
        self.reduction, self.concat = reduction, concat
        self.preprocess0 = FactorizedReduce(c_pp, c, act) if reduction_prev else ActConvBN(c_pp, c, 1, 1, 0, act)
        self.preprocess1 = ActConvBN(c_p, c, 1, 1, 0, act)
        stride = (lambda i: 2 if i < 2 else 1) if reduction else (lambda i: 1)
        self.nodes = nn.ModuleList(_Node(edges, c, act, stride) for edges in nodes)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for node in self.nodes:
            states.append(node(states))
        return torch.cat([states[i] for i in self.concat], dim=1)


class DerivedDarts(nn.Module):
    """The ``darts`` space's derived network (DARTS's evaluation network, without the
    auxiliary head and drop-path): the supernet's stem, cell layout and head."""

    def __init__(self, genotype: Genotype, spec: InputSpec, layers: int, channels: int, act: str,
                 head: str, stem_multiplier: int = 3) -> None:
        super().__init__()
        multiplier = len(genotype.concat)
        c_curr = stem_multiplier * channels
        self.stem = nn.Sequential(nn.Conv2d(spec.channels, c_curr, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(c_curr, affine=False))
        c_pp, c_p, c_curr = c_curr, c_curr, channels
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            c_curr *= 2 if reduction else 1
            kind = "reduce" if reduction else "normal"
            self.cells.append(_DerivedCell(genotype.cells[kind], genotype.concat, c_pp, c_p, c_curr,
                                           reduction, reduction_prev, act))
            reduction_prev = reduction
            c_pp, c_p = c_p, multiplier * c_curr
        self.head = Head(head, c_p, spec.image_size // 4, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.head(s1)


def derived_network(genotype: Genotype, space: Any, spec: InputSpec, seed: int) -> nn.Module:
    """The discrete network of ``genotype`` in the config's space (torch's default init, seeded)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if genotype.space == "dag":
            return DerivedDag(genotype, spec, space.channels, space.activation, space.head)
        if genotype.space == "darts":
            return DerivedDarts(genotype, spec, space.layers, space.channels, space.activation, space.head)
    raise ValueError(f"no derived network for search space {genotype.space!r}")
