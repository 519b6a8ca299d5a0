"""``key=value`` overrides from a command line, read once for every CLI of the project.

``python -m simulations run --set``, ``python -m attacks.adra --set`` and ``python -m
attacks.amia --set`` all take ``key=value`` items: values are TOML scalars (``3``, ``0.5``,
``true``, ``"x"``), bare words are strings, and a string key of the schema keeps its text
as typed (``fault-partitions=1`` means ``"1"``, not ``1``). Validation is
:func:`fednas.config.parse_config`'s job; this module only reads.
"""

from __future__ import annotations

import argparse
import logging
import tomllib
import warnings
from collections.abc import Iterable
from typing import Any

from fednas.config import KEY_BY_NAME, ConfigError, canonical_keys

log = logging.getLogger(__name__)


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
    """Every ``key=value`` item, in order (a later one wins); an old key name as its new one."""
    return canonical_keys(dict(parse_override(item) for item in items), "--set")


class DeprecatedOption(argparse.Action):
    """An old command-line option kept as an alias: stores into the new option's ``dest``
    and warns, naming the new option (``new="--dag-nodes"`` in ``add_argument``)."""

    def __init__(self, option_strings: list[str], dest: str, new: str = "", **kwargs: Any) -> None:
        self.new = new
        kwargs.setdefault("help", argparse.SUPPRESS)
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        message = f"option {option_string} is deprecated: use {self.new}"
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        log.warning("%s", message)
        setattr(namespace, self.dest, values)


def dag_nodes_option(parser: argparse.ArgumentParser, **kwargs: Any) -> None:
    """``--dag-nodes`` (P of the dag space) with ``--nodes`` as its deprecated alias."""
    parser.add_argument("--dag-nodes", dest="dag_nodes", **kwargs)
    alias = {k: v for k, v in kwargs.items() if k in ("type", "nargs")}
    parser.add_argument("--nodes", dest="dag_nodes", action=DeprecatedOption, new="--dag-nodes", **alias)
