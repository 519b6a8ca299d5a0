"""Depthwise and pointwise convolutions whose derivatives of every order stay fast on CPU.

Why not ``F.conv2d(..., groups=G)``: its double backward (``_convolution_double_backward``)
always computes the weight term with one convolution per group, in a C++ loop, even when
nobody asked for the weights' gradient. The attacks differentiate the α-gradient with
respect to the input, so every grouped convolution would cost G small convolutions there.

:class:`DepthwiseConv` is the same convolution with a hand-written backward made of
forward convolutions: the input gradient of a stride-1 "same" depthwise convolution is the
depthwise convolution of the output gradient with the flipped kernel, so any order of
derivative is again a depthwise convolution. The weight gradient is computed only when
the running backward pass needs it. Pointwise (1x1, block-diagonal) convolutions are batched
matrix products, whose derivatives are batched matrix products.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _needed(t: torch.Tensor) -> bool:
    """Whether the running backward pass will use a gradient for ``t`` (True when unsure)."""
    if t.grad_fn is None:
        return True
    try:
        return bool(torch._C._will_engine_execute_node(t.grad_fn))
    except (AttributeError, RuntimeError):  # not inside the autograd engine, or an older torch
        return True


class DepthwiseConv(torch.autograd.Function):
    """``F.conv2d(x, w, padding=p, dilation=d, groups=C)`` with ``w`` of shape [C, 1, k, k], odd
    k, stride 1 and ``p = d (k - 1) / 2`` (output as large as the input)."""

    generate_vmap_rule = True  # torch.func.vmap (per-sample gradients) works through it

    @staticmethod
    def forward(x: torch.Tensor, w: torch.Tensor, dilation: int) -> torch.Tensor:  # noqa: D102
        return F.conv2d(x, w, None, 1, dilation * (w.shape[-1] - 1) // 2, dilation, w.shape[0])

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # noqa: D102
        x, w, dilation = inputs
        ctx.save_for_backward(x, w)
        ctx.save_for_forward(x, w)
        ctx.dilation = dilation

    @staticmethod
    def jvp(ctx, dx: torch.Tensor | None, dw: torch.Tensor | None, _: None) -> torch.Tensor:  # noqa: D102
        # Bilinear in (x, w): the tangent is conv(dx, w) + conv(x, dw) (forward mode: jacfwd).
        x, w = ctx.saved_tensors
        d = ctx.dilation
        out = DepthwiseConv.apply(dx, w, d) if dx is not None else None
        if dw is not None:
            term = DepthwiseConv.apply(x, dw, d)
            out = term if out is None else out + term
        return out if out is not None else torch.zeros_like(x)  # a "same" conv keeps x's shape

    @staticmethod
    def backward(ctx, gy: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:  # noqa: D102
        x, w = ctx.saved_tensors
        d = ctx.dilation
        gx = gw = None
        if ctx.needs_input_grad[0]:
            gx = DepthwiseConv.apply(gy, w.flip(2, 3), d)
        if ctx.needs_input_grad[1] and _needed(w):
            p = d * (w.shape[-1] - 1) // 2
            gw = torch.ops.aten.convolution_backward(
                gy, x, w, None, [1, 1], [p, p], [d, d], False, [0, 0], w.shape[0], [False, True, False])[1]
        return gx, gw, None


def depthwise(x: torch.Tensor, w: torch.Tensor, dilation: int = 1) -> torch.Tensor:
    """Depthwise "same" convolution of ``x`` [B, C, H, W] with ``w`` [C, 1, k, k]."""
    return DepthwiseConv.apply(x, w, dilation)


def pointwise(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Block-diagonal 1x1 convolution: group g of ``x`` [B, G, C, H, W] times ``w[g]`` [C_out, C]."""
    b, g, c, h, wd = x.shape
    return torch.matmul(w, x.reshape(b, g, c, h * wd)).view(b, g, w.shape[1], h, wd)
