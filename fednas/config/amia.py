"""AMIA, membership inference on the final model (``cfg.amia``; python -m attacks.amia)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fednas.config.schema import Key, keys_of, positive, non_negative, split_names

# Names the AMIA registries hold (attacks.amia checks it agrees); listed here so that a
# typo fails when the config is parsed, not after a long federated run.
AMIA_SHADOW_KINDS = ("resnet18", "resnet50", "cnn", "searched")
AMIA_ATTACKS = ("mlp", "lira", "loss")

_k = keys_of("amia")

# fmt: off
KEYS: tuple[Key, ...] = (
    _k("amia", False,
       "Run the membership attack (AMIA) on the final model when the federated run ends (writes "
       "<run-dir>/amia/)."),
    _k("amia-target", "supernet",
       "What the prediction API serves: the federated supernet as trained, or the derived genotype retrained by "
       "the model owner.",
       choices=("supernet", "derived")),
    _k("amia-retrain-on", "theta",
       "Data of the derived network's retraining: theta (the clients' D^theta: D^alpha then only shaped the "
       "architecture) or all (D^theta and D^alpha, DARTS's usual final training).",
       choices=("theta", "all")),
    _k("amia-retrain-epochs", 30,
       "Epochs of the derived network's retraining (and of the shadows that mimic it).",
       check=positive, rule="> 0"),
    _k("amia-output", "probs",
       "What the API returns: probs (the whole probability vector), top-k (the k largest, the rest 0) or label "
       "(one-hot).",
       choices=("probs", "top-k", "label")),
    _k("amia-top-k", 3,
       "k of amia-output = top-k.",
       check=positive, rule="> 0"),
    _k("amia-members", 0,
       "Members (D^alpha samples) and as many non-members (holdout) to query. 0: as many as both pools allow.",
       check=non_negative, rule=">= 0"),
    _k("amia-shadows", "resnet18,searched",
       "Shadow model kinds, comma-separated: resnet18, resnet50, cnn (fixed architectures), searched (DARTS "
       "search on the attacker's data: the paper's improved AMIA)."),
    _k("amia-num-shadows", 4,
       "Shadow models per kind (each trained on a random half of the attacker's data; LiRA needs >= 2).",
       check=positive, rule="> 0"),
    _k("amia-shadow-steps", 0,
       "SGD steps of a shadow (its search and its weights). 0: mimic the target: as many passes over its data as "
       "the target's weights made, as many search steps as one client made.",
       check=non_negative, rule=">= 0"),
    _k("amia-attacks", "mlp,lira,loss",
       "Attacks, comma-separated: mlp (the paper's 3-layer MLP on sorted probabilities), lira (offline "
       "likelihood ratio), loss (loss threshold)."),
    _k("amia-eta", 1.0,
       "Share of the attacker's data drawn from the target's distribution (aux pool); the rest comes from "
       "amia-shift-source (Table 5).",
       check=lambda x: 0.0 <= x <= 1.0, rule="in [0, 1]"),
    _k("amia-shift-source", "patches",
       "Unrelated data for amia-eta < 1: patches (crops of scikit-learn's two sample photos, labelled by "
       "k-means) or fashion-mnist (from data-root).",
       choices=("patches", "fashion-mnist")),
    _k("amia-defense-known", True,
       "The attacker knows the defenses (LR, DP, MD) and applies them to its shadow models too."),
    _k("amia-mlp-epochs", 100,
       "Epochs of the MLP attack model (SGD).",
       check=positive, rule="> 0"),
    _k("amia-mlp-lr", 0.05,
       "Learning rate of the MLP attack model.",
       check=positive, rule="> 0"),
)
# fmt: on


def amia_checks(flat: Mapping[str, Any]) -> list[str]:
    errors = []
    for key, allowed in (("amia-shadows", AMIA_SHADOW_KINDS), ("amia-attacks", AMIA_ATTACKS)):
        names = split_names(flat[key])
        bad = [n for n in names if n not in allowed]
        if bad or not names:
            errors.append(f"'{key}' = {flat[key]!r}: expected a comma-separated list of: {', '.join(allowed)}"
                          + (f" (unknown: {', '.join(bad)})" if bad else ""))
    if "lira" in split_names(flat["amia-attacks"]) and flat["amia-num-shadows"] < 2:
        errors.append(f"'amia-num-shadows' = {flat['amia-num-shadows']}: the lira attack fits each example's "
                      "out-distribution over shadows and needs at least 2 (or drop lira from 'amia-attacks')")
    return errors
