"""The truth of a simulation: which D^α samples each client's α steps used. Never on the wire.

In a simulation every client writes its own record, after its local search and before it
replies, to ``<run-dir>/truth/r<round>-p<partition-id>.json``; the leakage report's scoring
reads it back through :func:`read_truth`, the only reader. The record reveals the samples
behind Δα (and, under DP-SGD, the Poisson sample whose secrecy the privacy guarantee relies
on), so it never crosses the protocol: the eavesdropper, the server's strategy and an
attack see none of it. It needs a filesystem the clients and the scorer share, which a
simulation has and a deployment does not: there ``write-truth`` is false and the leakage
report is unscored (:data:`UNSCORED_REASON`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fednas.rundir import atomic_write_json

log = logging.getLogger(__name__)

TRUTH_DIR = "truth"
UNSCORED_REASON = ("no truth for this capture: the clients keep which samples they used (write-truth = false, "
                   "as in every deployment), so the attack ran but cannot be scored")


def truth_path(run_dir: str | Path, server_round: int, partition_id: int) -> Path:
    """Where a client's record of one round lives."""
    return Path(run_dir) / TRUTH_DIR / f"r{int(server_round):03d}-p{int(partition_id)}.json"


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_truth(run_dir: str | Path, server_round: int, partition_id: int, record: Mapping[str, Any]) -> Path:
    """Write one client's record of one round (atomically) and return its path."""
    return atomic_write_json(truth_path(run_dir, server_round, partition_id), {k: _plain(v) for k, v in record.items()})


def read_truth(run_dir: str | Path, capture: Mapping[str, Any]) -> dict[str, Any] | None:
    """The record behind one capture (its JSON: ``round``, ``partition-id``, ``id``), or None.

    The one reader of the truth, for scoring. It also finds a record an older version
    stored under the capture's name (``truth/r003-n<node>.json``: the eavesdropper kept a
    reply's ``audit`` record), so older run directories still score.
    """
    candidates = []
    if capture.get("partition-id") is not None:
        candidates.append(truth_path(run_dir, int(capture["round"]), int(capture["partition-id"])))
    if capture.get("id"):
        candidates.append(Path(run_dir) / TRUTH_DIR / f"{capture['id']}.json")
    for path in candidates:
        if path.is_file():
            return json.loads(path.read_text())
    return None
