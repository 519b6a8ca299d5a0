"""How far the search has got, per round: α's entropy, how far α moved, what the genotype holds.

DARTS's architecture is read off α by an argmax, which always returns *something*: a
genotype taken from an α that has barely left its 1e-3·N(0, 1) start is a random draw
(the quickstart's, or search-quick.toml's). These figures, written to ``rounds.csv`` every round, say whether α
has decided anything:

``alpha-entropy``
    mean over edges of the entropy (nats) of the softmax over ops; ln 8 = 2.079 is
    undecided (uniform), 0 is one op per edge.
``alpha-step`` / ``alpha-drift``
    ‖α_t − α_{t−1}‖ and ‖α_t − α_0‖ (L2 over every α entry): how much the round moved α,
    and how far it is from its initialisation.
``param-free-share``
    the share of the genotype's edges whose op has no weights (pools, skip): DARTS's known
    failure is a collapse towards them (Zela et al. 2020, "Understanding and robustifying
    DARTS"; Chen & Hsieh 2020), since they help the supernet's loss early without learning.
``genotype-changes``
    edges of the genotype that differ from the previous round's (0 for some rounds: α
    has settled on this architecture).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

from fednas.spaces.genotype import Genotype

PARAMETER_FREE = ("max_pool_3x3", "avg_pool_3x3", "skip_connect")  # "none" never enters a genotype
MAX_ENTROPY = math.log(8)


def _alphas(arrays: Mapping[str, torch.Tensor], prefix: str = "alpha") -> list[np.ndarray]:
    return [np.asarray(arrays[k], dtype=np.float64) for k in sorted(arrays) if k.startswith(prefix)]


def alpha_entropy(arrays: Mapping[str, torch.Tensor]) -> float:
    """Mean over edges (rows of every α array) of the entropy of the softmax over ops, in nats."""
    rows = np.concatenate([a.reshape(-1, a.shape[-1]) for a in _alphas(arrays)])
    z = rows - rows.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return float(np.mean(-(p * np.log(np.clip(p, 1e-300, None))).sum(axis=1)))


def alpha_distance(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    """‖a − b‖ over every α array together."""
    return float(math.sqrt(sum(float(np.sum((x - y) ** 2)) for x, y in zip(_alphas(a), _alphas(b)))))


def edges(genotype: Genotype) -> list[tuple[str, int, int, str, int]]:
    """Every kept edge as (cell kind, node, position, op, input)."""
    return [(kind, j, k, op, i) for kind, nodes in genotype.cells.items()
            for j, node in enumerate(nodes) for k, (op, i) in enumerate(node)]


def parameter_free_share(genotype: Genotype) -> float:
    """Share of the genotype's edges whose op has no weights."""
    kept = edges(genotype)
    return sum(e[3] in PARAMETER_FREE for e in kept) / len(kept) if kept else float("nan")


def genotype_changes(before: Genotype, after: Genotype) -> int:
    """Kept edges of ``after`` that ``before`` does not have at the same place."""
    old = set(edges(before))
    return sum(e not in old for e in edges(after))


class SearchProgress:
    """The per-round figures above, remembering α_0, α_{t−1} and the previous genotype."""

    def __init__(self) -> None:
        self.initial: dict[str, np.ndarray] | None = None
        self.previous: tuple[dict[str, np.ndarray], Genotype] | None = None

    def update(self, arrays: Mapping[str, torch.Tensor], genotype: Genotype) -> dict[str, float]:
        """Figures for the global α in ``arrays`` (the first call sets α_0)."""
        alphas = {k: np.asarray(v, dtype=np.float64).copy() for k, v in arrays.items() if k.startswith("alpha")}
        if self.initial is None:
            self.initial = alphas
        row = {"alpha-entropy": alpha_entropy(alphas), "alpha-drift": alpha_distance(alphas, self.initial),
               "param-free-share": parameter_free_share(genotype)}
        if self.previous is not None:
            row["alpha-step"] = alpha_distance(alphas, self.previous[0])
            row["genotype-changes"] = genotype_changes(self.previous[1], genotype)
        self.previous = (alphas, genotype)
        return row
