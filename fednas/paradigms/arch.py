"""Discrete architectures of the ``dag`` space, as ENAS samples and SMASH draws them.

An architecture lists, for each computed node j = 1..P−1, its ``(input, op)`` pairs:
``input`` < j a node, ``op`` an index into ``PRIMITIVES`` (never ``none``). It converts
to the project's :class:`~fednas.spaces.Genotype` (so ``derive``, AMIA's derived target
and the random baseline read it as any other) and to a fixed-length integer vector
(k slots per node, ``-1`` padding) for the server state that carries candidates.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fednas.ops import PRIMITIVES
from fednas.spaces import Genotype

Arch = tuple[tuple[tuple[int, int], ...], ...]
NONE = PRIMITIVES.index("none")
OP_CHOICES: tuple[int, ...] = tuple(i for i in range(len(PRIMITIVES)) if i != NONE)


def arch_genotype(arch: Arch) -> Genotype:
    """The architecture as a ``dag`` genotype (its last node is the output)."""
    cells = {"dag": tuple(tuple((PRIMITIVES[op], int(i)) for i, op in node) for node in arch)}
    return Genotype("dag", cells, (len(arch),))


def encode(arch: Arch, k: int) -> np.ndarray:
    """(nodes·k·2,) integers: per node k slots of (input, op), ``-1`` where a node has fewer."""
    out = np.full((len(arch), k, 2), -1, dtype=np.int64)
    for j, node in enumerate(arch):
        if len(node) > k:
            raise ValueError(f"node {j + 1} has {len(node)} inputs, more than k = {k}")
        for s, (i, op) in enumerate(node):
            out[j, s] = (i, op)
    return out.reshape(-1)


def decode(vector: Sequence[float], nodes: int, k: int) -> Arch:
    """Inverse of :func:`encode` for a dag of ``nodes`` nodes (P)."""
    v = np.rint(np.asarray(vector, dtype=np.float64)).astype(np.int64).reshape(nodes - 1, k, 2)
    arch = []
    for j, slots in enumerate(v, start=1):
        node = tuple((int(i), int(op)) for i, op in slots if i >= 0)
        for i, op in node:
            if not 0 <= i < j or op not in OP_CHOICES:
                raise ValueError(f"node {j}: ({i}, {op}) is not an (input < {j}, non-none op) pair")
        arch.append(node)
    return tuple(arch)


def random_arch(nodes: int, k: int, rng: np.random.Generator) -> Arch:
    """Uniform draw: each node takes min(k, j) distinct inputs, each with a uniform non-``none`` op."""
    arch = []
    for j in range(1, nodes):
        inputs = sorted(rng.choice(j, size=min(k, j), replace=False).tolist())
        arch.append(tuple((int(i), int(OP_CHOICES[rng.integers(len(OP_CHOICES))])) for i in inputs))
    return tuple(arch)


def edge_index(i: int, j: int) -> int:
    """Row of edge (i, j) in the dag's edge order (by j, then i)."""
    return j * (j - 1) // 2 + i
