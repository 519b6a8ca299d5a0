"""Edge-batched evaluation of the mixed ops that leave one node: the fused supernets' core.

All the edges leaving a node read the same tensor, so (DESIGN.md, Performance):

- the parameter-free ops are computed once per node (``none`` adds nothing; skip is the
  node itself; each pool runs once, and in train mode the BatchNorm after it sees the same
  batch on every edge, so one set of statistics serves them all);
- the first stage of the four convolutions of every edge reads the node's patches, unfolded
  once: one batched product per dilation for the depthwise part, one for the pointwise part;
  then the second stage of the separable convolutions runs as one depthwise and one batched
  pointwise product;
- BatchNorm with ``affine=False`` over the concatenated channels is per-edge BatchNorm;
- the softmax weights fold into the last normalisation, so the weighted sum over ops is one
  multiply-and-sum plus one small contraction for the parameter-free ops.

Channels are ordered (kind, edge, channel) within a node. The parameters and buffers stay in
the reference's modules (same names and shapes); each forward reads them from there, so
``torch.func.functional_call`` and ``load_arrays`` work unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fednas.ops import PRIMITIVES, MixedOp
from fednas.spaces.bnbank import BatchNormBank
from fednas.spaces.depthwise import depthwise

_IDX = {name: i for i, name in enumerate(PRIMITIVES)}
SEP = ("sep_conv_3x3", "sep_conv_5x5")
DIL = ("dil_conv_3x3", "dil_conv_5x5")
CONV = SEP + DIL
POOL = ("max_pool_3x3", "avg_pool_3x3")


def _rows(names: Sequence[str]) -> slice:
    rows = [_IDX[k] for k in names]
    if rows != list(range(rows[0], rows[0] + len(rows))):
        raise ImportError(f"PRIMITIVES must list {names} next to each other")  # lets α rows be sliced, not gathered
    return slice(rows[0], rows[0] + len(rows))


_W_CONV, _W_POOL, _W_SKIP = _rows(CONV), _rows(POOL), _rows(("skip_connect",))


def _layer(op: nn.Module, kind: str, stage: int, part: int) -> nn.Module:
    """Layer ``part`` (1 depthwise, 2 pointwise, 3 BatchNorm) of a DilConv or of a SepConv's stage."""
    return op[stage][part] if kind in SEP else op[part]


def _weights(mods: Sequence[nn.Module], pad: int = 0) -> torch.Tensor:
    """The modules' weights stacked on a new first dim; ``pad`` zero-pads 3x3 kernels to 5x5."""
    w = torch.stack([m._parameters["weight"] for m in mods])
    return F.pad(w, (pad, pad, pad, pad)) if pad else w


@dataclass
class NodeWeights:
    """The conv weights of the m edges leaving one node, kind-major."""

    dw1: torch.Tensor  # [2m, C, 25] sep3 (padded to 5x5), sep5: dilation 1
    dw1d: torch.Tensor  # [2m, C, 25] dil3 (padded), dil5: dilation 2
    pw1: torch.Tensor  # [4m, C, C]
    dw2: torch.Tensor  # [2mC, 1, 5, 5]
    pw2: torch.Tensor  # [2m, C, C]


class EdgeBank:
    """Fused evaluation of groups of stride-1 mixed ops, each group leaving one source node.

    Parameters
    ----------
    groups : sequence of sequences of MixedOp
        ``groups[g]`` are the edges leaving source ``g``, in the order their outputs are
        returned. The modules stay owned by the supernet; the bank only reads them (and
        keeps their BatchNorm buffers packed, see :class:`BatchNormBank`).
    """

    def __init__(self, groups: Sequence[Sequence[MixedOp]]) -> None:
        self.sizes = [len(g) for g in groups]
        if not all(self.sizes):
            raise ValueError("every group of an EdgeBank needs at least one edge")
        self.edges = [e for g in groups for e in g]

        def per_kind(kinds: Sequence[str], stage: int, part: int) -> list[list[nn.Module]]:
            return [[_layer(e.ops[_IDX[k]], k, stage, part) for e in self.edges] for k in kinds]

        self.dw1, self.pw1 = per_kind(CONV, 0, 1), per_kind(CONV, 0, 2)
        self.dw2, self.pw2 = per_kind(SEP, 1, 1), per_kind(SEP, 1, 2)

        def kind_major(kinds: Sequence[str], layer) -> list[nn.Module]:  # (group, kind, edge)
            return [layer(e.ops[_IDX[k]], k) for g in groups for k in kinds for e in g]

        self.bn = {
            "pool": BatchNormBank(kind_major(POOL, lambda op, k: op[1])),
            "bn1": BatchNormBank(kind_major(CONV, lambda op, k: _layer(op, k, 0, 3))),
            "bn2": BatchNormBank(kind_major(SEP, lambda op, k: _layer(op, k, 1, 3))),
        }
        self.eps = self.bn["pool"].eps
        if any(b.eps != self.eps for b in self.bn.values()):
            raise ValueError("fused BatchNorms must share one eps")
        self.act = self.edges[0].ops[_IDX["sep_conv_3x3"]][0][0]

    def pack(self) -> None:
        """Re-pack the BatchNorm buffers (after they were replaced, e.g. by ``.to(device)``)."""
        for bank in self.bn.values():
            bank.pack()

    def weights(self) -> list[NodeWeights]:
        """The conv weights of every group, stacked across all edges once and split per group."""
        dw1 = torch.stack([_weights(self.dw1[0], 1), _weights(self.dw1[1])])  # [2, E, C, 1, 5, 5]
        dw1d = torch.stack([_weights(self.dw1[2], 1), _weights(self.dw1[3])])
        pw1 = torch.stack([_weights(mods) for mods in self.pw1])  # [4, E, C, C, 1, 1]
        dw2 = torch.stack([_weights(self.dw2[0], 1), _weights(self.dw2[1])])
        pw2 = torch.stack([_weights(mods) for mods in self.pw2])
        out = []
        for parts in zip(*(t.split(self.sizes, dim=1) for t in (dw1, dw1d, pw1, dw2, pw2))):
            k, m, c = parts[0].shape[:3]
            out.append(NodeWeights(parts[0].reshape(2 * m, c, 25), parts[1].reshape(2 * m, c, 25),
                                   parts[2].reshape(4 * m, c, c), parts[3].reshape(2 * m * c, 1, 5, 5),
                                   parts[4].reshape(2 * m, c, c)))
        return out

    def running_stats(self) -> list[dict[str, torch.Tensor]]:
        """Eval mode: every group's running means and variances, as [kinds, m, C] tensors."""
        out: list[dict[str, torch.Tensor]] = [{} for _ in self.sizes]
        for name, bank in self.bn.items():
            kinds = len(bank.modules) // sum(self.sizes)
            means, variances = bank.running()
            for g, (mean, var) in enumerate(zip(means.split([kinds * n for n in self.sizes]),
                                                variances.split([kinds * n for n in self.sizes]))):
                out[g][name] = (mean.view(kinds, self.sizes[g], -1), var.view(kinds, self.sizes[g], -1))
        return out

    def update_running_stats(self, batch: Sequence[dict[str, tuple[torch.Tensor, torch.Tensor]]],
                             counts: Sequence[int]) -> None:
        """Train mode: fold every group's batch statistics into the running ones."""
        for name, bank in self.bn.items():
            means, variances = [], []
            for n, stats, count in zip(self.sizes, batch, counts):
                mean, var = stats[name]  # [kinds or 1 ..., C]
                kinds = mean.shape[0]
                means.append(mean.expand(kinds, n, -1).reshape(kinds * n, -1))
                # running_var tracks the unbiased variance, as nn.BatchNorm2d does
                variances.append(var.expand(kinds, n, -1).reshape(kinds * n, -1) * (count / (count - 1)))
            bank.update(torch.cat(means), torch.cat(variances))


def _mean(y: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    # sum then scale: the backward is a broadcast, where mean's would divide the whole tensor
    n = 1
    for d in dims:
        n *= y.shape[d]
    return y.sum(dims, keepdim=True) * (1.0 / n)


def _centre(y: torch.Tensor, dims: tuple[int, ...], running: tuple[torch.Tensor, torch.Tensor] | None):
    """``(y - mean, var, mean)``: batch statistics over ``dims`` (train; mean None in eval) or running ones."""
    if running is None:
        mean = _mean(y, dims)
        centred = y - mean
        return centred, _mean(centred * centred, dims), mean
    mean, var = running
    shape = [1, *mean.shape, 1]  # [1, kinds, m, C, 1]
    return y - mean.view(shape), var.view(shape), None


def node_forward(bank: EdgeBank, x: torch.Tensor, w: torch.Tensor, p: NodeWeights,
                 running: dict[str, tuple[torch.Tensor, torch.Tensor]] | None):
    """Every mixed op leaving one node, weighted: ``out[:, e] = sum_k w[e, k] op_k,e(x)``.

    Parameters
    ----------
    bank : EdgeBank
        The bank the node's edges belong to (activation, BatchNorm eps).
    x : tensor [B, C, H, W]
        The node's value.
    w : tensor [len(PRIMITIVES), m]
        Softmax weights of the m edges leaving the node (one column per edge).
    p : NodeWeights
        Their conv weights.
    running : dict or None
        Running statistics (eval mode, from :meth:`EdgeBank.running_stats`); ``None``
        normalises with batch statistics (train mode).

    Returns
    -------
    out : tensor [B, m, C, H, W]
    batch_stats : dict or None
        Train mode: the detached batch means and biased variances, ``{bn: (mean, var)}``.
    """
    b, c, h, wd = x.shape
    m, l, eps = w.shape[1], h * wd, bank.eps
    train = running is None
    if train and b * l <= 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {tuple(x.shape)}")
    a = bank.act(x)
    # stage 1 of the four convs of all m edges, from the node's patches
    u1 = F.unfold(a, 5, padding=2).view(b, c, 25, l)
    u2 = F.unfold(a, 5, dilation=2, padding=4).view(b, c, 25, l)
    d = torch.cat([torch.einsum("gct,bctl->bgcl", p.dw1, u1), torch.einsum("gct,bctl->bgcl", p.dw1d, u2)], 1)
    y1 = torch.matmul(p.pw1, d).view(b, 4, m, c, l)
    c1, var1, mean1 = _centre(y1, (0, 4), None if train else running["bn1"])
    r1 = (var1 + eps).rsqrt()
    # stage 2 of the separable convs
    s = bank.act(c1[:, :2] * r1[:, :2]).reshape(b, 2 * m * c, h, wd)
    d3 = depthwise(s, p.dw2, 1).view(b, 2 * m, c, l)
    y2 = torch.matmul(p.pw2, d3).view(b, 2, m, c, l)
    c2, var2, mean2 = _centre(y2, (0, 4), None if train else running["bn2"])
    r2 = (var2 + eps).rsqrt()
    # parameter-free ops, once for the node
    pooled = torch.stack([F.max_pool2d(x, 3, 1, 1), F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)], 1)
    pooled = pooled.view(b, 2, c, l)
    if train:
        pc, pvar, pmean = _centre(pooled, (0, 3), None)
        pmean, pvar = pmean[0, :, :, 0], pvar[0, :, :, 0]  # [2, C]
        pmean_e, pvar_e = pmean[:, None], pvar[:, None]  # [2, 1, C]
    else:
        pmean_e, pvar_e = running["pool"]  # [2, m, C]
    # the weighted sum: softmax weights folded into the final normalisations
    scale = w[_W_CONV, :, None] * torch.cat([r2, r1[:, 2:]], 1)[0, ..., 0]  # [4, m, C]
    pscale = w[_W_POOL, :, None] * (pvar_e + eps).rsqrt()  # [2, m, C]
    free_scale = torch.cat([pscale, w[_W_SKIP, :, None].expand(1, m, c)])  # [3, m, C]
    free = torch.cat([pooled, x.view(b, 1, c, l)], 1)  # [B, 3, C, L]
    out = (torch.cat([c2, c1[:, 2:]], 1) * scale[None, :, :, :, None]).sum(1)
    out = out + torch.einsum("kmc,bkcl->bmcl", free_scale, free) - (pscale * pmean_e).sum(0)[None, :, :, None]
    out = out.view(b, m, c, h, wd)
    if not train:
        return out, None
    squeeze = lambda t: t.detach()[0, ..., 0]  # noqa: E731  [1, kinds, m, C, 1] -> [kinds, m, C]
    return out, {"pool": (pmean.detach()[:, None], pvar.detach()[:, None]),
                 "bn1": (squeeze(mean1), squeeze(var1)), "bn2": (squeeze(mean2), squeeze(var2))}
