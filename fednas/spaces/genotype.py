"""Genotypes: the discrete architecture read off α, as plain values."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from fednas.ops import PRIMITIVES

Edge = tuple[str, int]  # (op name, index of the input node)


class Genotype(NamedTuple):
    """A derived architecture: for each computed node, its kept (op, input) edges.

    ``cells`` maps a cell kind (``"dag"``; or DARTS's ``"normal"`` and ``"reduce"``) to a
    tuple with one entry per node, each a tuple of ``(op, input)`` edges. ``concat`` lists
    the nodes whose outputs form the cell's output.
    """

    space: str
    cells: dict[str, tuple[tuple[Edge, ...], ...]]
    concat: tuple[int, ...]

    def to_dict(self) -> dict:
        return {
            "space": self.space,
            "cells": {k: [[list(e) for e in node] for node in v] for k, v in self.cells.items()},
            "concat": list(self.concat),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Genotype:
        cells = {k: tuple(tuple((str(op), int(i)) for op, i in node) for node in v) for k, v in d["cells"].items()}
        return cls(d["space"], cells, tuple(d["concat"]))

    def pretty(self) -> str:
        """One line per node: ``node 3 <- sep_conv_3x3(0) + skip_connect(2)``."""
        lines = []
        for kind, nodes in self.cells.items():
            first = 1 if self.space == "dag" else 2
            if len(self.cells) > 1:
                lines.append(f"[{kind}]")
            for j, edges in enumerate(nodes, start=first):
                lines.append(f"node {j} <- " + " + ".join(f"{op}({i})" for op, i in edges))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.pretty()


def derive_edges(weights: np.ndarray, inputs_per_node: Sequence[int], k: int) -> tuple[tuple[Edge, ...], ...]:
    """DARTS's parse: per node, keep the k strongest inputs, each with its best non-``none`` op.

    Parameters
    ----------
    weights : array (num_edges, len(PRIMITIVES))
        Softmax weights, edges ordered node by node, inputs in order.
    inputs_per_node : sequence of int
        How many incoming edges each node has (their inputs are 0..n-1).
    k : int
        Inputs kept per node (fewer when a node has fewer).
    """
    none = PRIMITIVES.index("none")
    if weights.shape != (sum(inputs_per_node), len(PRIMITIVES)):
        raise ValueError(f"weights of shape {weights.shape} do not match {sum(inputs_per_node)} edges")
    masked = weights.copy()
    masked[:, none] = -np.inf
    nodes = []
    start = 0
    for n in inputs_per_node:
        w = masked[start : start + n]
        strength = w.max(axis=1)
        # stable: equal strengths keep the earlier input
        keep = sorted(np.argsort(-strength, kind="stable")[: min(k, n)])
        nodes.append(tuple((PRIMITIVES[int(np.argmax(w[i]))], int(i)) for i in keep))
        start += n
    return tuple(nodes)
