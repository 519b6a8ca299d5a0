"""The whole schema put together, and the one parser of flat key mappings.

:func:`parse_config` turns a flat mapping (Flower's ``context.run_config``, an experiment
TOML, ``--set`` overrides) into a :class:`Config`, one frozen section per group, and
rejects unknown keys, wrong types, out-of-range values and settings that contradict each
other, with messages that name the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fednas.config import amia, attack, data, defense, derive, dp, fault, fed, paradigm, run, search, space
from fednas.config.schema import ConfigError, Key

log = logging.getLogger(__name__)

# Every group's keys, in the order of the reference table and of ``Config``'s sections.
KEYS: tuple[Key, ...] = (run.KEYS + space.KEYS + data.KEYS + search.KEYS + fed.KEYS + fault.KEYS + dp.KEYS
                         + defense.KEYS + amia.KEYS + derive.KEYS + attack.KEYS + paradigm.KEYS)
KEY_BY_NAME: dict[str, Key] = {k.name: k for k in KEYS}
GROUP_KEYS: dict[str, tuple[Key, ...]] = {}
for _key in KEYS:
    GROUP_KEYS.setdefault(_key.group, ())
    GROUP_KEYS[_key.group] += (_key,)
GROUPS: tuple[str, ...] = tuple(GROUP_KEYS)

# Old names of renamed keys (old -> new): still read, with a warning naming the new key, so
# that older pyproject files, experiment TOMLs, --set items and run directories keep working.
# "nodes" also meant the federation's size and "steps" the local steps; the new names cannot.
RENAMED_KEYS = {"nodes": "dag-nodes", "steps": "cell-nodes"}


def _group_dataclass(group: str) -> type:
    fields = [(k.field, k.kind, dataclasses.field(default=k.default)) for k in GROUP_KEYS[group]]
    cls = dataclasses.make_dataclass(f"{group.capitalize()}Config", fields, frozen=True)
    cls.__doc__ = f"Frozen settings of the '{group}' group (see fednas.config.KEYS)."
    return cls


SECTION_CLASSES: dict[str, type] = {group: _group_dataclass(group) for group in GROUPS}
SpaceConfig = SECTION_CLASSES["space"]
SearchConfig = SECTION_CLASSES["search"]


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
        changed = canonical_keys({k.replace("_", "-"): v for k, v in overrides.items()})
        return parse_config({**self.flat(), **changed})


# One frozen section per group: ``cfg.space.dag_nodes``, ``cfg.search.alpha_lr``, ...
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


# Checks across keys, each group's own (a full flat mapping in, messages out).
CROSS_CHECKS = (data.data_checks, fed.fed_checks, fault.fault_checks, dp.dp_checks, derive.derive_checks,
                amia.amia_checks, attack.attack_checks, paradigm.paradigm_checks)


def canonical_keys(raw: Mapping[str, Any], source: str = "") -> dict[str, Any]:
    """``raw`` with every old key name (:data:`RENAMED_KEYS`) replaced by its new one.

    Each old name found is reported (a :class:`DeprecationWarning` and a logged warning,
    both naming the new key). Call it once per source (a file, the ``--set`` items) before
    merging sources: an old key in one source may override the new key of another.

    Raises
    ------
    ConfigError
        When one mapping gives both the old and the new name of a key.
    """
    out = dict(raw)
    where = f" (in {source})" if source else ""
    both = [f"'{old}' and '{new}'" for old, new in RENAMED_KEYS.items() if old in out and new in out]
    if both:
        raise ConfigError(f"both names of a renamed key given{where}: {'; '.join(both)}; keep only the new one")
    for old, new in RENAMED_KEYS.items():
        if old in out:
            message = f"config key '{old}' is deprecated{where}: use '{new}'"
            warnings.warn(message, DeprecationWarning, stacklevel=3)
            log.warning("%s", message)
            out = {(new if k == old else k): v for k, v in out.items()}
    return out


def parse_config(raw: Mapping[str, Any] | None = None, *, allow_unknown: bool = False) -> Config:
    """Validate a flat mapping of hyphenated keys and build a :class:`Config`.

    Parameters
    ----------
    raw : mapping, optional
        Keys to set; missing keys take the schema's defaults.
    allow_unknown : bool
        Ignore keys the schema does not know instead of failing (for apps that put
        their own keys beside ours). The old names of renamed keys are then taken as
        such an app's own keys, not as ours.

    Raises
    ------
    ConfigError
        Listing every unknown key (with the closest known names), wrong type and
        out-of-range value, and a key given under both its old and new name.
    """
    raw = dict(raw or {}) if allow_unknown else canonical_keys(raw or {})
    errors: list[str] = []
    flat: dict[str, Any] = {}
    for name, value in raw.items():
        key = KEY_BY_NAME.get(name)
        if key is None:
            if not allow_unknown:
                near = difflib.get_close_matches(name, [*KEY_BY_NAME, *RENAMED_KEYS], n=3)
                near = list(dict.fromkeys(RENAMED_KEYS.get(n, n) for n in near))  # an old name's new one
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
        for checks in CROSS_CHECKS:
            errors.extend(checks(full))
    if errors:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(errors))
    sections = {
        group: cls(**{k.field: full[k.name] for k in GROUP_KEYS[group]})
        for group, cls in SECTION_CLASSES.items()
    }
    return Config(**sections)


def sampled_per_round(fed: Any, num_clients: int) -> int:
    """Clients a round samples for training (as Flower's FedAvg samples them)."""
    return min(max(int(num_clients * fed.fraction_train), fed.min_train_clients), num_clients)


def check_against_federation(cfg: Config, num_clients: int) -> None:
    """What can only be checked once the federation's size is known, before anything runs.

    ``fault-partitions`` ids must exist (else they never fire); Bulyan needs 4·f + 3
    replies; MultiKrum cannot keep more replies than a round has.
    """
    errors = []
    outside = sorted(p for p in fault.fault_partitions(cfg) if p >= num_clients)
    if outside:
        errors.append(f"'fault-partitions' = {cfg.fault.fault_partitions!r} names partition(s) {outside}, but "
                      f"the federation has {num_clients} clients (partition ids 0-{num_clients - 1})")
    sampled, f = sampled_per_round(cfg.fed, num_clients), cfg.fed.byzantine_clients
    if cfg.fed.strategy == "bulyan" and sampled < 4 * f + 3:
        errors.append(f"'strategy' = \"bulyan\" with 'byzantine-clients' = {f} needs at least {4 * f + 3} "
                      f"replies a round (4f + 3); the federation samples {sampled}")
    if cfg.fed.strategy == "multikrum" and cfg.fed.krum_select > sampled:
        errors.append(f"'krum-select' = {cfg.fed.krum_select} is more than the {sampled} clients a round samples")
    if errors:
        raise ConfigError("invalid configuration for this federation:\n  - " + "\n  - ".join(errors))


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
