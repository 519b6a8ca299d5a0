"""The attack interface: captures and public knowledge in, reconstructions out.

An attack is an :class:`Attack`, with one method, ``reconstruct(captures, knowledge)``.
What it may use is exactly what its arguments hold: the captures (what crossed the wire)
and :class:`Knowledge` (the run's public configuration, and the attacker's own auxiliary
data). Neither holds, nor can reach, the truth of which samples a client used: that lives
in the run directory's ``truth/`` folder, read only by the scoring (``attacks.report``).

Attacks are registered by name in :data:`fednas.registry.ATTACKS` (``attack`` in the
config). The generic runner and report know an attack only through this class: what it
adds to the leakage report (its columns, settings, figures and scoring job) is its
:class:`AttackReport` (``Attack.report``).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from fednas.captures import Capture
from fednas.registry import ATTACKS


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


ScoreJob = Callable[[str, str, Mapping[str, Any], Any], dict[str, Any]]  # (run dir, capture id, flat, truth)


class AttackReport:
    """What an attack adds to the generic leakage report (:mod:`attacks.report`); the base adds nothing.

    Attributes
    ----------
    setting_keys : tuple of str
        Config keys listed under the report's settings (beside ``attack`` and ``device``).
    detail_columns : tuple of str
        Keys of :attr:`Reconstruction.details` copied into every ``clients.csv`` row of the capture.
    score_columns : tuple of str
        Keys of the scoring job's result (:meth:`score_job`) copied into the capture's rows.
    summary_keys : tuple of str
        Keys :meth:`summarize` adds to the summary (and to the run's ``summary.json`` ``leakage``).
    table_columns : tuple of (heading, summary key, as percent)
        Columns the report's tables show beside the generic ones.
    """

    setting_keys: tuple[str, ...] = ()
    detail_columns: tuple[str, ...] = ()
    score_columns: tuple[str, ...] = ()
    summary_keys: tuple[str, ...] = ()
    table_columns: tuple[tuple[str, str, bool], ...] = ()

    def score_job(self, flat: Mapping[str, Any]) -> ScoreJob | str | None:
        """A module-level (picklable) ``f(run_dir, capture_id, flat, truth) -> dict``, or its
        ``"module:attr"`` name, run beside each attack on the capture's truth (a figure of the capture,
        not of the attack; the scoring reads the truth and hands it over: ``attacks.report.run_score_job``);
        None: no such job. Its result's :attr:`score_columns` go into the capture's rows."""
        return None

    def summarize(self, rows: Sequence[Mapping[str, Any]], attacked: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """The attack's own figures over some rows (all of a run, or one client's); ``attacked``: those of
        attacked captures. Keys: :attr:`summary_keys`."""
        return {}

    def notes(self, rows: Sequence[Mapping[str, Any]]) -> list[str]:
        """Markdown lines the report shows after its overall table."""
        return []


class Attack(abc.ABC):
    """An attack on captures (see the module docstring), built as ``cls(settings, seed=seed)``.

    ``settings`` is the config's ``attack`` section; an attack reads its own keys there.
    """

    name: ClassVar[str] = ""
    report: ClassVar[AttackReport] = AttackReport()

    def __init__(self, settings: Any, seed: int = 0) -> None:
        self.settings, self.seed = settings, seed

    @abc.abstractmethod
    def reconstruct(self, captures: Sequence[Capture], knowledge: Knowledge) -> list[Reconstruction]:
        """One reconstruction per capture, in order; never raises for a bad capture."""

    @classmethod
    def wants_aux(cls, config: Any) -> bool:
        """Whether the attacker's auxiliary pool must be loaded into :class:`Knowledge` for this run."""
        return True


def attack_class(name: str) -> type[Attack]:
    """The attack registered as ``name`` (a clear error naming the attacks otherwise)."""
    return ATTACKS.get(name)


def make_attack(name: str, settings: Any, seed: int = 0) -> Attack:
    """The attack registered as ``name``, built from the ``attack`` config section."""
    return attack_class(name)(settings, seed=seed)
