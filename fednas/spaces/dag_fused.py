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

    def features(self, x: torch.Tensor) -> torch.Tensor:
        bank = self._bank
        weights = torch.softmax(self.alpha, dim=-1)
        weights = weights.index_select(0, self._order.to(weights.device)).t().split(bank.sizes, dim=1)
        conv_weights = bank.weights()
        running = None if self.training else bank.running_stats()
        state = self.stem(x).transpose(0, 1).contiguous()  # channel-major, see node_forward
        incoming: list[list[torch.Tensor]] = [[] for _ in range(self.nodes)]
        batch_stats = []
        for i in range(self.nodes - 1):
            out, stats = node_forward(bank, state, weights[i], conv_weights[i], None if running is None else running[i])
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
