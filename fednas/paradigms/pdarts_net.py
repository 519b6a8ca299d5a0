"""P-DARTS's search networks: pruned candidate ops per edge, deeper stage after stage.

Written after P-DARTS's ``model_search.py`` (Chen et al. 2019): every edge's mixed op holds
only the ops its ``switches`` keep, a skip connection is followed by dropout (the
rate set per round by the server), and each stage builds a deeper network. α has one
column per kept op: (edges, kept), shared by every cell of a kind.

- ``dag`` space: ``cells`` P-node DAG cells stacked, cell c's node 0 being cell c−1's
  last node (the stem's output for the first cell); one α for all of them.
- ``darts`` space: DARTS's cell layout (reductions at 1/3 and 2/3) with ``layers`` cells,
  ``alpha_normal`` and ``alpha_reduce``.

The final genotype follows the reference's last steps: per edge the strongest kept op
other than ``none``, per node the ``k`` strongest inputs, then skip connections limited
to ``max_skip`` in the normal (or dag) cell by removing the weakest one at a time.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fednas.ops import OPS, PRIMITIVES, ActConvBN, FactorizedReduce
from fednas.spaces.base import InputSpec, Supernet
from fednas.spaces.dag import Head, dag_edges
from fednas.spaces.darts import Cell, DartsSupernet
from fednas.spaces.genotype import Edge, Genotype

NONE, SKIP = PRIMITIVES.index("none"), PRIMITIVES.index("skip_connect")


class SkipDropout(nn.Module):
    """Dropout after a skip connection; ``p`` is set from outside (round by round).

    Identity when ``p`` is 0 or in eval mode, so that a model with ``p = 0`` runs under
    ``torch.func`` transforms (an attacker's replica, DP-SGD's per-example forward).
    """

    def __init__(self) -> None:
        super().__init__()
        self.p = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        return F.dropout(x, self.p, True)


class PrunedMixedOp(nn.Module):
    """Softmax-weighted sum of the kept candidate ops of one edge (P-DARTS's ``MixedOp``)."""

    def __init__(self, c: int, stride: int, act: str, kept: tuple[int, ...]) -> None:
        super().__init__()
        ops = []
        for k in kept:
            op = OPS[PRIMITIVES[k]](c, stride, act)
            if k == SKIP:
                op = nn.Sequential(op, SkipDropout())
            ops.append(op)
        self.ops = nn.ModuleList(ops)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return sum(w * op(x) for w, op in zip(weights, self.ops))


def kept_ops(switches: np.ndarray) -> list[tuple[int, ...]]:
    """Per edge, the PRIMITIVES indices a (edges, 8) 0/1 switch matrix keeps."""
    return [tuple(int(k) for k in np.flatnonzero(row > 0.5)) for row in np.asarray(switches)]


class _Pruned(Supernet):
    """What both spaces share: switches per cell kind, the skip dropout, the genotype."""

    kinds: tuple[str, ...] = ()
    max_skip: int = 2

    def set_skip_dropout(self, p: float) -> None:
        for m in self.modules():
            if isinstance(m, SkipDropout):
                m.p = float(p)

    def full_weights(self, kind: str) -> np.ndarray:
        """Softmax over the kept ops, scattered to (edges, len(PRIMITIVES)); pruned ops are −inf."""
        alpha = getattr(self, self.alpha_name(kind)).detach().cpu()
        probs = torch.softmax(alpha, dim=-1).numpy().astype(np.float64)
        out = np.full((len(probs), len(PRIMITIVES)), -np.inf)
        for e, kept in enumerate(self.kept[kind]):
            out[e, list(kept)] = probs[e]
        return out

    def alpha_name(self, kind: str) -> str:
        return "alpha" if kind == "dag" else f"alpha_{kind}"

    def genotype(self, k: int = 2) -> Genotype:
        cells = {kind: final_edges(self.full_weights(kind), self.inputs_per_node, k,
                                   self.max_skip if kind in ("dag", "normal") else None)
                 for kind in self.kinds}
        return Genotype(self.space_name, cells, self.concat)


def final_edges(weights: np.ndarray, inputs_per_node: list[int], k: int,
                max_skip: int | None) -> tuple[tuple[Edge, ...], ...]:
    """P-DARTS's final parse of one cell kind (see the module docstring).

    ``weights``: (edges, len(PRIMITIVES)) softmax weights of the kept ops, −inf where pruned.
    """
    w = weights.copy()
    w[:, NONE] = -np.inf  # the reference drops every zero op at the end
    while True:
        nodes = _parse(w, inputs_per_node, k)
        if max_skip is None:
            return nodes
        skips = [(w[start + i, SKIP], start + i) for start, edges in zip(np.cumsum([0] + inputs_per_node), nodes)
                 for op, i in edges if op == "skip_connect"]
        if len(skips) <= max_skip:
            return nodes
        w[min(skips)[1], SKIP] = -np.inf  # the weakest skip connection goes, then parse again


def _parse(w: np.ndarray, inputs_per_node: list[int], k: int) -> tuple[tuple[Edge, ...], ...]:
    nodes, start = [], 0
    for n in inputs_per_node:
        block = w[start : start + n]
        strength = block.max(axis=1)
        keep = sorted(np.argsort(-strength, kind="stable")[: min(k, n)])
        edges = []
        for i in keep:
            if np.isfinite(strength[i]):
                edges.append((PRIMITIVES[int(np.argmax(block[i]))], int(i)))
        nodes.append(tuple(edges))
        start += n
    return tuple(nodes)


class PdartsDag(_Pruned):
    """The ``dag`` space for P-DARTS: ``cells`` stacked DAG cells sharing one pruned α."""

    kinds = ("dag",)
    space_name = "dag"

    def __init__(self, spec: InputSpec, nodes: int, channels: int, activation: str, head: str,
                 switches: np.ndarray, cells: int = 1, max_skip: int = 2) -> None:
        super().__init__()
        self.nodes, self.max_skip = nodes, max_skip
        self.kept = {"dag": kept_ops(switches)}
        if len(self.kept["dag"]) != len(dag_edges(nodes)):
            raise ValueError(f"switches have {len(self.kept['dag'])} edges, a {nodes}-node dag has {len(dag_edges(nodes))}")
        widths = {len(k) for k in self.kept["dag"]}
        if len(widths) != 1:
            raise ValueError(f"every edge must keep as many ops (got {sorted(widths)})")
        self.stem = nn.Sequential(nn.Conv2d(spec.channels, channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels, affine=False))
        self.cells = nn.ModuleList(
            nn.ModuleList(PrunedMixedOp(channels, 1, activation, kept) for kept in self.kept["dag"]) for _ in range(cells))
        self.alpha = nn.Parameter(torch.zeros(len(self.kept["dag"]), widths.pop()))
        self.head = Head(head, channels, spec.image_size, spec.num_classes)
        self.inputs_per_node = list(range(1, nodes))
        self.concat = (nodes - 1,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.alpha, dim=-1)
        s = self.stem(x)
        for cell in self.cells:
            states, e = [s], 0
            for j in range(1, self.nodes):
                total = 0
                for i in range(j):
                    total = total + cell[e](states[i], weights[e])
                    e += 1
                states.append(total)
            s = states[-1]
        return self.head(s)


class _PrunedCell(Cell):
    """DARTS's search cell (its forward) with pruned mixed ops."""

    def __init__(self, steps: int, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool, act: str,
                 kept: list[tuple[int, ...]]) -> None:
        nn.Module.__init__(self)  # Cell's own __init__ would build full mixed ops
        self.reduction, self.steps, self.multiplier = reduction, steps, steps
        self.preprocess0 = FactorizedReduce(c_pp, c, act) if reduction_prev else ActConvBN(c_pp, c, 1, 1, 0, act)
        self.preprocess1 = ActConvBN(c_p, c, 1, 1, 0, act)
        strides = [2 if reduction and j < 2 else 1 for i in range(steps) for j in range(2 + i)]
        self.ops = nn.ModuleList(PrunedMixedOp(c, s, act, k) for s, k in zip(strides, kept))


class PdartsDarts(_Pruned):
    """The ``darts`` space for P-DARTS (``layers`` cells, pruned ``alpha_normal``/``alpha_reduce``)."""

    kinds = ("normal", "reduce")
    space_name = "darts"

    def __init__(self, spec: InputSpec, layers: int, steps: int, channels: int, activation: str, head: str,
                 switches: dict[str, np.ndarray], max_skip: int = 2, stem_multiplier: int = 3) -> None:
        super().__init__()
        if channels % 2 or spec.image_size % 4:
            raise ValueError("the darts space needs an even channel count and an image size divisible by 4")
        self.steps, self.max_skip = steps, max_skip
        self.kept = {kind: kept_ops(switches[kind]) for kind in self.kinds}
        n_edges = sum(2 + i for i in range(steps))
        widths = {len(k) for kind in self.kinds for k in self.kept[kind]}
        if len(widths) != 1 or any(len(self.kept[kind]) != n_edges for kind in self.kinds):
            raise ValueError(f"switches must keep as many ops on each of the {n_edges} edges of both cell kinds")
        width = widths.pop()
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
            self.cells.append(_PrunedCell(steps, c_pp, c_p, c_curr, reduction, reduction_prev, activation,
                                          self.kept[kind]))
            reduction_prev = reduction
            c_pp, c_p = c_p, steps * c_curr
        self.alpha_normal = nn.Parameter(torch.zeros(n_edges, width))
        self.alpha_reduce = nn.Parameter(torch.zeros(n_edges, width))
        self.head = Head(head, c_p, spec.image_size // 4, spec.num_classes)
        self.inputs_per_node = [2 + i for i in range(steps)]
        self.concat = tuple(range(2, 2 + steps))

    # the same stem, cells and head attributes as DARTS's supernet: its forward runs them
    forward = DartsSupernet.forward
