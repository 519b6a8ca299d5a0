"""Derive: the final genotype trained from scratch, against random genotypes (``cfg.derive``; fednas/derive)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fednas.config.schema import Key, keys_of, non_negative, positive

_k = keys_of("derive")

# fmt: off
KEYS: tuple[Key, ...] = (
    _k("derive", False,
       "When the search ends, train the final genotype's network from scratch (and derive-random random "
       "genotypes of the space, the baseline) and write <run-dir>/derived/ (python -m simulations derive RUN_DIR "
       "does it for any finished run)."),
    _k("derive-mode", "federated",
       "federated: FedAvg over the run's clients and their data (in one process); central: one model on all "
       "their data.",
       choices=("federated", "central")),
    _k("derive-rounds", 20,
       "FedAvg rounds of the training (central: epochs).",
       check=positive, rule="> 0"),
    _k("derive-local-epochs", 1,
       "Passes over its data a client makes per round.",
       check=positive, rule="> 0"),
    _k("derive-batch-size", 32,
       "Batch size of the training.",
       check=positive, rule="> 0"),
    _k("derive-lr", 0.05,
       "SGD learning rate (momentum 0.9, weight decay 3e-4, gradient clip 5), cosine-annealed over the rounds as "
       "DARTS's evaluation.",
       check=positive, rule="> 0"),
    _k("derive-channels", 0,
       "Channels of the derived network (darts: of the first cell); 0: the search's.",
       check=non_negative, rule=">= 0"),
    _k("derive-layers", 0,
       "darts: cells of the derived network (DARTS evaluates 20); 0: the search's layers.",
       check=non_negative, rule=">= 0"),
    _k("derive-auxiliary-weight", 0.0,
       "darts: weight of the auxiliary head's loss (DARTS: 0.4); 0: no auxiliary head.",
       check=non_negative, rule=">= 0"),
    _k("derive-drop-path", 0.0,
       "Drop-path probability, reached linearly by the last round (DARTS: 0.2); 0: off.",
       check=lambda x: 0.0 <= x < 1.0, rule="in [0, 1)"),
    _k("derive-data", "all",
       "Training data: all (every client's D^theta and D^alpha, DARTS's final training) or theta (D^theta only).",
       choices=("all", "theta")),
    _k("derive-random", 5,
       "Random genotypes of the same space trained the same way (the random-search baseline); 0: none.",
       check=non_negative, rule=">= 0"),
)
# fmt: on


def derive_checks(flat: Mapping[str, Any]) -> list[str]:
    if flat["space"] != "dag":
        return []
    return [f"'{key}' = {flat[key]} applies to the darts space (the dag space has no cells to stack)"
            for key in ("derive-layers", "derive-auxiliary-weight") if flat[key] > 0]
