"""What a run writes: ``config.json``, ``rounds.csv``, ``genotype.json``, ``summary.json``.

Framework-free: the ServerApp feeds it plain dicts. Every write is atomic and happens as
soon as the information exists, so a run that dies leaves the rounds it finished readable.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from fednas import __version__
from fednas.config import Config, ConfigError, parse_config
from fednas.data import resolve_path
from fednas.rundir import (atomic_save_npz, atomic_write_csv, atomic_write_json, federation_size, new_run_dir,
                           read_rows)

log = logging.getLogger(__name__)

ROUND_COLUMNS = (
    "round", "sampled", "replied", "failed", "rejected", "aggregated", "theta-loss", "theta-acc", "alpha-loss",
    "alpha-acc", "eval-loss", "eval-acc", "central-loss", "central-acc", "alpha-entropy", "alpha-step", "alpha-drift",
    "param-free-share", "genotype-changes", "genotype", "seconds", "rejections",
)


def resolve_run_dir(cfg: Config) -> Path:
    """The run directory the config asks for, created now (absolute)."""
    if cfg.run.run_dir:
        path = Path(cfg.run.run_dir).expanduser()
        if not path.is_absolute():
            raise ValueError(
                f"'run-dir' = {cfg.run.run_dir!r} must be an absolute path: the ServerApp runs from an "
                "installed copy with an unrelated working directory"
            )
        path.mkdir(parents=True, exist_ok=True)
        return path
    return new_run_dir(resolve_path(cfg.run.output_dir), cfg.run.run_name, cfg.run.seed)


class RunLog:
    """Collects a run's per-round rows and final results and writes them to the run dir."""

    def __init__(self, cfg: Config, run_dir: Path, extra: dict[str, Any] | None = None) -> None:
        self.cfg, self.dir = cfg, run_dir
        self.rows: list[dict[str, Any]] = []
        self.genotypes: list[dict[str, Any]] = []
        self.t0 = time.time()
        self.summary: dict[str, Any] = {"status": "running", "run-dir": str(run_dir)}
        atomic_write_json(run_dir / "config.json", {
            "config": cfg.flat(),
            "federation": extra or {},
            "versions": {"fednas": __version__, "python": platform.python_version(), **_versions()},
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        })
        self.write_summary()

    def add_round(self, row: dict[str, Any], genotype: Any) -> None:
        """Append one round's row (and genotype) and rewrite ``rounds.csv``/``genotype.json``."""
        row = {**row, "genotype": genotype.pretty().replace("\n", "; ")}
        self.rows.append(row)
        self.genotypes.append({"round": row["round"], **genotype.to_dict()})
        cols = list(ROUND_COLUMNS) + [k for k in row if k not in ROUND_COLUMNS]
        atomic_write_csv(self.dir / "rounds.csv", self.rows, cols)
        atomic_write_json(self.dir / "genotype.json", {"final": genotype.to_dict(), "pretty": genotype.pretty(),
                                                       "rounds": self.genotypes})

    def finish(self, arrays: dict[str, np.ndarray], **fields: Any) -> None:
        """Save the final global arrays (``model.npz``) and a completed summary."""
        atomic_save_npz(self.dir / "model.npz", arrays)
        self.summary.update({k.replace("_", "-"): v for k, v in fields.items()})
        self.summary["status"] = "completed"
        self.write_summary()

    def fail(self, error: BaseException) -> None:
        self.summary.update({"status": "failed", "error": f"{type(error).__name__}: {error}"})
        self.write_summary()

    def write_summary(self) -> None:
        last = self.rows[-1] if self.rows else {}
        self.summary.update({
            "rounds-completed": len(self.rows),
            "failures": int(sum(r.get("failed", 0) for r in self.rows)),
            "rejected": int(sum(r.get("rejected", 0) for r in self.rows)),
            "final-central-acc": last.get("central-acc"),
            "final-eval-acc": last.get("eval-acc"),
            "final-alpha-entropy": last.get("alpha-entropy"),
            "final-param-free-share": last.get("param-free-share"),
            "wall-seconds": round(time.time() - self.t0, 3),
        })
        atomic_write_json(self.dir / "summary.json", self.summary)


def read_run_config(cfg_file: Path, overrides: dict[str, Any] | None, overridable: set[str] | frozenset[str],
                    error: type[Exception], fixed: str = "are fixed by",
                    only: str = "only these keys can be set here") -> tuple[Config, int]:
    """A finished run's ``config.json`` with ``overrides`` (only keys in ``overridable``),
    and its number of clients; problems raise ``error`` naming the file and the keys."""
    bad = sorted(set(overrides or {}) - set(overridable))
    if bad:
        raise error(f"keys {bad} {fixed} {cfg_file}; {only}: {', '.join(sorted(overridable))}")
    meta = json.loads(cfg_file.read_text())
    try:
        cfg = parse_config({**meta["config"], **(overrides or {})})
    except ConfigError as err:
        raise error(f"{cfg_file} with the overrides: {err}") from None
    supernodes = federation_size(meta)
    if supernodes is None:
        raise error(f"{cfg_file} lacks federation.supernodes (the number of clients), needed to rebuild their data")
    return cfg, supernodes


def mark_interrupted(run_dir: str | Path, signal_name: str) -> dict[str, Any]:
    """Record in ``summary.json`` that the run was stopped by a signal, and after which round.

    Called once the run's processes are gone (nothing can overwrite it). The last finished
    round is the last row of ``rounds.csv`` (written as each round ends). A summary that
    already says ``completed`` is left as it is: the run finished before it was stopped.
    """
    run_dir = Path(run_dir)
    path = run_dir / "summary.json"
    summary: dict[str, Any] = {"run-dir": str(run_dir)}
    if path.is_file():
        try:
            summary = json.loads(path.read_text())
        except (OSError, ValueError) as err:  # half a summary is no reason to lose the status
            log.warning("could not read %s: %s", path, err)
    if summary.get("status") == "completed":
        return summary
    rows = read_rows(run_dir / "rounds.csv") if (run_dir / "rounds.csv").is_file() else []
    last = int(rows[-1]["round"]) if rows else 0
    if summary.get("status") not in (None, "running"):  # e.g. "failed" as the stop reached it
        summary["status-before-interrupt"] = summary["status"]
    summary.update({"status": "interrupted", "signal": signal_name, "rounds-completed": len(rows),
                    "last-finished-round": last, "interrupted-at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    atomic_write_json(path, summary)
    return summary


def _versions() -> dict[str, str]:
    out = {}
    for mod in ("torch", "flwr", "numpy"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            continue
    return out
