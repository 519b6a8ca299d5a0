"""NAS paradigms by name: what a client searches and what it sends (docs/paradigms.md).

``paradigm`` in the config picks one of :data:`PARADIGMS`. ``darts`` is the project's
own search (:class:`~fednas.paradigms.darts.Darts`, the one DARTS round, which
:mod:`fednas.federated` runs under Flower like every other paradigm); ``pdarts``, ``enas``
and ``smash`` follow their reference implementations, scaled to this project's spaces.
:mod:`fednas.paradigms.federation` runs any paradigm's rounds in one process.
"""

from __future__ import annotations

from typing import Any

from fednas.paradigms.base import STATE_PREFIX, Paradigm, split_state
from fednas.paradigms.darts import Darts
from fednas.paradigms.enas import Enas
from fednas.paradigms.pdarts import PDarts
from fednas.paradigms.smash import Smash
from fednas.registry import PARADIGMS


def get_paradigm(name: str) -> Paradigm:
    """The paradigm registered as ``name``; a clear error naming the choices otherwise."""
    return PARADIGMS.get(name)()


def paradigm_of(cfg: Any) -> Paradigm:
    """The paradigm a run's config names."""
    return get_paradigm(cfg.paradigm.paradigm)


__all__ = ["PARADIGMS", "STATE_PREFIX", "Paradigm", "get_paradigm", "paradigm_of", "split_state"]
