"""Networks of the membership attack: fixed shadow architectures and the derived network.

- ``resnet18`` / ``resnet50``: torchvision's ResNets (random init), adapted to small
  inputs as is usual for CIFAR-size images: a 3x3 stride-1 first convolution taking the
  dataset's channels, and no max-pool. The paper's fixed shadow is ResNet-50; ResNet-18
  is the light default.
- ``cnn``: a small two-layer CNN (a light shadow, and the "concise" MD student).
- :func:`derived_network` (from ``fednas.spaces.derived``): the discrete network a
  genotype describes (one op per kept edge), the architecture DARTS retrains after its
  search, in the ``dag`` and ``darts`` spaces, built from the same ops, stem and head as
  the supernet.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from fednas.spaces import InputSpec
from fednas.spaces.derived import derived_network

__all__ = ["FIXED_ARCHITECTURES", "SmallCNN", "derived_network", "fixed_architecture", "resnet"]


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
