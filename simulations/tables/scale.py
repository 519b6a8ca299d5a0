"""A scale: one TOML file in ``simulations/`` that fixes the grid, sample counts and seeds.

``smoke`` (CI, about two minutes), ``cpu`` (what a 2-core machine finishes in a few hours)
and ``gpu`` (the paper's grid). Every section and key is checked when the file is read,
with errors naming the file and the key, before anything runs. Config overrides
(``[base]``, ``[adra.capture]``, ...) are validated against the project's config schema,
except the θ-knowledge modes and defenses, whose keys may belong to an engine this
checkout does not have yet: their cells then say so instead of failing.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fednas.config import GROUP_KEYS, MD_KEYS, ConfigError, parse_config

SIMULATIONS = Path(__file__).resolve().parent.parent
SCALES = {"smoke": "scale-smoke.toml", "cpu": "scale-cpu.toml", "gpu": "scale-gpu.toml"}
AMIA_KEYS = frozenset(k.name for k in GROUP_KEYS["amia"]) | MD_KEYS


class ScaleError(ConfigError):
    """A scale file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class AdraGrid:
    """Tables 1-2 (and the ADRA half of Table 6): captures and attacks."""

    datasets: tuple[str, ...] | None  # None: the scale's
    samples: int  # rebuilt images scored per cell and seed (captures = samples / B)
    clients: int  # clients of a capture run; rounds follow from the captures needed
    theta: tuple[str, ...]  # θ-knowledge modes run; the first is the paper's threat model
    modes: tuple[str, ...]  # adra-mode values
    activations: tuple[str, ...]  # Table 1 rows
    nodes: tuple[int, ...]  # Table 1 columns (P)
    batches: tuple[int, ...]  # Table 2 rows (B)
    batch_nodes: tuple[int, ...]  # Table 2 columns (P)
    capture: dict[str, Any]  # config of the capture runs (the clients' procedure)
    attack: dict[str, Any]  # attack keys of every ADRA cell
    theta_modes: dict[str, dict[str, Any]]  # name -> attack keys


@dataclass(frozen=True)
class AmiaGrid:
    """Tables 3-5: targets searched to convergence, then AMIA through its prediction API."""

    datasets: tuple[str, ...] | None  # None: the scale's
    clients: int
    nodes: tuple[int, ...]  # Table 3 columns (P)
    improved_nodes: tuple[int, ...]  # Table 3's improved-AMIA rows (searched shadows beside the primary's), by P
    paradigm_nodes: int  # Table 4's P (the paper's 64)
    paradigms: tuple[str, ...]
    paradigm_attack: dict[str, Any]  # amia-group keys of Table 4's cells on top of ``attack`` (e.g. a derived target)
    eta_nodes: int  # Table 5's P (the paper's 64)
    etas: tuple[float, ...]
    target: dict[str, Any]  # config of the target's federated search
    attack: dict[str, Any]  # amia-group keys
    shift_source: dict[str, str]  # dataset -> amia-shift-source for eta < 1
    primary_shadow: str  # the shadow kind whose figures stand beside the paper's
    primary_attack: str
    fit_threshold: float  # a target below this train accuracy "has not fitted its data"


@dataclass(frozen=True)
class DefenseGrid:
    """Table 6: each defense against both attacks, its accuracy cost and ε."""

    adra_activations: tuple[str, ...]
    adra_points: tuple[tuple[int, int], ...]  # (B, P), column by column against the paper's
    adra_theta: tuple[str, ...]
    adra: dict[str, dict[str, Any]]  # defense name -> config keys of the capture (and utility) runs
    utility_nodes: int  # P of the accuracy-cost runs of the ADRA defenses
    utility: dict[str, Any]  # config of those runs (a search long enough to fit)
    amia_nodes: tuple[int, ...]  # P, column by column against the paper's 64 and 256
    amia: dict[str, dict[str, Any]]  # defense name -> config keys (amia-group keys act at attack time)


@dataclass(frozen=True)
class Scale:
    name: str
    path: Path
    about: str
    seeds: tuple[int, ...]
    datasets: tuple[str, ...]
    data_root: str
    runner: str  # "inprocess" (the real ServerApp and ClientApp in one process) or "flower" (flwr run)
    base: dict[str, Any]
    adra: AdraGrid
    amia: AmiaGrid
    defenses: DefenseGrid
    raw: dict[str, Any] = field(repr=False, default_factory=dict)


class _Section:
    """Reads one table of the file; every key must be consumed (``done``) or it is an error."""

    def __init__(self, path: Path, where: str, data: Any) -> None:
        if not isinstance(data, dict):
            raise ScaleError(f"{path}: [{where}] must be a table")
        self.path, self.where, self.data, self.used = path, where, data, set()

    def _name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def get(self, key: str, kind: type | tuple, default: Any = ...) -> Any:
        self.used.add(key)
        if key not in self.data:
            if default is ...:
                raise ScaleError(f"{self.path}: '{self._name(key)}' is missing")
            return default
        value = self.data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ScaleError(f"{self.path}: '{self._name(key)}' = {value!r} must be {_kind(kind)}")
        return value

    def positive(self, key: str, default: Any = ...) -> int:
        value = self.get(key, int, default)
        if value < 1:
            raise ScaleError(f"{self.path}: '{self._name(key)}' = {value} must be >= 1")
        return value

    def ints(self, key: str, default: Any = ...) -> tuple[int, ...]:
        values = self.get(key, list, default)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
            raise ScaleError(f"{self.path}: '{self._name(key)}' = {values!r} must be a list of integers >= 1")
        return tuple(values)

    def strings(self, key: str, default: Any = ..., allowed: tuple[str, ...] | None = None) -> tuple[str, ...]:
        values = self.get(key, list, default)
        if not all(isinstance(v, str) for v in values):
            raise ScaleError(f"{self.path}: '{self._name(key)}' = {values!r} must be a list of strings")
        bad = [v for v in values if allowed is not None and v not in allowed]
        if bad:
            raise ScaleError(f"{self.path}: '{self._name(key)}' has {bad}; allowed: {', '.join(allowed)}")
        return tuple(values)

    def section(self, key: str) -> _Section:
        return _Section(self.path, self._name(key), self.get(key, dict, {}))

    def config(self, key: str, only: frozenset[str] | None = None) -> dict[str, Any]:
        """A table of config overrides, validated by the config schema."""
        values = dict(self.get(key, dict, {}))
        check_config(values, f"{self.path}: [{self._name(key)}]", only)
        return values

    def done(self) -> None:
        extra = sorted(set(self.data) - self.used)
        if extra:
            raise ScaleError(f"{self.path}: unknown key(s) {', '.join(self._name(k) for k in extra)}")


def _kind(kind: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table", bool: "true or false"}
    return names.get(kind, str(kind))


def check_config(values: dict[str, Any], where: str, only: frozenset[str] | None = None) -> None:
    """Config overrides must parse (names and values); ``only`` restricts the keys allowed."""
    if only is not None:
        bad = sorted(set(values) - only)
        if bad:
            raise ScaleError(f"{where}: keys {bad} are not allowed here (only: {', '.join(sorted(only))})")
    try:
        parse_config(values)
    except ConfigError as err:
        raise ScaleError(f"{where}: {err}") from None


def _pairs(path: Path, where: str, value: Any) -> tuple[tuple[int, int], ...]:
    ok = isinstance(value, list) and all(isinstance(p, list) and len(p) == 2 and all(
        isinstance(v, int) and v >= 1 for v in p) for p in value)
    if not ok:
        raise ScaleError(f"{path}: '{where}' = {value!r} must be a list of [B, P] pairs")
    return tuple((int(b), int(p)) for b, p in value)


def _named_overrides(sec: _Section, key: str) -> dict[str, dict[str, Any]]:
    """``name = { key = value, ... }`` tables, kept as given (checked when used)."""
    table = sec.get(key, dict, {})
    for name, values in table.items():
        if not isinstance(values, dict):
            raise ScaleError(f"{sec.path}: '{sec._name(key)}.{name}' must be an inline table of config keys")
    return {name: dict(values) for name, values in table.items()}


def resolve(name_or_path: str) -> Path:
    """``smoke``/``cpu``/``gpu`` or a path to a scale file."""
    if name_or_path in SCALES:
        return SIMULATIONS / SCALES[name_or_path]
    path = Path(name_or_path)
    if not path.is_file():
        raise ScaleError(f"scale {name_or_path!r}: neither one of {', '.join(SCALES)} nor a file")
    return path


def load_scale(name_or_path: str) -> Scale:
    """Read and check a scale file (see the module docstring)."""
    path = resolve(name_or_path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ScaleError(f"{path}: not valid TOML: {err}") from None
    top = _Section(path, "", raw)
    name = top.get("name", str)
    about = top.get("about", str, "")
    seeds = top.get("seeds", list)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise ScaleError(f"{path}: 'seeds' = {seeds!r} must be a non-empty list of integers >= 0")
    datasets = top.strings("datasets")
    for d in datasets:
        check_config({"dataset": d}, f"{path}: datasets")
    data_root = top.get("data-root", str, "")
    runner = top.get("runner", str, "inprocess")
    if runner not in ("inprocess", "flower"):
        raise ScaleError(f"{path}: 'runner' = {runner!r}; choose inprocess or flower")
    base = top.config("base")
    adra = _adra(top.section("adra"))
    amia = _amia(top.section("amia"))
    defenses = _defenses(top.section("table6"), adra)
    top.done()
    return Scale(name, path, about, tuple(seeds), datasets, data_root, runner, base, adra, amia, defenses, raw)


def _datasets(sec: _Section) -> tuple[str, ...] | None:
    """An attack's own dataset list (the paper's ADRA is MNIST only), else the scale's."""
    names = sec.strings("datasets", None) if "datasets" in sec.data else None
    for d in names or ():
        check_config({"dataset": d}, f"{sec.path}: {sec.where}.datasets")
    return names


def _adra(sec: _Section) -> AdraGrid:
    t1, t2 = sec.section("table1"), sec.section("table2")
    theta_modes = _named_overrides(sec, "theta-modes")
    theta = sec.strings("theta")
    missing = [t for t in theta if t not in theta_modes]
    if not theta or missing:
        raise ScaleError(f"{sec.path}: 'adra.theta' = {list(theta)!r}: each name needs an entry in [adra.theta-modes]")
    grid = AdraGrid(
        datasets=_datasets(sec), samples=sec.positive("samples"), clients=sec.positive("clients"), theta=theta,
        modes=sec.strings("modes", allowed=("paper", "strong")),
        activations=t1.strings("activations", allowed=("elu", "tanh", "sigmoid", "relu")), nodes=t1.ints("P"),
        batches=t2.ints("B"), batch_nodes=t2.ints("P"),
        capture=sec.config("capture"), attack=sec.config("attack", frozenset(k.name for k in GROUP_KEYS["attack"])),
        theta_modes=theta_modes)
    for s in (t1, t2, sec):
        s.done()
    return grid


def _amia(sec: _Section) -> AmiaGrid:
    t3, t4, t5 = sec.section("table3"), sec.section("table4"), sec.section("table5")
    etas = t5.get("eta", list)
    if not etas or not all(isinstance(e, (int, float)) and 0 <= e <= 1 for e in etas):
        raise ScaleError(f"{sec.path}: 'amia.table5.eta' = {etas!r} must be a list of numbers in [0, 1]")
    shift = sec.get("shift-source", dict, {})
    for d, source in shift.items():
        check_config({"amia-shift-source": source}, f"{sec.path}: [amia.shift-source] {d}")
    grid = AmiaGrid(
        datasets=_datasets(sec), clients=sec.positive("clients"), nodes=t3.ints("P"),
        improved_nodes=t3.ints("improved-P", []), paradigm_nodes=t4.positive("P"),
        paradigms=t4.strings("paradigms"), paradigm_attack=t4.config("attack", AMIA_KEYS), eta_nodes=t5.positive("P"), etas=tuple(float(e) for e in etas),
        target=sec.config("target"), attack=sec.config("attack", AMIA_KEYS), shift_source=dict(shift),
        primary_shadow=sec.get("primary-shadow", str), primary_attack=sec.get("primary-attack", str, "mlp"),
        fit_threshold=sec.get("fit-threshold", float, 0.8))
    shadows = [s.strip() for s in str(grid.attack.get("amia-shadows", "resnet18,searched")).split(",")]
    if grid.primary_shadow not in shadows:
        raise ScaleError(f"{sec.path}: 'amia.primary-shadow' = {grid.primary_shadow!r} is not among amia-shadows {shadows}")
    if grid.improved_nodes and grid.primary_shadow == "searched":
        raise ScaleError(f"{sec.path}: 'amia.table3.improved-P' compares searched shadows with the primary "
                         f"ones, but 'amia.primary-shadow' is already 'searched'")
    for s in (t3, t4, t5, sec):
        s.done()
    return grid


def _defenses(sec: _Section, adra: AdraGrid) -> DefenseGrid:
    a, m = sec.section("adra"), sec.section("amia")
    theta = a.strings("theta", adra.theta[:1])
    if any(t not in adra.theta_modes for t in theta):
        raise ScaleError(f"{sec.path}: 'table6.adra.theta' = {list(theta)!r}: each needs an entry in [adra.theta-modes]")
    grid = DefenseGrid(
        adra_activations=a.strings("activations", allowed=("elu", "tanh", "sigmoid", "relu")),
        adra_points=_pairs(sec.path, "table6.adra.points", a.get("points", list)), adra_theta=theta,
        adra=_named_overrides(a, "defenses"), utility_nodes=a.positive("utility-P"), utility=a.config("utility"),
        amia_nodes=m.ints("P"), amia=_named_overrides(m, "defenses"))
    for s in (a, m, sec):
        s.done()
    return grid
