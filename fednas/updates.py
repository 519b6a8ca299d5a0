"""Replies as updates: a client sends Δ = what it would send − what it received.

``reply = "delta"`` (the default) puts the round's update on the wire instead of the new
weights: Δα = α_t2 − α_t1 (and Δθ when θ is shared). It is the form the design card
describes ("clients send architecture deltas"), the quantity the paper's eavesdropper
observes and that the update-level DP mechanism clips and noises, and the form of
DP-FedAvg and secure aggregation. The server, knowing what it sent, learns exactly as
much from either form: it rebuilds each client's weights as sent + Δ, so any Flower
strategy (FedAvgM's server momentum, FedProx, the DP wrapper, the eavesdropper) works
unchanged and FedAvg's result is α_t1 + the weighted mean Δ, equal to the weights form
up to float rounding.

Plain functions over ``{name: ndarray}``; the Flower pieces are ``clients/reply_mod.py``
(client) and ``server/deltas.py`` (server).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

REPLY_KEY = "reply"  # train-config key by which the server asks for the reply's form
REPLY_FORMS = ("delta", "weights")


def _check(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], what: str) -> None:
    missing = [k for k in a if k not in b]
    if missing:
        raise KeyError(f"{what} lacks {missing[:5]}")
    bad = [k for k in a if np.shape(a[k]) != np.shape(b[k])]
    if bad:
        raise ValueError(f"{what}: shapes differ for {bad[:5]}")


def update_of(sent: Mapping[str, np.ndarray], received: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Δ = sent − received, for every array in ``sent`` (each must have been received)."""
    _check(sent, received, "the arrays received")
    return {k: np.asarray(np.asarray(v) - np.asarray(received[k]), dtype=np.asarray(v).dtype) for k, v in sent.items()}


def apply_update(base: Mapping[str, np.ndarray], update: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """base + Δ, for every array in ``update`` (each must be in ``base``)."""
    _check(update, base, "the arrays sent")
    return {k: np.asarray(np.asarray(base[k]) + np.asarray(d), dtype=np.asarray(base[k]).dtype) for k, d in update.items()}
