"""The run directory: atomic file writes and where each output goes.

Every file is written to a temporary file beside its target and renamed into place, so a
run that dies leaves each file either complete or absent, never half-written.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # JSON has no NaN; readers see null
    if isinstance(obj, Path):
        return str(obj)
    return obj


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(_jsonable(obj), indent=2, sort_keys=False) + "\n")


def atomic_write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> Path:
    """Write rows (dicts) as CSV; columns default to the union of keys in first-seen order."""
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(row.get(k)) for k in columns})
    return atomic_write_text(path, buf.getvalue())


def _csv_value(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"  # nan, inf and -inf as themselves (an ε without noise is inf, not nan)
    return v


def atomic_save_npz(path: str | Path, arrays: Mapping[str, Any]) -> Path:
    """Save ``{name: array}`` as an ``.npz`` atomically (names kept as given)."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return atomic_write_bytes(path, buf.getvalue())


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def new_run_dir(root: str | Path, name: str = "", seed: int | None = None) -> Path:
    """Create a fresh directory ``<root>/<timestamp>[-name][-sSEED]`` (suffixed, never reused)."""
    root = Path(root)
    stem = time.strftime("%Y%m%d-%H%M%S")
    if name:
        stem += f"-{name}"
    if seed is not None:
        stem += f"-s{seed}"
    for n in range(1000):
        path = root / (stem if n == 0 else f"{stem}-{n}")
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path.resolve()
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a new run directory under {root}")


def unique_path(path: str | Path) -> Path:
    """``path`` if free, else ``path`` with ``-1``, ``-2``... before the suffix (never overwrite)."""
    path = Path(path)
    if not path.exists():
        return path
    for n in range(1, 10000):
        cand = path.with_name(f"{path.stem}-{n}{path.suffix}")
        if not cand.exists():
            return cand
    raise FileExistsError(f"no free name beside {path}")


def read_rows(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def federation_size(meta: Mapping[str, Any]) -> int | None:
    """The number of SuperNodes (clients) a run's ``config.json`` records, or None.

    ``federation.supernodes``; runs written before the rename recorded it as ``nodes``.
    """
    federation = meta.get("federation") or {}
    size = federation.get("supernodes", federation.get("nodes"))
    return size if isinstance(size, int) and not isinstance(size, bool) and size >= 1 else None


# an absolute path in text: not the tail of a word, a URL or a relative path; glob characters
# (``*``, ``?``, ``[...]``) are part of a path, so a pattern such as ``amia/*/P32`` stays whole
_ABSOLUTE = re.compile(r"(?<![\w.~/:\\…*?\]-])/(?:[\w.@+*?\[\]-]+/)*[\w.@+*?\[\]-]+/?")


def portable_paths(text: str, root: str | Path) -> str:
    """``text`` with every absolute path made portable, for a file meant to be published:
    a path inside ``root`` relative to it, any other cut to ``…/`` and its last parts below
    its top folder (``/tmp/x`` reads ``…/x``): no folder of the machine that made it."""
    root = Path(root).resolve()

    def sub(m: re.Match) -> str:
        path = Path(m.group(0))
        if path == root or path.is_relative_to(root):
            return path.relative_to(root).as_posix()
        parts = path.parts
        return "…/" + "/".join(parts[max(2, len(parts) - 2):]) if len(parts) > 2 else "…"

    return _ABSOLUTE.sub(sub, text)
