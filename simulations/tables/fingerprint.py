"""What engine computed a cell: a hash of the project's source, the library versions, the commit.

Every task's result records :func:`engine` as it was when the harness started. A result
whose source hash or library versions differ from the checkout's is stale: the harness
computes it again (``runner.is_done``), and ``tables.md`` marks each row's commit and
whether it still matches. The source is every ``.py`` file of the packages a cell runs
(``fednas``, ``attacks``, ``server``, ``clients``, and ``simulations`` with the harness
itself) and ``pyproject.toml`` (the config defaults), hashed in sorted path order: any
change to code a cell may have run makes the cell stale, a change to docs or tests does not.
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[2]
PACKAGES = ("fednas", "attacks", "server", "clients", "simulations")
FILES = ("pyproject.toml",)
LIBRARIES = ("torch", "flwr", "numpy", "scipy", "scikit-learn", "opacus", "ray", "torchvision")


def source_files(root: Path = PROJECT) -> list[Path]:
    """The files the source hash covers, in the order they are hashed."""
    files = [p for pkg in PACKAGES for p in (root / pkg).rglob("*.py") if "__pycache__" not in p.parts]
    files += [root / f for f in FILES if (root / f).is_file()]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def source_hash(root: Path = PROJECT) -> str:
    """SHA-256 over each source file's path (relative to ``root``) and bytes."""
    h = hashlib.sha256()
    for path in source_files(root):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def libraries() -> dict[str, str]:
    """Installed versions of the libraries a cell runs on (``absent`` when not installed), and Python's."""
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()


def dirty(root: Path = PROJECT) -> list[str]:
    """What makes the checkout differ from its commit: changed tracked files anywhere, and
    untracked (not ignored) files among the hashed source. Empty: clean."""
    try:
        tracked = _git(root, "status", "--porcelain", "--untracked-files=no").splitlines()
        untracked = _git(root, "status", "--porcelain", "--untracked-files=all", "--", *PACKAGES, *FILES).splitlines()
    except (OSError, subprocess.CalledProcessError) as err:
        return [f"git status failed: {err}"]
    return tracked + [u for u in untracked if u.startswith("??")]


def commit(root: Path = PROJECT) -> str:
    """The checkout's short commit hash, ``-dirty`` when :func:`dirty` finds anything."""
    try:
        rev = _git(root, "rev-parse", "--short", "HEAD")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("-dirty" if dirty(root) else "")


def engine(root: Path = PROJECT) -> dict[str, Any]:
    """The fingerprint a result records: source hash, library versions, commit."""
    return {"source": source_hash(root), "libraries": libraries(), "commit": commit(root)}


def matches(recorded: dict[str, Any] | None, now: dict[str, Any]) -> bool:
    """Whether a result's recorded engine is the current one (same source and libraries)."""
    return bool(recorded) and recorded.get("source") == now["source"] and recorded.get("libraries") == now["libraries"]
