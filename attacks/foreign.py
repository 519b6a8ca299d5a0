"""Another Flower app's model as the attack's target: the ``--model`` contract.

``python -m attacks.adra RUN_DIR --model package.module:factory`` attacks captures made by
:func:`server.plugin.eavesdrop` around any app's strategy. The contract (docs/plugin.md):

- ``factory`` is importable from where the attack runs and callable with no argument; it
  returns a ``torch.nn.Module`` (the victim's network, any initial weights) whose forward
  maps a float batch ``(B, C, H, W)`` to logits ``(B, classes)`` and is differentiable in α;
- its α are named parameters whose names match the manifest's ``alpha-pattern`` and are
  the names the α arrays have on the wire (``model.named_parameters()`` names, as
  ``ArrayRecord(model.state_dict())`` sends them); every other parameter is θ;
- the client trains it in train mode (BatchNorm on batch statistics, as DARTS does), and
  updates α with the optimizer the capture's ``client-settings`` name (SGD or Adam).

Optional, for scoring only: ``--data package.module:function`` returning ``(images,
labels)`` (float images in [0, 1], shape (N, C, H, W)), the set the clients' ``audit``
records index (``alpha-indices``, ``alpha-batch-sizes``, optionally ``alpha-pool``: the
client's whole D^α; :class:`fednas.truth.TruthRecord`); ``--aux`` (same signature): the
attacker's own images, for the aux-screened starting points and the PCA prior.
"""

from __future__ import annotations

import functools
import importlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from attacks.base import Knowledge
from fednas.captures import CaptureStore, Manifest
from fednas.schema import SchemaError
from fednas.truth import TruthRecord, read_truth

log = logging.getLogger(__name__)


class TargetError(ValueError):
    """A ``--model``/``--data`` reference or the model it names breaks the contract."""


def load_callable(ref: str, what: str = "model") -> Callable[..., Any]:
    """The object named by ``package.module:attribute`` (dots allowed in the attribute)."""
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise TargetError(f"--{what} {ref!r}: expected 'package.module:callable'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise TargetError(f"--{what} {ref!r}: cannot import {module_name!r} ({err}); run from the app's folder "
                          "or put it on PYTHONPATH") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise TargetError(f"--{what} {ref!r}: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise TargetError(f"--{what} {ref!r} is not callable")
    return obj


def callable_ref(obj: Callable[..., Any]) -> str:
    """``package.module:qualname`` of a module-level callable (what a manifest stores)."""
    module, name = getattr(obj, "__module__", None), getattr(obj, "__qualname__", "")
    if not module or not name or "<" in name:
        raise TargetError(f"{obj!r} is not a module-level callable; pass 'package.module:factory' instead")
    return f"{module}:{name}"


def arch_split(model: Any, pattern: str) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """(α, θ): the model's named parameters whose names match ``pattern`` (``re.search``), and the rest."""
    rx = re.compile(pattern)
    named = list(model.named_parameters())
    return [(n, p) for n, p in named if rx.search(n)], [(n, p) for n, p in named if not rx.search(n)]


@dataclass(frozen=True)
class ForeignTarget:
    """The victim model and data references of another app (hashable: workers cache by it)."""

    model: str
    alpha_pattern: str = "^alpha"
    input_shape: tuple[int, int, int] | None = None
    num_classes: int | None = None
    data: str | None = None
    aux: str | None = None

    @classmethod
    def from_run(cls, run_dir: str | Path, model: str | None = None, data: str | None = None,
                 aux: str | None = None, input_shape: tuple[int, int, int] | None = None,
                 num_classes: int | None = None) -> ForeignTarget:
        """The target of a run's captures: its manifest, with the command line's references on top."""
        manifest = CaptureStore(run_dir).manifest() or Manifest()
        ref = model or manifest.model
        if ref is None:
            raise TargetError(f"{run_dir}: the captures' manifest names no model; pass --model package.module:factory")
        return cls(ref, manifest.alpha_pattern, input_shape or manifest.input_shape,
                   num_classes or manifest.num_classes, data, aux)

    def build(self, seed: int = 0) -> Any:
        """A fresh victim network from the factory (torch seeded, for factories that draw their init)."""
        import torch

        factory = load_callable(self.model)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            try:
                model = factory()
            except Exception as err:  # the user's code: whatever it raises, say which call failed
                raise TargetError(f"--model {self.model!r}: calling it with no argument failed: "
                                  f"{type(err).__name__}: {err}") from None
        if not isinstance(model, torch.nn.Module):
            raise TargetError(f"--model {self.model!r} returned {type(model).__name__}, not a torch.nn.Module")
        alpha, _ = arch_split(model, self.alpha_pattern)
        if not alpha:
            names = [n for n, _ in model.named_parameters()][:6]
            raise TargetError(f"--model {self.model!r}: no parameter name matches alpha-pattern "
                              f"{self.alpha_pattern!r} (it has {names}...)")
        return model

    def check(self, manifest: Manifest | None = None) -> None:
        """The factory meets the contract, checked once before any capture is attacked: it builds a
        ``torch.nn.Module`` with α parameters matching the pattern, named and shaped as the manifest's
        α arrays (the wire's) when the manifest lists them. Raises :class:`TargetError` naming the factory."""
        model = self.build(0)
        alpha = {n: list(p.shape) for n, p in arch_split(model, self.alpha_pattern)[0]}
        wire = dict((manifest.arrays if manifest is not None else {}).get("alpha", {}))
        missing = sorted(set(wire) - set(alpha))
        if missing:
            raise TargetError(f"--model {self.model!r}: its alpha parameters {sorted(alpha)} lack the captured alpha "
                              f"arrays {missing} (alpha-pattern {self.alpha_pattern!r}); the names must be the wire's")
        wrong = [f"{n}: {alpha[n]} vs captured {list(wire[n])}" for n in sorted(wire) if list(wire[n]) != alpha[n]]
        if wrong:
            raise TargetError(f"--model {self.model!r}: alpha shapes differ from the captures' ({'; '.join(wrong)})")

    def describe(self, manifest: Manifest | None = None) -> dict[str, Any]:
        """The attacked model, for the report's settings: factory, input, classes, α arrays."""
        classes = self.num_classes
        if classes is None and self.input_shape is not None:
            try:
                classes = self.spec().num_classes
            except TargetError:
                classes = None
        wire = dict((manifest.arrays if manifest is not None else {}).get("alpha", {}))
        return {"model": self.model, "input-shape": None if self.input_shape is None else
                "x".join(str(v) for v in self.input_shape), "num-classes": classes,
                "alpha-pattern": self.alpha_pattern,
                "alpha-arrays": "; ".join(f"{n} {list(shape)}" for n, shape in sorted(wire.items())) or None}

    def spec(self) -> Any:
        """The input spec; classes from the manifest, else one forward pass of zeros."""
        import torch

        from fednas.spaces import InputSpec

        if self.input_shape is None:
            raise TargetError("the victim's input shape is unknown: pass input_shape to eavesdrop() or "
                              "--input-shape C,H,W")
        c, h, w = self.input_shape
        if h != w:
            raise TargetError(f"input shape {self.input_shape}: the attack rebuilds square images only")
        classes = self.num_classes
        if classes is None:
            model = self.build(0).eval()
            with torch.no_grad():
                classes = int(model(torch.zeros(2, c, h, w)).shape[-1])
        return InputSpec(c, h, int(classes))

    def knowledge(self, config: Any) -> Knowledge:
        """What the attacker knows: the attack settings, the model, its own aux images if given."""
        aux_x = aux_y = None
        if self.aux is not None:
            aux_x, aux_y = load_images(self.aux, "aux")
        return Knowledge(config, self.spec(), aux_x, aux_y, target=self)


def load_images(ref: str, what: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` from a ``package.module:function`` reference, checked."""
    out = load_callable(ref, what)()
    try:
        x, y = out
    except (TypeError, ValueError):
        raise TargetError(f"--{what} {ref!r} must return (images, labels)") from None
    x, y = np.asarray(x, dtype=np.float32), np.asarray(y).astype(np.int64)
    if x.ndim != 4 or len(x) != len(y):
        raise TargetError(f"--{what} {ref!r}: expected images (N, C, H, W) and N labels, got {x.shape} and {y.shape}")
    return x, y


@functools.lru_cache(maxsize=2)
def _cached_images(ref: str, what: str) -> tuple[np.ndarray, np.ndarray]:
    return load_images(ref, what)


class ForeignScoringContext:
    """The scoring side of another app's run (duck-types :class:`attacks.report.ScoringContext`).

    With ``--data`` the truth records' indices point into its images; a client's D^α pool
    is its records' ``alpha-pool`` (else the samples it used); the oracle is fitted on the
    images outside every client's pool. Without ``--data`` every row says it cannot be scored.
    """

    def __init__(self, run_dir: str | Path, target: ForeignTarget, seed: int = 0) -> None:
        from attacks import metrics as M
        from attacks.report import truth_samples

        self.run_dir = Path(run_dir)
        self.store = CaptureStore(self.run_dir)
        self.model = target.describe(self.store.manifest())  # the report's settings name the attacked model
        self.splits: dict[int, Any] = {}
        self.scorable = target.data is not None
        self.unscored_reason = ("no truth record for this capture: in a simulation the app's clients write one "
                                "each (fednas.truth.write_truth); a deployment's never leave the clients"
                                if self.scorable else
                                "no --data: the images the clients' truth records index are unknown here")
        if not self.scorable:
            self.x = self.y = np.zeros((0, 1, 1, 1), np.float32)
            return
        self.x, self.y = _cached_images(target.data, "data")
        pools: dict[int, set[int]] = {}
        for cid in self.store.ids():
            try:
                truth, pid = self.truth(cid), self.store.meta(cid).get("partition-id")
            except SchemaError as err:  # that capture's rows say so; the others still score
                log.warning("scoring: %s", err)
                continue
            if truth is None or pid is None:
                continue
            own = truth.alpha_pool or [g for _, _, g in truth_samples(truth)]
            pools.setdefault(int(pid), set()).update(int(i) for i in own)
        self.splits = {pid: _Split(np.array(sorted(ids), dtype=np.int64)) for pid, ids in pools.items()}
        used = set().union(*pools.values()) if pools else set()
        outside = np.array([i for i in range(len(self.y)) if i not in used], dtype=np.int64)
        self.oracle = M.Oracle(self.x[outside], self.y[outside], seed=seed)

    def truth(self, cid: str) -> TruthRecord | None:
        """The capture's truth record (:func:`fednas.truth.read_truth`); None without ``--data``."""
        return read_truth(self.run_dir, self.store.meta(cid)) if self.scorable else None


@dataclass(frozen=True)
class _Split:
    alpha: np.ndarray
