"""What a configuration key is: name, group, default, meaning, allowed values.

Each group's module (``fednas.config.run``, ``.space``, ...) lists its keys with
:func:`keys_of`; :mod:`fednas.config.parser` puts them together and parses.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any


class ConfigError(ValueError):
    """A configuration problem; the message names every offending key."""


@dataclass(frozen=True)
class Key:
    """One configuration key of the schema."""

    name: str
    group: str
    default: Any
    help: str
    # allowed values: a tuple, or a fednas.registry.Registry whose names are read at each check
    # (a name registered after the schema was built is accepted)
    choices: Collection[Any] | None = None
    check: Callable[[Any], bool] | None = None
    rule: str = ""  # human-readable form of ``check``

    @property
    def kind(self) -> type:
        return type(self.default)

    @property
    def field(self) -> str:
        return self.name.replace("-", "_")


def keys_of(group: str) -> Callable[..., Key]:
    """A maker of ``group``'s keys: ``_k(name, default, help, choices=, check=, rule=)``."""

    def make(name: str, default: Any, help: str, choices: Collection[Any] | None = None,  # noqa: A002
             check: Callable[[Any], bool] | None = None, rule: str = "") -> Key:
        return Key(name, group, default, help, choices, check, rule)

    return make


def positive(x: Any) -> bool:
    return x > 0


def non_negative(x: Any) -> bool:
    return x >= 0


def in_unit(x: Any) -> bool:
    """In (0, 1]."""
    return 0.0 < x <= 1.0


def in_unit0(x: Any) -> bool:
    """In [0, 1)."""
    return 0.0 <= x < 1.0


def split_names(text: str) -> list[str]:
    """A comma-separated list key as its names (blanks dropped)."""
    return [p.strip() for p in str(text).split(",") if p.strip()]


def number_list(text: str, kind: type = int) -> list:
    """A comma-separated list key as numbers (raises ValueError on a bad item)."""
    return [kind(p) for p in split_names(text)]
