"""Candidate operations of the search spaces (DARTS's, with a choice of activation).

The compact DARTS form: a ``PRIMITIVES`` list, an ``OPS`` table of constructors and a
one-line mixed op. DARTS puts ReLU before every convolution; here the activation is a
knob (the paper's ADRA uses elu, whose smoothness matters for the attack).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "relu": nn.ReLU,  # never in-place: the attacks differentiate twice through it
}


def make_activation(name: str) -> nn.Module:
    """Return a fresh activation module by name."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of: {', '.join(ACTIVATIONS)}") from None


class Zero(nn.Module):
    """The ``none`` op: zeros shaped like the (possibly strided) input."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class ActConvBN(nn.Sequential):
    """activation -> conv -> BatchNorm (DARTS's ReLUConvBN)."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int, padding: int, act: str) -> None:
        super().__init__(
            make_activation(act),
            nn.Conv2d(c_in, c_out, k, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=False),
        )


class DilConv(nn.Sequential):
    """activation -> depthwise (dilated) conv -> pointwise conv -> BatchNorm."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int, padding: int, dilation: int, act: str) -> None:
        super().__init__(
            make_activation(act),
            nn.Conv2d(c_in, c_in, k, stride, padding, dilation=dilation, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=False),
        )


class SepConv(nn.Sequential):
    """Two stacked :class:`DilConv` blocks with dilation 1 (DARTS's separable conv)."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int, padding: int, act: str) -> None:
        super().__init__(
            DilConv(c_in, c_in, k, stride, padding, 1, act),
            DilConv(c_in, c_out, k, 1, padding, 1, act),
        )


class FactorizedReduce(nn.Module):
    """Halve the spatial size with two offset 1x1 strided convs (skip op at stride 2)."""

    def __init__(self, c_in: int, c_out: int, act: str) -> None:
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even channel count, got {c_out}")
        self.act = make_activation(act)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


def _pool(kind: str, c: int, stride: int) -> nn.Module:
    pool = (
        nn.MaxPool2d(3, stride=stride, padding=1)
        if kind == "max"
        else nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
    )
    # DARTS normalises pooled features inside the mixed op so they compete on equal terms.
    return nn.Sequential(pool, nn.BatchNorm2d(c, affine=False))


OPS: dict[str, Callable[[int, int, str], nn.Module]] = {
    "none": lambda c, stride, act: Zero(stride),
    "max_pool_3x3": lambda c, stride, act: _pool("max", c, stride),
    "avg_pool_3x3": lambda c, stride, act: _pool("avg", c, stride),
    "skip_connect": lambda c, stride, act: nn.Identity() if stride == 1 else FactorizedReduce(c, c, act),
    "sep_conv_3x3": lambda c, stride, act: SepConv(c, c, 3, stride, 1, act),
    "sep_conv_5x5": lambda c, stride, act: SepConv(c, c, 5, stride, 2, act),
    "dil_conv_3x3": lambda c, stride, act: DilConv(c, c, 3, stride, 2, 2, act),
    "dil_conv_5x5": lambda c, stride, act: DilConv(c, c, 5, stride, 4, 2, act),
}


class MixedOp(nn.Module):
    """Softmax-weighted sum of every candidate op on one edge."""

    def __init__(self, c: int, stride: int, act: str) -> None:
        super().__init__()
        self.ops = nn.ModuleList(OPS[name](c, stride, act) for name in PRIMITIVES)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return sum(w * op(x) for w, op in zip(weights, self.ops))
