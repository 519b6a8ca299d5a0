"""The NAS paradigm, what a client searches and sends (``cfg.paradigm``; fednas/paradigms, docs/paradigms.md)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fednas.config.schema import Key, in_unit0, keys_of, non_negative, number_list, positive
from fednas.registry import PARADIGMS, SPACES

_k = keys_of("paradigm")

# fmt: off
KEYS: tuple[Key, ...] = (
    _k("paradigm", "darts",
       "NAS paradigm, by name (fednas.registry.PARADIGMS): what a client searches and sends. darts (alpha by "
       "gradient), pdarts (progressive stages: deeper search network, fewer candidate ops, decided by the "
       "server), enas (an LSTM controller trained with REINFORCE, shared child weights), smash (a hypernetwork "
       "generates the weights of random architectures; clients rank candidates).",
       choices=PARADIGMS),
    _k("pdarts-keep", "5,3,1",
       "pdarts: candidate ops kept per edge after each stage (the reference's 8 -> 5 -> 3 -> 1); the number of "
       "stages is its length."),
    _k("pdarts-add-layers", "0,6,12",
       "pdarts, darts space: cells added to 'layers' in each stage (the reference's 5 -> 11 -> 17)."),
    _k("pdarts-dag-cells", "1,2,3",
       "pdarts, dag space: P-node DAG cells stacked (sharing alpha) in each stage's search network."),
    _k("pdarts-dropout", "0.1,0.4,0.7",
       "pdarts: dropout rate on skip connections in each stage (decayed within the stage as in the reference)."),
    _k("pdarts-arch-warmup", 0.4,
       "pdarts: share of each stage's rounds in which alpha is held back (theta only; the reference's 10 of 25 "
       "epochs).",
       check=in_unit0, rule="in [0, 1)"),
    _k("pdarts-max-skip", 2,
       "pdarts: skip connections allowed in the final (normal or dag) cell.",
       check=non_negative, rule=">= 0"),
    _k("enas-lstm-size", 64,
       "enas: hidden size of the controller's LSTM (one layer).",
       check=positive, rule="> 0"),
    _k("enas-controller-steps", 5,
       "enas: controller (REINFORCE) steps per round, after the round's shared-weight steps.",
       check=positive, rule="> 0"),
    _k("enas-num-aggregate", 10,
       "enas: architectures sampled per controller step, each rewarded on its own D^alpha batch of "
       "alpha-batch-size; their policy gradients are averaged.",
       check=positive, rule="> 0"),
    _k("enas-controller-lr", 0.0035,
       "enas: learning rate of the controller's Adam (beta1 = 0, eps = 1e-3, as the reference).",
       check=positive, rule="> 0"),
    _k("enas-entropy-weight", 1e-4,
       "enas: weight of the sampled architecture's entropy in the reward.",
       check=non_negative, rule=">= 0"),
    _k("enas-baseline-decay", 0.99,
       "enas: decay of the reward's moving-average baseline.",
       check=in_unit0, rule="in [0, 1)"),
    _k("enas-tanh-constant", 1.1,
       "enas: logits are c * tanh(logits) (0: off).",
       check=non_negative, rule=">= 0"),
    _k("enas-op-tanh-reduce", 2.5,
       "enas: op logits use tanh-constant / this.",
       check=positive, rule="> 0"),
    _k("enas-derive-samples", 10,
       "enas: architectures sampled from the controller each round and ranked on the clients' D^alpha; the best "
       "of the last round is the final genotype.",
       check=positive, rule="> 0"),
    _k("smash-candidates", 100,
       "smash: random candidate architectures (fixed by the seed) that clients score on their D^alpha every "
       "round (the reference ranks 500 at the end).",
       check=positive, rule="> 0"),
    _k("smash-lr", 1e-3,
       "smash: Adam learning rate of the hypernetwork and the shared weights (betas 0.5, 0.999, as the "
       "reference).",
       check=positive, rule="> 0"),
    _k("smash-hyper-channels", 64,
       "smash: hidden channels of the hypernetwork (1-D convolutions over the edges of the architecture "
       "encoding).",
       check=positive, rule="> 0"),
)
# fmt: on


def paradigm_spaces(name: str) -> tuple[str, ...]:
    """The search spaces a paradigm builds (its registration's ``spaces``; None there: every space)."""
    spaces = PARADIGMS.info(name, "spaces")
    return tuple(SPACES) if spaces is None else tuple(spaces)


def paradigm_checks(flat: Mapping[str, Any]) -> list[str]:
    name = flat["paradigm"]
    errors = []
    if flat["space"] not in paradigm_spaces(name):
        errors.append(f"'paradigm' = {name!r} is built for 'space' = {', '.join(paradigm_spaces(name))} only "
                      f"(got {flat['space']!r})")
    lists = {}
    for key, kind in (("pdarts-keep", int), ("pdarts-add-layers", int), ("pdarts-dag-cells", int),
                      ("pdarts-dropout", float)):
        try:
            lists[key] = number_list(flat[key], kind)
        except ValueError:
            errors.append(f"'{key}' = {flat[key]!r}: expected comma-separated {kind.__name__}s")
    keep = lists.get("pdarts-keep", [])
    if "pdarts-keep" in lists and not (keep and all(1 <= a <= 8 for a in keep)
                                       and all(a > b for a, b in zip(keep, keep[1:]))):
        errors.append(f"'pdarts-keep' = {flat['pdarts-keep']!r}: expected decreasing counts in 1..8 (e.g. 5,3,1)")
    for key in ("pdarts-add-layers", "pdarts-dag-cells", "pdarts-dropout"):
        if key in lists and keep and len(lists[key]) != len(keep):
            errors.append(f"'{key}' = {flat[key]!r}: one value per stage ({len(keep)}, as 'pdarts-keep')")
    if any(c < 1 for c in lists.get("pdarts-dag-cells", [])) or any(a < 0 for a in lists.get("pdarts-add-layers", [])):
        errors.append("'pdarts-dag-cells' must be >= 1 and 'pdarts-add-layers' >= 0")
    if any(not 0.0 <= p < 1.0 for p in lists.get("pdarts-dropout", [])):
        errors.append(f"'pdarts-dropout' = {flat['pdarts-dropout']!r}: rates in [0, 1)")
    if name == "pdarts" and flat["strategy"] == "fedavgm":
        errors.append("'paradigm' = 'pdarts' cannot use 'strategy' = 'fedavgm': alpha and theta change shape "
                      "between stages, and FedAvgM's server momentum would mix them")
    if name == "pdarts" and flat["dp-sgd"] and flat["dp-sgd-batchnorm"] == "example":
        errors.append("'paradigm' = 'pdarts' with 'dp-sgd-batchnorm' = 'example': the skip-connect dropout cannot "
                      "run in the per-example (vmap) forward; use 'running'")
    if name in ("enas", "smash") and flat["alpha-order"] != "first":
        errors.append(f"'paradigm' = {name!r} has no alpha gradient: 'alpha-order' must stay \"first\"")
    if name == "smash" and flat["dp-sgd"]:
        errors.append("'paradigm' = 'smash' learns no architecture parameter: there is no alpha step for 'dp-sgd' "
                      "to privatise; 'dp-update' clips and noises the ranking scores it sends")
    if name != "darts" and flat["strategy"] == "fedprox":
        errors.append(f"'paradigm' = {name!r} cannot use 'strategy' = 'fedprox': its local training has no "
                      "proximal term (FedProx is built into the darts search)")
    errors.extend(_ignored_by_paradigm(flat))
    return errors


# Settings a paradigm's round never reads: (key, paradigms, whether the value asks for
# something, why the paradigm cannot do it). Refused rather than silently ignored. The
# tuning knobs another paradigm's round has in their place (alpha-lr for enas's
# enas-controller-lr, theta-lr for smash's smash-lr, another paradigm's own keys) are not
# listed: one experiment file sets them for every paradigm it runs.
PARADIGM_IGNORES: tuple[tuple[str, tuple[str, ...], Callable[[Any], bool], str], ...] = (
    ("alpha-warmup-rounds", ("pdarts", "enas", "smash"), lambda v: v > 0,
     "the alpha warm-up is part of the darts round only (pdarts holds alpha back within each stage by "
     "'pdarts-arch-warmup'; enas and smash take no alpha gradient step to hold back)"),
    ("bn-statistics", ("pdarts", "enas", "smash"), lambda v: v == "client",
     "only the darts round re-estimates BatchNorm statistics before replying; this paradigm replies the "
     "theta steps' moving averages, which the server averages (as 'ema')"),
    ("bn-statistics-batches", ("pdarts", "enas", "smash"), lambda v: v > 0,
     "its round runs no BatchNorm recalibration pass (only the darts round does)"),
    ("proximal-alpha", ("pdarts", "enas", "smash"), bool,
     "its local training has no proximal term (FedProx is built into the darts round)"),
    ("alpha-l2", ("enas", "smash"), lambda v: v > 0,
     "it has no alpha loss for the L2 penalty (the LR defense) to act on: enas trains a controller by "
     "REINFORCE, smash ranks candidates"),
    ("dp-sgd-batchnorm", ("enas",), lambda v: v == "example",
     "enas's private step clips the controller's per-architecture gradients, which pass through no "
     "BatchNorm layer"),
)


def _ignored_by_paradigm(flat: Mapping[str, Any]) -> list[str]:
    name = flat["paradigm"]
    errors = []
    for key, paradigms, asks, why in PARADIGM_IGNORES:
        if key == "dp-sgd-batchnorm" and not flat["dp-sgd"]:
            continue  # read only by DP-SGD, which is off
        if name in paradigms and asks(flat[key]):
            errors.append(f"'{key}' = {flat[key]!r} is ignored by 'paradigm' = {name!r}: {why}")
    return errors
