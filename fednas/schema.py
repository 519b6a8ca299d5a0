"""The plugin contract's files, checked: a versioned schema for captures, truth records and the manifest.

Three kinds of JSON cross from one program to another: the eavesdropper's capture records
and manifest (``fednas.captures``), and the clients' truth records (``fednas.truth``),
which another Flower app's ClientApp may write itself. Each carries ``schema-version``
(:data:`SCHEMA_VERSION`) when written by this version; a file without it is an older run's
and is read as version 0 (the same fields, older names accepted). A file that breaks the
schema raises :class:`SchemaError`, which names the file and the field at fault, so that
a reader can skip it with that reason or stop before any work.

The wire names a ClientApp tags its reply with live here too (:data:`CLIENT_RECORD`,
:data:`PARTITION_KEY`): plain strings, so that this package still knows nothing of Flower.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
VERSION_KEY = "schema-version"

# A reply's ConfigRecord holding the client's partition-id: how a capture is matched to the
# client's truth records and how the report tells clients apart.
CLIENT_RECORD = "client"
PARTITION_KEY = "partition-id"


class SchemaError(ValueError):
    """A contract file that cannot be read or breaks the schema; names the file and the field."""

    def __init__(self, path: str | Path | None, field: str | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        self.field = field
        self.problem = problem
        where = self.path or "<record>"
        super().__init__(f"{where}: {problem}" if field is None else f"{where}: field {field!r}: {problem}")


def read_json(path: str | Path) -> dict[str, Any]:
    """A contract file's JSON object; a missing, truncated or non-object file is a :class:`SchemaError`."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise SchemaError(path, None, f"cannot be read ({type(err).__name__}: {err.strerror or err})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        what = "truncated or not JSON" if text.strip() else "empty"
        raise SchemaError(path, None, f"{what} ({err.msg} at line {err.lineno}, column {err.colno})") from None
    if not isinstance(data, dict):
        raise SchemaError(path, None, f"expected a JSON object, found {type(data).__name__}")
    return data


def version_of(data: Mapping[str, Any], path: str | Path | None) -> int:
    """The record's schema version (0: written before versions existed); newer than this code: an error."""
    version = data.get(VERSION_KEY, 0)
    if not is_int(version) or version < 0:
        raise SchemaError(path, VERSION_KEY, f"expected a non-negative integer, found {version!r}")
    if version > SCHEMA_VERSION:
        raise SchemaError(path, VERSION_KEY, f"version {version} is newer than this reader's ({SCHEMA_VERSION}): "
                                             "update fednas-privacy")
    return int(version)


def is_int(value: Any) -> bool:
    """An integer that is not a bool (JSON's true is no index)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Fields:
    """Typed access to one record's fields, every error naming the file and the field."""

    def __init__(self, data: Mapping[str, Any], path: str | Path | None) -> None:
        self.data, self.path = data, path

    def fail(self, field: str, problem: str) -> SchemaError:
        return SchemaError(self.path, field, problem)

    def get(self, field: str, check: Callable[[Any], bool], expected: str, *, required: bool = False,
            default: Any = None) -> Any:
        """``data[field]`` when ``check`` accepts it; missing: ``default`` (or an error when required);
        null: None, unless required."""
        if field not in self.data:
            if required:
                raise self.fail(field, f"missing (expected {expected})")
            return default
        value = self.data[field]
        if value is None and not required:
            return None
        if not check(value):
            raise self.fail(field, f"expected {expected}, found {_show(value)}")
        return value

    def integer(self, field: str, *, required: bool = False, minimum: int | None = None) -> int | None:
        value = self.get(field, is_int, "an integer", required=required)
        if value is not None and minimum is not None and value < minimum:
            raise self.fail(field, f"expected an integer >= {minimum}, found {value}")
        return value

    def text(self, field: str, *, required: bool = False, default: str | None = None) -> str | None:
        return self.get(field, lambda v: isinstance(v, str), "a string", required=required, default=default)

    def mapping(self, field: str) -> dict[str, Any]:
        return dict(self.get(field, lambda v: isinstance(v, dict), "an object", default={}) or {})

    def index_list(self, field: str) -> list[int] | None:
        """A list of non-negative integers (or None when absent)."""
        value = self.get(field, lambda v: isinstance(v, list), "a list of non-negative integers")
        if value is None:
            return None
        bad = [v for v in value if not is_int(v) or v < 0]
        if bad:
            raise self.fail(field, f"expected a list of non-negative integers, found {_show(bad[0])} in it")
        return [int(v) for v in value]


def _show(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, default=repr)
    return text if len(text) <= limit else text[: limit - 3] + "..."
