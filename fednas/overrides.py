"""``key=value`` overrides from a command line, read once for every CLI of the project.

``python -m simulations run --set``, ``python -m attacks.adra --set`` and ``python -m
attacks.amia --set`` all take ``key=value`` items: values are TOML scalars (``3``, ``0.5``,
``true``, ``"x"``), bare words are strings, and a string key of the schema keeps its text
as typed (``fault-partitions=1`` means ``"1"``, not ``1``). Validation is
:func:`fednas.config.parse_config`'s job; this module only reads.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from typing import Any

from fednas.config import KEY_BY_NAME, ConfigError


def parse_value(text: str) -> Any:
    """A value as TOML reads it (``3``, ``0.5``, ``true``, ``"x"``); bare words are strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_override(item: str) -> tuple[str, Any]:
    """One ``key=value`` item as (key, value); a string key of the schema keeps its text."""
    key, sep, value = item.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected key=value")
    schema = KEY_BY_NAME.get(key)
    if schema is not None and schema.kind is str:
        return key, value.strip('"')
    return key, parse_value(value)


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """Every ``key=value`` item, in order (a later one wins)."""
    return dict(parse_override(item) for item in items)
