"""The capture store: what the eavesdropper saw, on disk, readable without Flower.

Layout under the run directory::

    captures/
      r003-n<node>.json       one capture: round, node, partition-id, train settings, reply
                               metrics, status, and the names of its array files
      r003-n<node>.npz        α_t2 (the reply's α), arrays named as on the wire
      sent-r003-<hash>.npz    what the server sent in the round (α_t1, and θ_t1 when sent);
                               stored once per distinct content, shared by the captures
    truth/                    which samples each client used, written by the clients
                               themselves in a simulation; neither written nor read here
                               (:mod:`fednas.truth`: only the scoring reads it).

Every file is written atomically, the capture's JSON last, so a capture exists exactly
when its JSON does. Loading returns plain numpy arrays and dicts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fednas.rundir import atomic_save_npz, atomic_write_json, load_npz

log = logging.getLogger(__name__)

CAPTURES_DIR = "captures"
_ID = re.compile(r"^r\d{3,}-n\d+$")


def capture_id(server_round: int, node_id: int) -> str:
    """The capture's name: round and destination node (``r003-n123``)."""
    return f"r{server_round:03d}-n{node_id}"


@dataclass(frozen=True)
class Capture:
    """One (round, client) as the eavesdropper saw it. Never the client's data.

    ``alpha_t1``/``theta_t1`` are what the server sent the node, ``alpha_t2`` what it
    replied; ``train_config`` is the train ConfigRecord the server sent (lr, local steps,
    B, optimizer, round); ``metrics`` the reply's MetricRecord (e.g. ``dp-epsilon``).
    ``status`` is ``ok`` or ``failed`` with a ``reason`` (e.g. a reply without α).
    """

    id: str
    round: int
    node_id: int
    partition_id: int | None
    alpha_t1: dict[str, np.ndarray]
    alpha_t2: dict[str, np.ndarray]
    theta_t1: dict[str, np.ndarray]
    train_config: dict[str, Any]
    metrics: dict[str, Any]
    status: str = "ok"
    reason: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def delta_alpha(self) -> dict[str, np.ndarray]:
        """α_t2 − α_t1 per array (float64)."""
        return {k: self.alpha_t2[k].astype(np.float64) - self.alpha_t1[k].astype(np.float64)
                for k in self.alpha_t1 if k in self.alpha_t2}


def split_arrays(arrays: Mapping[str, np.ndarray], pattern: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Split ``{name: array}`` into (α, θ) by a regular expression on the names."""
    rx = re.compile(pattern)
    alpha = {k: v for k, v in arrays.items() if rx.search(k)}
    theta = {k: v for k, v in arrays.items() if not rx.search(k)}
    return alpha, theta


def _digest(arrays: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha1()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(k.encode())
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:12]


def _prefixed(prefix: str, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {f"{prefix}/{k}": np.asarray(v) for k, v in arrays.items()}


def _unprefixed(prefix: str, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    n = len(prefix) + 1
    return {k[n:]: v for k, v in arrays.items() if k.startswith(prefix + "/")}


def _plain(value: Any) -> Any:
    """Flower record values (numpy scalars, lists, bytes) as JSON-friendly Python values."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


class CaptureStore:
    """Reads and writes the captures of one run directory (see the module docstring)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.dir = self.run_dir / CAPTURES_DIR
        self._sent: dict[tuple[int, str], str] = {}

    # ------------------------------------------------------------------ writing
    def write_sent(self, server_round: int, alpha: Mapping[str, np.ndarray], theta: Mapping[str, np.ndarray]) -> str:
        """Store what the server sent (once per distinct content); return the file name."""
        arrays = {**_prefixed("alpha", alpha), **_prefixed("theta", theta)}
        key = (server_round, _digest(arrays))
        if key not in self._sent:
            name = f"sent-r{server_round:03d}-{key[1]}.npz"
            path = self.dir / name
            if not path.exists():
                atomic_save_npz(path, arrays)
            self._sent[key] = name
        return self._sent[key]

    def write(self, *, server_round: int, node_id: int, sent: str | None, alpha_t2: Mapping[str, np.ndarray],
              partition_id: int | None, train_config: Mapping[str, Any], metrics: Mapping[str, Any],
              status: str = "ok", reason: str = "", extra: Mapping[str, Any] | None = None) -> str:
        """Store one capture (arrays first, its JSON last)."""
        cid = capture_id(server_round, node_id)
        arrays_file = None
        if alpha_t2:
            arrays_file = f"{cid}.npz"
            atomic_save_npz(self.dir / arrays_file, _prefixed("alpha", alpha_t2))
        atomic_write_json(self.dir / f"{cid}.json", {
            "id": cid, "round": int(server_round), "node-id": int(node_id),
            "partition-id": None if partition_id is None else int(partition_id),
            "status": status, "reason": reason, "sent": sent, "reply": arrays_file,
            "train-config": {k: _plain(v) for k, v in train_config.items()},
            "metrics": {k: _plain(v) for k, v in metrics.items()},
            **dict(extra or {}),
        })
        return cid

    # ------------------------------------------------------------------ reading
    def ids(self) -> list[str]:
        """Every stored capture, by round then node."""
        if not self.dir.is_dir():
            return []
        names = [p.stem for p in self.dir.glob("*.json") if _ID.match(p.stem)]
        return sorted(names, key=lambda n: (int(n[1:].split("-")[0]), int(n.split("-n")[1])))

    def meta(self, cid: str) -> dict[str, Any]:
        return json.loads((self.dir / f"{cid}.json").read_text())

    def load(self, cid: str) -> Capture:
        """One capture. Problems (missing or unreadable arrays) come back as ``failed``."""
        meta = self.meta(cid)
        status, reason = meta.get("status", "ok"), meta.get("reason", "")
        alpha_t1: dict[str, np.ndarray] = {}
        theta_t1: dict[str, np.ndarray] = {}
        alpha_t2: dict[str, np.ndarray] = {}
        try:
            if meta.get("sent"):
                sent = load_npz(self.dir / meta["sent"])
                alpha_t1, theta_t1 = _unprefixed("alpha", sent), _unprefixed("theta", sent)
            if meta.get("reply"):
                alpha_t2 = _unprefixed("alpha", load_npz(self.dir / meta["reply"]))
        except (OSError, ValueError, KeyError) as err:  # a damaged or missing array file
            status, reason = "failed", f"cannot read the capture's arrays: {type(err).__name__}: {err}"
        pid = meta.get("partition-id")
        return Capture(
            id=cid, round=int(meta["round"]), node_id=int(meta["node-id"]),
            partition_id=None if pid is None else int(pid),
            alpha_t1=alpha_t1, alpha_t2=alpha_t2, theta_t1=theta_t1,
            train_config=dict(meta.get("train-config", {})), metrics=dict(meta.get("metrics", {})),
            status=status, reason=reason,
            meta={k: v for k, v in meta.items() if k not in ("train-config", "metrics")},
        )

