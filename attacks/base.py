"""The attack interface: captures and public knowledge in, reconstructions out.

An attack is an object with one method, ``reconstruct(captures, knowledge)``. What it may
use is exactly what its arguments hold: the captures (what crossed the wire) and
:class:`Knowledge` (the run's public configuration, and the attacker's own auxiliary
data). Neither holds, nor can reach, the truth of which samples a client used: that lives
in the run directory's ``truth/`` folder, read only by the scoring (``attacks.report``).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from fednas.captures import Capture


@dataclass(frozen=True)
class Knowledge:
    """What the attacker knows beside the captures. Never a client's data.

    Attributes
    ----------
    config : Config
        The run's configuration: the search space, the dataset's name and shape, the
        search settings (public in a federated NAS deployment: the server sets them).
    spec : InputSpec
        Input channels, image size and classes.
    aux_images, aux_labels : arrays, optional
        The attacker's auxiliary pool (its own data), for a learned prior.
    target : ForeignTarget, optional
        Another app's model (``attacks.foreign``); None: the supernet ``config`` describes.
    """

    config: Any
    spec: Any
    aux_images: np.ndarray | None = None
    aux_labels: np.ndarray | None = None
    target: Any = None

    def build_model(self, seed: int = 0) -> Any:
        """A fresh replica of the victim's network (the hook an attack builds its model with)."""
        if self.target is not None:
            return self.target.build(seed)
        from fednas.spaces import build_supernet

        return build_supernet(self.config.space, self.spec, seed)

    def split_parameters(self, model: Any) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
        """(α, θ) of a model built by :meth:`build_model`, as named parameters."""
        if self.target is not None:
            from attacks.foreign import arch_split

            return arch_split(model, self.target.alpha_pattern)
        return model.named_arch_parameters(), model.named_weight_parameters()


@dataclass
class Reconstruction:
    """What an attack rebuilt from one capture.

    ``images`` (n, C, H, W) in [0, 1] with ``labels``; ``steps`` and ``positions`` say
    which local α step (−1: not modelled) and which place in its batch each image is
    for. ``match`` is the final distance between observed and predicted Δα: the
    attacker's own quality signal. ``status`` is ``ok`` or ``failed`` with a ``reason``.
    """

    capture_id: str
    status: str = "ok"
    reason: str = ""
    images: np.ndarray = field(default_factory=lambda: np.zeros((0, 1, 1, 1), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    steps: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    positions: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    match: float = float("nan")
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def failed(cls, capture_id: str, reason: str, seconds: float = 0.0, **details: Any) -> Reconstruction:
        return cls(capture_id, "failed", reason, seconds=seconds, details=dict(details))


class Attack(Protocol):
    """An attack on captures (see the module docstring)."""

    name: str

    def reconstruct(self, captures: Sequence[Capture], knowledge: Knowledge) -> list[Reconstruction]:
        """One reconstruction per capture, in order; never raises for a bad capture."""
        ...


# name -> "module:Class"; imported on first use (attacks pull in torch and the supernets)
ATTACKS: dict[str, str] = {"adra": "attacks.adra.attack:ADRA"}


def make_attack(name: str, settings: Any, seed: int = 0) -> Attack:
    """The attack registered as ``name``, built from the ``attack`` config section."""
    try:
        target = ATTACKS[name]
    except KeyError:
        raise ValueError(f"unknown attack {name!r}; choose one of: {', '.join(ATTACKS)}") from None
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)(settings, seed=seed)
