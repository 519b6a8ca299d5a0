"""The fused form of the ``dag`` space: same modules and names as :class:`DagSupernet`, fast forward.

Node after node, all the edges leaving a node are evaluated in one batched call as soon as
the node is known (:func:`fednas.spaces.fused.node_forward`); node j is then the sum of its
incoming slices. Same parameters, buffers, outputs and gradients as the reference.
"""

from __future__ import annotations

from typing import Any

import torch

from fednas.spaces.base import InputSpec
from fednas.spaces.dag import DagSupernet
from fednas.spaces.fused import EdgeBank, node_forward


def _edge_index(i: int, j: int) -> int:
    """Row of edge (i, j) in α (edges ordered by j, then i)."""
    return j * (j - 1) // 2 + i


class FusedDagSupernet(DagSupernet):
    """The ``dag`` space, evaluated source node by source node with fused ops."""

    supports_sets = True  # forward(x, sets=S): S independent sets of samples in one pass

    def __init__(self, spec: InputSpec, nodes: int = 8, channels: int = 8,
                 activation: str = "elu", head: str = "gap") -> None:
        super().__init__(spec, nodes, channels, activation, head)
        # α rows in source-major order: the edges leaving node 0, then node 1, ...
        self._order = torch.tensor([_edge_index(i, j) for i in range(nodes - 1) for j in range(i + 1, nodes)])
        self._bank = EdgeBank([[self.edges[_edge_index(i, j)] for j in range(i + 1, nodes)]
                               for i in range(nodes - 1)])
        self.register_load_state_dict_post_hook(lambda module, keys: module._bank.pack())

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> "FusedDagSupernet":
        out = super()._apply(fn, *args, **kwargs)
        self._bank.pack()  # .to()/.double() replaced the BatchNorm buffers
        return out

    def features(self, x: torch.Tensor, sets: int = 1) -> torch.Tensor:
        """The last node's feature map; ``sets`` > 1: see :meth:`forward`."""
        bank = self._bank
        weights = torch.softmax(self.alpha, dim=-1)  # [E, ops], or [S, E, ops]: one α per set
        weights = weights.index_select(-2, self._order.to(weights.device)).transpose(-1, -2).split(bank.sizes, dim=-1)
        conv_weights = bank.weights()
        running = None if self.training else bank.running_stats()
        state = self._stem(x, sets).transpose(0, 1).contiguous()  # channel-major, see node_forward
        incoming: list[list[torch.Tensor]] = [[] for _ in range(self.nodes)]
        batch_stats = []
        for i in range(self.nodes - 1):
            out, stats = node_forward(bank, state, weights[i], conv_weights[i],
                                      None if running is None else running[i], sets)
            if stats is not None:
                batch_stats.append(stats)
            for j, part in enumerate(out.unbind(0), start=i + 1):
                incoming[j].append(part)
            parts, incoming[i + 1] = incoming[i + 1], []
            state = parts[0] if len(parts) == 1 else torch.stack(parts).sum(0)
        if batch_stats:
            b, _, h, w = x.shape
            bank.update_running_stats(batch_stats, [b * h * w] * len(batch_stats))
        return state.transpose(0, 1)

    def forward(self, x: torch.Tensor, sets: int = 1) -> torch.Tensor:
        """Logits. ``sets`` > 1 (train mode, running statistics not tracked): the batch is that
        many independent sets of samples in a row, each with its own BatchNorm statistics
        and, when ``alpha`` is [S, E, ops] (e.g. through ``functional_call``), its own α: S
        separate passes of the supernet in one, for an attacker's many hypotheses."""
        if sets > 1 and (not self.training or self.stem[1].track_running_stats):
            raise ValueError("independent sets need train mode without running statistics "
                             "(Supernet.stop_tracking_running_stats)")
        return self.head(self.features(x, sets))

    def _stem(self, x: torch.Tensor, sets: int) -> torch.Tensor:
        conv, bn = self.stem
        if sets == 1:
            return bn(conv(x))
        y = conv(x)
        ys = y.view(sets, -1, *y.shape[1:])  # [S, B/S, C, H, W]: BatchNorm statistics per set
        mean = ys.mean((1, 3, 4), keepdim=True)
        var = ys.var((1, 3, 4), unbiased=False, keepdim=True)
        return ((ys - mean) * (var + bn.eps).rsqrt()).view_as(y)
