"""Run configuration: one schema of flat hyphenated keys, parsed once into frozen dataclasses.

Every knob of a run is a key in ``[tool.flwr.app.config]`` of ``pyproject.toml``. This
module holds the schema (key, type, default, allowed values, meaning): the only place a
default lives in Python. :func:`parse_config` turns a flat mapping (Flower's
``context.run_config``, an experiment TOML, ``--set`` overrides) into a :class:`Config`
and rejects unknown keys, wrong types and out-of-range values with messages that name
the key and what is allowed. ``python -m fednas.config`` prints the reference table.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

ACTIVATIONS = ("elu", "tanh", "sigmoid", "relu")
SPACES = ("dag", "darts")
DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10", "cifar100")
PARTITIONERS = ("iid", "dirichlet")
HEADS = ("gap", "flatten")


class ConfigError(ValueError):
    """A configuration problem; the message names every offending key."""


@dataclass(frozen=True)
class Key:
    """One configuration key of the schema."""

    name: str
    group: str
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    check: Callable[[Any], bool] | None = None
    rule: str = ""  # human-readable form of ``check``

    @property
    def kind(self) -> type:
        return type(self.default)

    @property
    def field(self) -> str:
        return self.name.replace("-", "_")


def _pos(x: Any) -> bool:
    return x > 0


def _nonneg(x: Any) -> bool:
    return x >= 0


def _unit(x: Any) -> bool:
    return 0.0 < x <= 1.0


def _unit0(x: Any) -> bool:
    return 0.0 <= x < 1.0


def _k(name, group, default, help, choices=None, check=None, rule=""):  # noqa: A002
    return Key(name, group, default, help, choices, check, rule)


# fmt: off
KEYS: tuple[Key, ...] = (
    # --- run -------------------------------------------------------------------------
    _k("seed", "run", 0, "Seed of everything: model init, pools, partitions, batches.", check=_nonneg, rule=">= 0"),
    _k("output-dir", "run", "outputs", "Root of run directories. A relative path is taken from $FEDNAS_HOME (set by the launcher to the project root), else from the home directory."),
    _k("run-dir", "run", "", "Exact run directory (absolute). Empty: a new folder under output-dir. The launcher sets it."),
    _k("run-name", "run", "", "Optional name put into the run directory's name."),
    _k("device", "run", "auto", "Torch device for clients and server: auto (cuda when the process has a GPU), cpu, cuda.", choices=("auto", "cpu", "cuda")),
    # --- search space ----------------------------------------------------------------
    _k("space", "space", "dag", "Search space: dag (the paper's P-node DAG) or darts (stacked DARTS cells).", choices=SPACES),
    _k("nodes", "space", 8, "dag: P, nodes after the stem (node 0 is the stem's output); alpha has P(P-1)/2 x 8 entries.", check=lambda x: x >= 2, rule=">= 2"),
    _k("layers", "space", 5, "darts: number of stacked cells (reduction cells at 1/3 and 2/3).", check=lambda x: x >= 3, rule=">= 3"),
    _k("steps", "space", 4, "darts: intermediate nodes per cell (4 gives 14 edges).", check=lambda x: x >= 1, rule=">= 1"),
    _k("channels", "space", 8, "Channels C of every node (darts: of the first cell).", check=_pos, rule="> 0"),
    _k("activation", "space", "elu", "Activation inside every op.", choices=ACTIVATIONS),
    _k("head", "space", "gap", "Classifier head: gap (global average pool + linear, as DARTS) or flatten (linear over the whole last feature map).", choices=HEADS),
    _k("theta-init", "space", "uniform", "Weight init: uniform in [-bound, bound] (the paper's ADRA setting) or torch's default.", choices=("uniform", "default")),
    _k("theta-init-bound", "space", 0.25, "Bound of the uniform weight init.", check=_pos, rule="> 0"),
    _k("alpha-init-scale", "space", 1e-3, "alpha starts as scale * N(0, 1).", check=_nonneg, rule=">= 0"),
    _k("fused", "space", True, "Use the fused supernet where one exists (numerically equal to the per-edge reference)."),
    # --- data ------------------------------------------------------------------------
    _k("dataset", "data", "digits", "digits (scikit-learn's 8x8, embedded) or a torchvision set read from data-root.", choices=DATASETS),
    _k("data-root", "data", "", "Folder holding torchvision datasets (e.g. data/ with MNIST/raw inside). Relative paths are taken from $FEDNAS_HOME."),
    _k("download", "data", False, "Let torchvision download a missing dataset (needs a network)."),
    _k("max-samples", "data", 0, "Use only this many samples of the dataset (0: all), chosen by seed.", check=_nonneg, rule=">= 0"),
    _k("clients-fraction", "data", 0.6, "Share of the dataset for the clients' data.", check=_unit, rule="in (0, 1]"),
    _k("holdout-fraction", "data", 0.15, "Share held out as the population of non-members (never trained on).", check=_unit0, rule="in [0, 1)"),
    _k("aux-fraction", "data", 0.15, "Share given to the attacker as its auxiliary pool (shadow models, priors).", check=_unit0, rule="in [0, 1)"),
    _k("test-fraction", "data", 0.1, "Share for the server's central evaluation.", check=_unit0, rule="in [0, 1)"),
    _k("partitioner", "data", "iid", "How client data is split across clients.", choices=PARTITIONERS),
    _k("dirichlet-alpha", "data", 0.5, "Concentration of the Dirichlet non-IID partitioner (small: skewed).", check=_pos, rule="> 0"),
    _k("alpha-fraction", "data", 0.5, "Share of a client's training data in D^alpha (the rest is D^theta).", check=lambda x: 0.0 < x < 1.0, rule="in (0, 1)"),
    _k("client-test-fraction", "data", 0.1, "Share of each client's partition kept for its own evaluation.", check=_unit0, rule="in [0, 1)"),
    # --- local search ----------------------------------------------------------------
    _k("local-steps", "search", 5, "Local search steps per round (each: one alpha step on D^alpha, one theta step on D^theta).", check=_pos, rule="> 0"),
    _k("local-epochs", "search", 0, "If > 0: run this many passes over D^theta instead of local-steps.", check=_nonneg, rule=">= 0"),
    _k("batch-size", "search", 32, "Batch size of a theta step.", check=_pos, rule="> 0"),
    _k("alpha-batch-size", "search", 32, "B: batch size of an alpha step.", check=_pos, rule="> 0"),
    _k("theta-lr", "search", 0.025, "SGD learning rate of theta.", check=_pos, rule="> 0"),
    _k("theta-momentum", "search", 0.9, "SGD momentum of theta.", check=_unit0, rule="in [0, 1)"),
    _k("theta-weight-decay", "search", 3e-4, "Weight decay of theta.", check=_nonneg, rule=">= 0"),
    _k("theta-grad-clip", "search", 5.0, "Clip theta's gradient to this L2 norm (0: off).", check=_nonneg, rule=">= 0"),
    _k("alpha-optimizer", "search", "adam", "Optimizer of alpha.", choices=("adam", "sgd")),
    _k("alpha-lr", "search", 3e-4, "Learning rate of alpha.", check=_pos, rule="> 0"),
    _k("alpha-weight-decay", "search", 1e-3, "Weight decay of alpha.", check=_nonneg, rule=">= 0"),
    _k("alpha-beta1", "search", 0.5, "Adam beta1 for alpha.", check=_unit0, rule="in [0, 1)"),
    _k("alpha-order", "search", "first", "Architecture gradient: first-order, or second-order (unrolled, finite-difference Hessian-vector product).", choices=("first", "second")),
    _k("alpha-l2", "search", 0.0, "lambda of an L2 penalty lambda * sum(alpha^2) added to the alpha loss (the LR defense).", check=_nonneg, rule=">= 0"),
    _k("share-weights", "search", True, "Clients send theta too and the server averages it (FedNAS). Off: theta stays on each client."),
    # --- federation ------------------------------------------------------------------
    _k("num-server-rounds", "fed", 3, "Federated rounds.", check=_pos, rule="> 0"),
    _k("strategy", "fed", "fedavg", "Server strategy (Flower built-ins).", choices=("fedavg", "fedavgm", "fedprox")),
    _k("fraction-train", "fed", 1.0, "Share of connected clients sampled for training each round.", check=_unit, rule="in (0, 1]"),
    _k("fraction-evaluate", "fed", 1.0, "Share of clients sampled for federated evaluation (0: none).", check=lambda x: 0.0 <= x <= 1.0, rule="in [0, 1]"),
    _k("min-train-clients", "fed", 2, "Minimum clients per training round (capped at the federation's size).", check=_pos, rule="> 0"),
    _k("min-evaluate-clients", "fed", 2, "Minimum clients per evaluation round (capped at the federation's size).", check=_nonneg, rule=">= 0"),
    _k("round-timeout", "fed", 3600.0, "Seconds the server waits for replies in a round.", check=_pos, rule="> 0"),
    _k("central-eval", "fed", True, "Evaluate the global model on the server's test pool after every round."),
    _k("genotype-k", "fed", 2, "Inputs kept per node when deriving the genotype.", check=_pos, rule="> 0"),
    _k("fault-partitions", "fed", "", "Fault injection for robustness tests: comma-separated partition ids whose train call raises."),
    # --- attack: the eavesdropper and ADRA (attacks/adra, docs/adra.md) --------------
    _k("eavesdrop", "attack", False, "Wrap the server's strategy with the eavesdropper: record each client's alpha before/after its round (captures/), attack it, write leakage/."),
    _k("attack", "attack", "adra", "Attack run on every capture, by name (attacks.ATTACKS).", choices=("adra",)),
    _k("attack-online", "attack", True, "Attack captures while the run goes on (worker processes) and report at its end. Off: only record captures; attack later with python -m attacks.adra RUN_DIR."),
    _k("attack-workers", "attack", 1, "Worker processes attacking captures during the run (0: attack in the server process after the last round).", check=_nonneg, rule=">= 0"),
    _k("attack-identifiability", "attack", True, "Score each capture's identifiability (rank of d(alpha-gradient)/dx at the true batch over the input size; costs about one attack iteration per input pixel)."),
    _k("alpha-pattern", "attack", "^alpha", "Regular expression (re.search) naming the alpha arrays among a message's arrays; the rest is theta."),
    _k("adra-mode", "attack", "strong", "paper: L2 matching of the raw gradient over a dummy image and soft label, kappa denoise (Li et al. 2024). strong: the known client optimizer unrolled, cosine distance, label search, TV/box priors, restarts.", choices=("paper", "strong")),
    _k("knows-weights", "attack", True, "The attacker uses the server's theta_t1 (on the wire when share-weights). Off, or when no theta was sent: surrogate theta from U(-bound, bound)."),
    _k("surrogate-draws", "attack", 1, "Surrogate theta draws whose matching losses are averaged (when theta is not known).", check=_pos, rule="> 0"),
    _k("adra-iterations", "attack", 300, "Optimisation steps of the reconstruction (strong: per label hypothesis stage schedule in docs/adra.md).", check=_pos, rule="> 0"),
    _k("adra-restarts", "attack", 2, "strong: random restarts per label hypothesis; the best gradient match is kept (paper: 1).", check=_pos, rule="> 0"),
    _k("adra-optimizer", "attack", "auto", "Optimiser of the dummy: adam, lbfgs, or auto (paper: lbfgs as DLG; strong: adam).", choices=("auto", "adam", "lbfgs")),
    _k("adra-lr", "attack", 0.1, "Learning rate of the dummy's optimiser (adam; lbfgs uses 1 with a line search).", check=_pos, rule="> 0"),
    _k("adra-distance", "attack", "cosine", "strong: distance between observed and predicted delta-alpha: cosine, l2 (scale-aware, normalised by the observed norm).", choices=("cosine", "l2")),
    _k("adra-init", "attack", "aux", "strong: starting points: aux (the attacker's aux images whose predicted update best matches, a learned prior; labels inferred from them) or noise (uniform noise, every label tried).", choices=("aux", "noise")),
    _k("adra-labels", "attack", "auto", "strong: labels: try-all (every class per sample, B=1), joint (soft labels optimised with the images), auto (try-all when one sample per step, else joint).", choices=("auto", "try-all", "joint")),
    _k("adra-unroll", "attack", True, "strong: replay the client's known local procedure (every alpha step, the optimizer's state) instead of reading delta-alpha as one gradient."),
    _k("adra-tv", "attack", 0.02, "strong: weight of the total-variation prior.", check=_nonneg, rule=">= 0"),
    _k("adra-prior", "attack", "none", "strong: learned prior from the attacker's aux pool: none, or pca (optimise coefficients of its principal components).", choices=("none", "pca")),
    _k("adra-prior-components", "attack", 12, "strong: principal components of the pca prior.", check=_pos, rule="> 0"),
    _k("adra-kappa", "attack", 0.96, "paper: denoise, pixels above kappa (of 1; the paper's 245/255) are set to 0.", check=_unit, rule="in (0, 1]"),
)
# fmt: on

KEY_BY_NAME: dict[str, Key] = {k.name: k for k in KEYS}
GROUP_KEYS: dict[str, tuple[Key, ...]] = {}
for _key in KEYS:
    GROUP_KEYS.setdefault(_key.group, ())
    GROUP_KEYS[_key.group] += (_key,)


def _group_dataclass(group: str) -> type:
    fields = [(k.field, k.kind, dataclasses.field(default=k.default)) for k in GROUP_KEYS[group]]
    cls = dataclasses.make_dataclass(f"{group.capitalize()}Config", fields, frozen=True)
    cls.__doc__ = f"Frozen settings of the '{group}' group (see fednas.config.KEYS)."
    return cls


GROUPS: tuple[str, ...] = tuple(GROUP_KEYS)
SECTION_CLASSES: dict[str, type] = {group: _group_dataclass(group) for group in GROUPS}
SpaceConfig = SECTION_CLASSES["space"]
DataConfig = SECTION_CLASSES["data"]
SearchConfig = SECTION_CLASSES["search"]
FedConfig = SECTION_CLASSES["fed"]


@dataclass(frozen=True)
class _ConfigBase:
    def flat(self) -> dict[str, Any]:
        """Return the flat ``{hyphenated-key: value}`` form (round-trips through parse)."""
        return {
            key.name: getattr(getattr(self, group), key.field)
            for group in GROUPS
            for key in GROUP_KEYS[group]
        }

    def replace(self, **overrides: Any) -> Config:
        """Return a copy with some keys changed, given by field name (validated)."""
        return parse_config({**self.flat(), **{k.replace("_", "-"): v for k, v in overrides.items()}})


# One frozen section per group: ``cfg.space.nodes``, ``cfg.search.alpha_lr``, ...
Config = dataclasses.make_dataclass(
    "Config", [(group, SECTION_CLASSES[group]) for group in GROUPS], bases=(_ConfigBase,), frozen=True
)
Config.__doc__ = "The whole run configuration, one frozen section per key group."


def _coerce(key: Key, value: Any) -> tuple[Any, str | None]:
    kind = key.kind
    if kind is bool:
        if isinstance(value, bool):
            return value, None
        return value, f"'{key.name}' must be true or false, got {value!r}"
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value, None
        if isinstance(value, float) and value.is_integer():
            return int(value), None
        return value, f"'{key.name}' must be an integer, got {value!r}"
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value), None
        return value, f"'{key.name}' must be a number, got {value!r}"
    if isinstance(value, str):
        return value, None
    return value, f"'{key.name}' must be a string, got {value!r}"


def _check(key: Key, value: Any) -> str | None:
    if key.choices is not None and value not in key.choices:
        allowed = ", ".join(map(str, key.choices))
        return f"'{key.name}' = {value!r} is not allowed; choose one of: {allowed}"
    if key.check is not None and not key.check(value):
        return f"'{key.name}' = {value!r} is out of range; it must be {key.rule}"
    return None


def _cross_checks(flat: Mapping[str, Any]) -> list[str]:
    errors = []
    pools = ("clients-fraction", "holdout-fraction", "aux-fraction", "test-fraction")
    total = sum(float(flat[p]) for p in pools)
    if total > 1.0 + 1e-9:
        errors.append(
            f"'clients-fraction' + 'holdout-fraction' + 'aux-fraction' + 'test-fraction' = "
            f"{total:.3f}; the pools must not overlap, so the sum must be <= 1"
        )
    for part in str(flat["fault-partitions"]).split(","):
        if part.strip() and not part.strip().isdigit():
            errors.append(
                f"'fault-partitions' = {flat['fault-partitions']!r}: expected comma-separated "
                "partition ids such as '0,2'"
            )
            break
    return errors


def parse_config(raw: Mapping[str, Any] | None = None, *, allow_unknown: bool = False) -> Config:
    """Validate a flat mapping of hyphenated keys and build a :class:`Config`.

    Parameters
    ----------
    raw : mapping, optional
        Keys to set; missing keys take the schema's defaults.
    allow_unknown : bool
        Ignore keys the schema does not know instead of failing (for apps that put
        their own keys beside ours).

    Raises
    ------
    ConfigError
        Listing every unknown key (with the closest known names), wrong type and
        out-of-range value.
    """
    raw = dict(raw or {})
    errors: list[str] = []
    flat: dict[str, Any] = {}
    for name, value in raw.items():
        key = KEY_BY_NAME.get(name)
        if key is None:
            if not allow_unknown:
                near = difflib.get_close_matches(name, KEY_BY_NAME, n=3)
                hint = f"; did you mean {', '.join(repr(n) for n in near)}?" if near else ""
                errors.append(f"unknown config key '{name}'{hint} (python -m fednas.config lists all keys)")
            continue
        value, err = _coerce(key, value)
        err = err or _check(key, value)
        if err:
            errors.append(err)
        flat[name] = value
    full = {k.name: flat.get(k.name, k.default) for k in KEYS}
    if not errors:
        errors.extend(_cross_checks(full))
    if errors:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(errors))
    sections = {
        group: cls(**{k.field: full[k.name] for k in GROUP_KEYS[group]})
        for group, cls in SECTION_CLASSES.items()
    }
    return Config(**sections)


def fault_partitions(cfg: Config) -> frozenset[int]:
    """Partition ids that the fault-injection knob makes raise."""
    return frozenset(int(p) for p in cfg.fed.fault_partitions.split(",") if p.strip())


def search_to_record(search: Any) -> dict[str, Any]:
    """The local-search settings as the flat dict the server sends in its train config."""
    return {k.name: getattr(search, k.field) for k in GROUP_KEYS["search"]}


def search_from_record(record: Mapping[str, Any]) -> Any:
    """Rebuild :class:`SearchConfig` from a train config (unknown keys ignored)."""
    names = {k.name for k in GROUP_KEYS["search"]}
    return parse_config({k: v for k, v in record.items() if k in names}).search


def toml_value(value: Any) -> str:
    """Write a scalar as TOML does (``true``, ``"text"``, ``0.001``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def markdown_table() -> str:
    """The config reference as a Markdown table (key, default, meaning)."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for key in KEYS:
        default = toml_value(key.default)
        meaning = key.help
        if key.choices:
            meaning += " One of: " + ", ".join(f"`{c}`" for c in key.choices) + "."
        elif key.rule:
            meaning += f" Must be {key.rule}."
        lines.append(f"| `{key.name}` | `{default}` | {meaning} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
