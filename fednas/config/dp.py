"""Differential privacy: the DP-SGD and update mods, the server's DP wrapper, accounting (``cfg.dp``).

clients/dp_mods.py, fednas/privacy.py and fednas/accounting.py implement them; docs/privacy.md
describes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fednas.config.schema import Key, keys_of, non_negative, positive
from fednas.registry import ACCOUNTANTS

_k = keys_of("dp")

# fmt: off
KEYS: tuple[Key, ...] = (
    _k("dp-sgd", False,
       "DP-SGD on every local alpha step (example-level DP for D^alpha): Poisson sampling q = "
       "alpha-batch-size/|D^alpha|, per-example clipping, Gaussian noise."),
    _k("dp-sgd-clip", 0.1,
       "DP-SGD: C, the L2 norm each example's alpha gradient is clipped to.",
       check=positive, rule="> 0"),
    _k("dp-sgd-noise-multiplier", 1.0,
       "DP-SGD: z; noise N(0, (zC)^2) is added to the sum of clipped gradients (0: clip only, epsilon = inf).",
       check=non_negative, rule=">= 0"),
    _k("dp-sgd-batchnorm", "running",
       "DP-SGD: how BatchNorm normalises in the per-example forward: running (running statistics, estimated on "
       "D^theta only) or example (each example's own statistics; constant logits behind the gap head).",
       choices=("running", "example")),
    _k("dp-update", False,
       "Update-level mod (client-level DP): clip the round's update to dp-update-clip and add N(0, "
       "dp-update-noise-std^2) per coordinate."),
    _k("dp-update-clip", 0.1,
       "Update mod: C, the L2 norm of the whole update (a server-sent clipping norm takes precedence).",
       check=positive, rule="> 0"),
    _k("dp-update-noise-std", 0.1,
       "Update mod: sigma, the noise standard deviation per coordinate (the paper's N(0, 0.01) read as variance "
       "0.01: sigma = 0.1).",
       check=non_negative, rule=">= 0"),
    _k("dp-update-theta", False,
       "Update mod: privatise the theta update too (when weights are shared); off: alpha only, as the paper."),
    _k("dp-delta", 1e-5,
       "delta at which epsilon is reported.",
       check=lambda x: 0.0 < x < 1.0, rule="in (0, 1)"),
    _k("dp-accountant", "rdp",
       "Privacy accountant, by name (fednas.registry.ACCOUNTANTS): rdp (Opacus RDPAccountant) or prv (Opacus "
       "PRVAccountant).",
       choices=ACCOUNTANTS),
    _k("dp-secure-rng", False,
       "Draw DP noise and sampling from OS entropy (not reproducible; what a deployment needs). Off: seeded from "
       "(seed, round, partition) for reproducible simulations."),
    _k("dp-server", False,
       "Wrap the server strategy in Flower's DifferentialPrivacyClientSideFixedClipping (central noise on the "
       "aggregate; clients clip with the update mod, so dp-update must be on)."),
    _k("dp-server-noise-multiplier", 1.0,
       "Central noise multiplier of the server wrapper (noise std = z * clip / sampled clients).",
       check=non_negative, rule=">= 0"),
)
# fmt: on


def dp_checks(flat: Mapping[str, Any]) -> list[str]:
    errors = []
    if flat["dp-sgd"] and flat["alpha-order"] != "first":
        errors.append("'dp-sgd' = true needs 'alpha-order' = \"first\": per-example clipping of the "
                      "second-order (unrolled) alpha gradient is not defined here")
    if flat["dp-server"] and not flat["dp-update"]:
        errors.append("'dp-server' = true needs 'dp-update' = true: Flower's client-side-clipping wrapper "
                      "relies on every client clipping its update (the update mod does)")
    if (flat["paradigm"] == "darts" and flat["bn-statistics"] == "pooled" and flat["share-weights"]
            and (flat["dp-server"] or flat["dp-update-theta"])):
        errors.append("'bn-statistics' = \"pooled\" sends statistics of D^theta outside the update's DP "
                      "mechanism, which covers theta here ('dp-server' or 'dp-update-theta'): choose "
                      "'bn-statistics' = \"client\"")
    return errors
