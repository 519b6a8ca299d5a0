"""Name -> implementation, one registry per extension point (docs/architecture.md, "Registries").

A :class:`Registry` maps names to targets: an object, or a lazy ``"module:attr"`` string
imported on first :meth:`Registry.get`. Lazy strings let a low layer name what a higher
one implements without importing it: :mod:`fednas.config` lists the paradigms, attacks
and strategies a run may choose (its ``choices``, its error messages, the generated
config table) from the registries below, and never imports torch, ``attacks`` or Flower.
A higher layer adds an implementation with one :meth:`Registry.register` call (and may
take it back with :meth:`Registry.unregister`, as a test's fixture does).

The instances here are the extension points with their default entries:
:data:`SPACES`, :data:`PARADIGMS`, :data:`ATTACKS`, :data:`STRATEGIES`, :data:`ACCOUNTANTS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

_MISSING = object()


class UnknownNameError(ValueError):
    """A name no registry entry has; the message names the kind and the choices."""


@dataclass(frozen=True)
class Entry:
    """One registered name: its target (an object or ``"module:attr"``), a line of doc, and facts
    a lower layer needs without importing the target (``info``: a paradigm's spaces, ...)."""

    name: str
    target: Any
    doc: str = ""
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def lazy(self) -> bool:
        return isinstance(self.target, str)


def resolve(target: Any) -> Any:
    """The object a target names: ``"package.module:attr"`` imported, anything else as is."""
    if not isinstance(target, str):
        return target
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"a lazy registry target is 'package.module:attr', got {target!r}")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class Registry:
    """Names of one kind (``"paradigm"``, ``"attack"``, ...) -> implementations, in registration order.

    Iterating, ``in`` and ``len`` see the names (so a registry serves as a config key's
    ``choices``); :meth:`get` (or ``registry[name]``) gives the implementation.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, target: Any = _MISSING, doc: str = "", *, replace: bool = False,
                 **info: Any) -> Any:
        """Add ``name`` -> ``target``; without ``target``, a decorator that registers what it decorates.

        A name taken already is an error unless ``replace`` (an entry is never overwritten by accident).
        Returns the target (or the decorator).
        """
        if target is _MISSING:
            def decorator(obj: Any) -> Any:
                self.register(name, obj, doc, replace=replace, **info)
                return obj

            return decorator
        if not isinstance(name, str) or not name or name != name.strip():
            raise ValueError(f"a {self.kind} name must be a non-empty string without surrounding blanks, "
                             f"got {name!r}")
        if name in self._entries and not replace:
            raise ValueError(f"{self.kind} {name!r} is registered already (to {self._entries[name].target!r}); "
                             "pass replace=True to replace it")
        self._entries[name] = Entry(name, target, doc, dict(info))
        return target

    def unregister(self, name: str) -> Entry:
        """Remove ``name`` and return its entry (an unknown name is an error)."""
        self.entry(name)
        return self._entries.pop(name)

    def entry(self, name: str) -> Entry:
        """The entry of ``name``; :class:`UnknownNameError` naming the choices otherwise."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownNameError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self._entries)}") from None

    def get(self, name: str) -> Any:
        """The implementation registered as ``name`` (a lazy target is imported now)."""
        return resolve(self.entry(name).target)

    __getitem__ = get

    def info(self, name: str, key: str, default: Any = None) -> Any:
        """One fact registered with ``name`` (``register(..., key=value)``), or ``default``."""
        return self.entry(name).info.get(key, default)

    def names(self, **where: Any) -> tuple[str, ...]:
        """The registered names, in order; ``where``: only those whose info has these values."""
        return tuple(n for n, e in self._entries.items() if all(e.info.get(k) == v for k, v in where.items()))

    def describe(self) -> str:
        """One line per entry: ``name: doc``."""
        return "\n".join(f"{e.name}: {e.doc}" if e.doc else e.name for e in self._entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"


# ---------------------------------------------------------------------------- the extension points

# Search spaces: name -> builder(space section, InputSpec, fused: bool) -> Supernet.
SPACES = Registry("search space")
SPACES.register("dag", "fednas.spaces:build_dag", "the paper's P-node DAG")
SPACES.register("darts", "fednas.spaces:build_darts", "stacked DARTS cells")

# NAS paradigms: name -> fednas.paradigms.base.Paradigm subclass; ``spaces``: the spaces it
# builds (None: every space), read by the config's checks.
PARADIGMS = Registry("paradigm")
PARADIGMS.register("darts", "fednas.paradigms.darts:Darts", "alpha by gradient (the project's search)", spaces=None)
PARADIGMS.register("pdarts", "fednas.paradigms.pdarts:PDarts",
                   "progressive stages: deeper search network, fewer candidate ops, decided by the server",
                   spaces=None)
PARADIGMS.register("enas", "fednas.paradigms.enas:Enas",
                   "an LSTM controller trained with REINFORCE, shared child weights", spaces=("dag",))
PARADIGMS.register("smash", "fednas.paradigms.smash:Smash",
                   "a hypernetwork generates the weights of random architectures; clients rank candidates",
                   spaces=("dag",))

# Attacks on captures: name -> attacks.base.Attack subclass, built as cls(attack settings, seed=).
ATTACKS = Registry("attack")
ATTACKS.register("adra", "attacks.adra.attack:ADRA", "reconstruction of the clients' images from delta-alpha")

# Server strategies: name -> Flower strategy class; ``robust``: a Byzantine-robust aggregator;
# ``args``: f(fed section, clients sampled per round) -> its constructor keywords beyond FedAvg's.
STRATEGIES = Registry("strategy")
_FLOWER = "flwr.serverapp.strategy:"
STRATEGIES.register("fedavg", _FLOWER + "FedAvg", "FedAvg", robust=False)
STRATEGIES.register("fedavgm", _FLOWER + "FedAvgM", "FedAvg with server momentum", robust=False)
STRATEGIES.register("fedprox", _FLOWER + "FedProx", "FedAvg sending the proximal term's mu", robust=False,
                    args="server.strategies:fedprox_args")
STRATEGIES.register("fedmedian", _FLOWER + "FedMedian", "coordinate-wise median", robust=True)
STRATEGIES.register("fedtrimmedavg", _FLOWER + "FedTrimmedAvg", "coordinate-wise trimmed mean", robust=True,
                    args="server.robust:trimmed_args")
STRATEGIES.register("krum", _FLOWER + "Krum", "the reply closest to its neighbours", robust=True,
                    args="server.robust:krum_args")
STRATEGIES.register("multikrum", _FLOWER + "MultiKrum", "the krum-select replies closest to their neighbours",
                    robust=True, args="server.robust:multikrum_args")
STRATEGIES.register("bulyan", _FLOWER + "Bulyan", "MultiKrum selection, then a trimmed median", robust=True,
                    args="server.robust:krum_args")

# Privacy accountants: name -> f(list of GaussianEvent, delta) -> epsilon.
ACCOUNTANTS = Registry("accountant")
ACCOUNTANTS.register("rdp", "fednas.accounting:rdp_epsilon",
                     "Opacus RDPAccountant (Renyi DP, Poisson-subsampled Gaussian; an upper bound)")
ACCOUNTANTS.register("prv", "fednas.accounting:prv_epsilon",
                     "tight: the Gaussian's exact epsilon without subsampling (Balle & Wang 2018), "
                     "Opacus PRVAccountant with it (eps_error 0.01)")

REGISTRIES: dict[str, Registry] = {r.kind: r for r in (SPACES, PARADIGMS, ATTACKS, STRATEGIES, ACCOUNTANTS)}

__all__ = ["ACCOUNTANTS", "ATTACKS", "PARADIGMS", "REGISTRIES", "SPACES", "STRATEGIES", "Entry", "Registry",
           "UnknownNameError", "resolve"]
