"""Edge-batched evaluation of the mixed ops that leave one node: the fused supernets' core.

All the edges leaving a node read the same tensor, so (docs/architecture.md, "Performance"):

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
    """The conv weights of the m edges leaving one node; groups are (kind, edge), kind-major."""

    dw1: torch.Tensor  # [C, 2m, 25] sep3 (padded to 5x5), sep5: first stage, dilation 1
    dw1d: torch.Tensor  # [C, 2m, 25] dil3 (padded), dil5: dilation 2
    pw1: torch.Tensor  # [2m, C, C] sep3, sep5
    pw1d: torch.Tensor  # [2m, C, C] dil3, dil5
    dw2: torch.Tensor  # [2mC, 1, 5, 5] sep3 (padded), sep5: second stage
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
        pw1 = torch.stack([_weights(self.pw1[0]), _weights(self.pw1[1])])  # [2, E, C, C, 1, 1]
        pw1d = torch.stack([_weights(self.pw1[2]), _weights(self.pw1[3])])
        dw2 = torch.stack([_weights(self.dw2[0], 1), _weights(self.dw2[1])])
        pw2 = torch.stack([_weights(mods) for mods in self.pw2])
        out = []
        for parts in zip(*(t.split(self.sizes, dim=1) for t in (dw1, dw1d, pw1, pw1d, dw2, pw2))):
            _, m, c = parts[0].shape[:3]

            def taps(t: torch.Tensor) -> torch.Tensor:  # [2, m, C, 1, 5, 5] -> [C, 2m, 25]
                return t.reshape(2 * m, c, 25).transpose(0, 1).contiguous()

            out.append(NodeWeights(taps(parts[0]), taps(parts[1]), parts[2].reshape(2 * m, c, c),
                                   parts[3].reshape(2 * m, c, c), parts[4].reshape(2 * m * c, 1, 5, 5),
                                   parts[5].reshape(2 * m, c, c)))
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
        """Train mode: fold every group's batch statistics into the running ones (unless the
        modules were told not to track them: ``Supernet.stop_tracking_running_stats``)."""
        if not self.bn["bn1"].modules[0].track_running_stats:
            return
        for name, bank in self.bn.items():
            means, variances = [], []
            for n, stats, count in zip(self.sizes, batch, counts):
                mean, var = stats[name]  # [kinds or 1 ..., C]
                kinds = mean.shape[0]
                means.append(mean.expand(kinds, n, -1).reshape(kinds * n, -1))
                # running_var tracks the unbiased variance, as nn.BatchNorm2d does
                variances.append(var.expand(kinds, n, -1).reshape(kinds * n, -1) * (count / (count - 1)))
            bank.update(torch.cat(means), torch.cat(variances))


def _centre(y: torch.Tensor, running: tuple[torch.Tensor, torch.Tensor] | None, sets: int = 1):
    """BatchNorm's statistics of ``y`` [G, C, N]: ``(y - mean, var, mean)``, shaped [G, C, S, N/S].

    Train mode: batch statistics over the last dim, separately for each of the ``sets``
    equal chunks of it (independent sets of samples; 1: the whole batch). The mean is a sum
    scaled afterwards, so that its backward is a broadcast, where ``mean``'s would divide
    the whole tensor. Eval mode: ``running`` = (mean, var) of shape [G, C]; the returned
    mean is then None.
    """
    y = y.view(*y.shape[:2], sets, y.shape[-1] // sets)
    if running is None:
        scale = 1.0 / y.shape[-1]
        mean = y.sum(-1, keepdim=True) * scale
        centred = y - mean
        return centred, (centred * centred).sum(-1, keepdim=True) * scale, mean
    mean, var = running
    return y - mean.reshape(*y.shape[:2], 1, 1), var.reshape(*y.shape[:2], 1, 1), None


def node_forward(bank: EdgeBank, x: torch.Tensor, w: torch.Tensor, p: NodeWeights,
                 running: dict[str, tuple[torch.Tensor, torch.Tensor]] | None, sets: int = 1):
    """Every mixed op leaving one node, weighted: ``out[e] = sum_k w[k, e] op_k,e(x)``.

    Tensors are channel-major, [C, B, H, W], so that every per-group product is a batched
    matrix product over contiguous (B, H, W) and every BatchNorm statistic a reduction
    over the last dimension.

    Parameters
    ----------
    bank : EdgeBank
        The bank the node's edges belong to (activation, BatchNorm eps).
    x : tensor [C, B, H, W]
        The node's value, channel-major.
    w : tensor [len(PRIMITIVES), m], or [S, len(PRIMITIVES), m] with one α per set
        Softmax weights of the m edges leaving the node (one column per edge).
    p : NodeWeights
        Their conv weights.
    running : dict or None
        Running statistics (eval mode, from :meth:`EdgeBank.running_stats`); ``None``
        normalises with batch statistics (train mode).
    sets : int
        Train mode: the batch is ``sets`` independent sets of B/S samples in a row, each
        normalised by its own statistics (and weighted by its own ``w``): S separate
        forward passes in one, every unfold and product shared.

    Returns
    -------
    out : tensor [m, C, B, H, W]
    batch_stats : dict or None
        Train mode with one set: the detached batch means and biased variances,
        ``{bn: (mean, var)}`` with shapes [kinds, m, C] (pools: [2, 1, C], shared by
        every edge).
    """
    c, b, h, wd = x.shape
    m, n, eps = w.shape[-1], b * h * wd, bank.eps
    train = running is None
    if train and n <= sets:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {tuple(x.shape)}")
    if not train and sets != 1:
        raise ValueError("independent sets of samples need batch statistics (train mode)")
    run = (lambda name: None) if train else (lambda name: running[name])  # noqa: E731
    a = bank.act(x).view(1, c * b, h, wd)  # one image of C*B planes: im2col loops over images

    def patches(dilation: int) -> torch.Tensor:  # [C, 25, B*H*W]
        u = F.unfold(a, 5, dilation=dilation, padding=2 * dilation).view(c, b, 25, h * wd)
        return u.transpose(1, 2).reshape(c, 25, n)

    # stage 1 of the four convs of all m edges: depthwise over channels, pointwise over groups
    ya = torch.bmm(p.pw1, torch.bmm(p.dw1, patches(1)).transpose(0, 1))  # [2m, C, N] sep3, sep5
    yb = torch.bmm(p.pw1d, torch.bmm(p.dw1d, patches(2)).transpose(0, 1))  # [2m, C, N] dil3, dil5
    bn1 = run("bn1")
    ca, var_a, mean_a = _centre(ya, None if bn1 is None else (bn1[0][:2], bn1[1][:2]), sets)
    cb, var_b, mean_b = _centre(yb, None if bn1 is None else (bn1[0][2:], bn1[1][2:]), sets)
    # stage 2 of the separable convs: one depthwise conv over (group, channel, sample) planes
    s = bank.act(ca * (var_a + eps).rsqrt()).view(1, 2 * m * c * b, h, wd)
    d3 = depthwise(s, p.dw2.repeat_interleave(b, 0) if b > 1 else p.dw2, 1).view(2 * m, c, n)
    c2, var2, mean2 = _centre(torch.bmm(p.pw2, d3), run("bn2"), sets)
    # parameter-free ops, once for the node
    pooled = torch.stack([F.max_pool2d(x, 3, 1, 1), F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)])
    if train:
        _, pvar, pmean = _centre(pooled.view(2, c, n), None, sets)  # [2, C, S, 1]
        pmean_e, pvar_e = pmean[:, None], pvar[:, None]  # [2, 1, C, S, 1]: every edge alike
    else:
        pmean_e, pvar_e = (t[..., None, None] for t in running["pool"])  # [2, m, C, 1, 1]
    # the weighted sum: softmax weights folded into the final normalisations, per set
    ws = (w if w.dim() == 3 else w[None]).permute(1, 2, 0)[:, :, None, :, None]  # [ops, m, 1, S or 1, 1]
    sep = ws[_W_CONV][:2] * (var2.view(2, m, c, sets, 1) + eps).rsqrt()  # [2, m, C, S, 1]
    dil = ws[_W_CONV][2:] * (var_b.view(2, m, c, sets, 1) + eps).rsqrt()
    pscale = ws[_W_POOL] * (pvar_e + eps).rsqrt()  # [2, m, C, S, 1]
    per_set = (2, m, c, sets, n // sets)
    out = (c2.view(per_set) * sep).sum(0) + (cb.view(per_set) * dil).sum(0)  # [m, C, S, N/S]
    free_scale = torch.cat([pscale, ws[_W_SKIP].expand(1, m, c, *pscale.shape[3:])])  # [3, m, C, S, 1]
    free = torch.cat([pooled.view(2, c, n), x.view(1, c, n)]).view(3, c, sets, n // sets)  # [3, C, S, N/S]
    out = out + torch.einsum("kmcs,kcsn->mcsn", free_scale[..., 0], free) - (pscale * pmean_e).sum(0)
    out = out.view(m, c, b, h, wd)
    if not train or sets != 1:
        return out, None
    stats = lambda t, kinds: t.detach().view(kinds, m, c)  # noqa: E731
    return out, {"pool": (pmean.detach().view(2, 1, c), pvar.detach().view(2, 1, c)),
                 "bn1": (torch.cat([stats(mean_a, 2), stats(mean_b, 2)]), torch.cat([stats(var_a, 2), stats(var_b, 2)])),
                 "bn2": (stats(mean2, 2), stats(var2, 2))}
