"""The fused form of the ``darts`` space: same modules and names as :class:`DartsSupernet`.

Inside every cell, the stride-1 edges leaving one state are evaluated together
(:func:`fednas.spaces.fused.node_forward`); the stride-2 edges of a reduction cell (from its
two inputs) keep the per-edge mixed op. One :class:`EdgeBank` serves all the cells, so
the weights are gathered once per forward (one bank per channel count: the reduction cells
double the channels).
"""

from __future__ import annotations

from typing import Any

import torch

from fednas.spaces.base import InputSpec
from fednas.spaces.darts import DartsSupernet
from fednas.spaces.fused import EdgeBank, node_forward


def _out_edges(steps: int, src: int) -> list[tuple[int, int]]:
    """(target state, α row) of the edges leaving state ``src`` of a cell, in target order."""
    return [(2 + i, 2 * i + i * (i - 1) // 2 + src) for i in range(max(0, src - 1), steps)]


class FusedDartsSupernet(DartsSupernet):
    """DARTS's search network, with the stride-1 edges of each state evaluated together."""

    def __init__(self, spec: InputSpec, layers: int = 5, steps: int = 4, channels: int = 8,
                 activation: str = "elu", head: str = "gap", multiplier: int | None = None,
                 stem_multiplier: int = 3) -> None:
        super().__init__(spec, layers, steps, channels, activation, head, multiplier, stem_multiplier)
        sources = range(steps + 1)  # the last state feeds nobody
        # α columns of each state's edges: one permutation for every cell
        self._order = torch.tensor([e for src in sources for _, e in _out_edges(steps, src)])
        self._sizes = [len(_out_edges(steps, src)) for src in sources]
        groups: dict[int, list] = {}  # channel count -> groups of edges
        self._plan = []  # per cell, per state: (channel count, group index) or None
        for cell in self.cells:
            plan = []
            c = cell.preprocess1[1].out_channels
            for src in sources:
                fused = not (cell.reduction and src < 2)  # stride 2 from a reduction cell's inputs
                plan.append((c, len(groups.setdefault(c, []))) if fused else None)
                if fused:
                    groups[c].append([cell.ops[e] for _, e in _out_edges(steps, src)])
            self._plan.append(plan)
        self._banks = {c: EdgeBank(g) for c, g in groups.items()}
        self.register_load_state_dict_post_hook(lambda module, keys: module._pack())

    def _pack(self) -> None:
        for bank in self._banks.values():
            bank.pack()

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> "FusedDartsSupernet":
        out = super()._apply(fn, *args, **kwargs)
        self._pack()  # .to()/.double() replaced the BatchNorm buffers
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = {False: torch.softmax(self.alpha_normal, dim=-1), True: torch.softmax(self.alpha_reduce, dim=-1)}
        columns = {k: w.index_select(0, self._order.to(w.device)).t().split(self._sizes, dim=1)
                   for k, w in weights.items()}
        banks = self._banks
        conv_weights = {c: bank.weights() for c, bank in banks.items()}
        running = None if self.training else {c: bank.running_stats() for c, bank in banks.items()}
        batch_stats: dict[int, list] = {c: [] for c in banks}
        counts: dict[int, list[int]] = {c: [] for c in banks}
        s0 = s1 = self.stem(x)
        for cell, plan in zip(self.cells, self._plan):
            w = weights[cell.reduction]
            states = [cell.preprocess0(s0), cell.preprocess1(s1)]
            incoming: list[list[torch.Tensor]] = [[] for _ in range(self.steps + 2)]
            for src, where in enumerate(plan):
                h = states[src]
                edges = _out_edges(self.steps, src)
                if where is None:
                    for target, e in edges:
                        incoming[target].append(cell.ops[e](h, w[e]))
                else:
                    c, g = where
                    out, stats = node_forward(banks[c], h.transpose(0, 1).contiguous(), columns[cell.reduction][src],
                                              conv_weights[c][g],
                                              None if running is None else running[c][g])
                    if stats is not None:
                        batch_stats[c].append(stats)
                        counts[c].append(h.shape[0] * h.shape[2] * h.shape[3])
                    for (target, _), part in zip(edges, out.unbind(0)):
                        incoming[target].append(part.transpose(0, 1))
                if src >= 1:  # state src + 1 has all its inputs now
                    parts = incoming[src + 1]
                    states.append(parts[0] if len(parts) == 1 else torch.stack(parts).sum(0))
            s0, s1 = s1, torch.cat(states[-cell.multiplier:], dim=1)
        if self.training:
            for c, bank in banks.items():
                bank.update_running_stats(batch_stats[c], counts[c])
        return self.head(s1)
