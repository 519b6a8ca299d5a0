"""The search space: which supernet, its size, its initialisation, the genotype it derives (``cfg.space``)."""

from __future__ import annotations

from fednas.config.schema import Key, keys_of, non_negative, positive
from fednas.registry import SPACES

ACTIVATIONS = ("elu", "tanh", "sigmoid", "relu")
HEADS = ("gap", "flatten")

_k = keys_of("space")

# fmt: off
KEYS: tuple[Key, ...] = (
    _k("space", "dag",
       "Search space, by name (fednas.registry.SPACES): dag (the paper's P-node DAG) or darts (stacked DARTS "
       "cells).",
       choices=SPACES),
    _k("dag-nodes", 8,
       "dag: P, nodes after the stem (node 0 is the stem's output); alpha has P(P-1)/2 x 8 entries.",
       check=lambda x: x >= 2, rule=">= 2"),
    _k("layers", 5,
       "darts: number of stacked cells (reduction cells at 1/3 and 2/3).",
       check=lambda x: x >= 3, rule=">= 3"),
    _k("cell-nodes", 4,
       "darts: intermediate nodes per cell (4 gives 14 edges).",
       check=lambda x: x >= 1, rule=">= 1"),
    _k("channels", 8,
       "Channels C of every node (darts: of the first cell).",
       check=positive, rule="> 0"),
    _k("activation", "elu",
       "Activation inside every op.",
       choices=ACTIVATIONS),
    _k("head", "gap",
       "Classifier head: gap (global average pool + linear, as DARTS) or flatten (linear over the whole last "
       "feature map).",
       choices=HEADS),
    _k("theta-init", "uniform",
       "Weight init: uniform in [-bound, bound] (the paper's ADRA setting) or torch's default.",
       choices=("uniform", "default")),
    _k("theta-init-bound", 0.25,
       "Bound of the uniform weight init.",
       check=positive, rule="> 0"),
    _k("alpha-init-scale", 1e-3,
       "alpha starts as scale * N(0, 1).",
       check=non_negative, rule=">= 0"),
    _k("fused", True,
       "Use the fused supernet where one exists (numerically equal to the per-edge reference)."),
    _k("genotype-k", 2,
       "Inputs kept per node when deriving the genotype.",
       check=positive, rule="> 0"),
)
# fmt: on
