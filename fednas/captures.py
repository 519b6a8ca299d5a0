"""The capture store: what the eavesdropper saw, on disk, readable without Flower.

Layout under the run directory::

    captures/
      manifest.json           what the captures are of: the model (a ``package.module:factory``
                               reference, or this project's ``config.json``), which arrays are
                               α (the pattern, and every array's name and shape), the input
                               shape and classes, and where the client's optimizer settings
                               are read on the wire (see :class:`Manifest`)
      r003-n<node>.json       one capture: round, node, partition-id, train settings, reply
                               metrics, the client's α settings as the wire shows them
                               (``client-settings``, with their ``client-settings-source``),
                               status, and the names of its array files
      r003-n<node>.npz        α_t2 (the reply's α), arrays named as on the wire
      sent-r003-<hash>.npz    what the server sent in the round (α_t1, and θ_t1 when sent);
                               stored once per distinct content, shared by the captures
    truth/                    which samples each client used, written by the clients
                               themselves in a simulation; neither written nor read here
                               (:mod:`fednas.truth`: only the scoring reads it).

Every file is written atomically, the capture's JSON last, so a capture exists exactly
when its JSON does. Loading returns plain numpy arrays and dicts. The JSON files carry
``schema-version`` (:mod:`fednas.schema`); reading checks them against the schema
(:meth:`Manifest.from_json`, :func:`check_capture`) and a file that is truncated or breaks
it raises :class:`fednas.schema.SchemaError` naming the file and the field.
"""

from __future__ import annotations

import hashlib
import logging
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fednas.rundir import atomic_save_npz, atomic_write_json, load_npz
from fednas.schema import SCHEMA_VERSION, VERSION_KEY, Fields, SchemaError, is_int, read_json, version_of

log = logging.getLogger(__name__)

CAPTURES_DIR = "captures"
MANIFEST = "manifest.json"
_ID = re.compile(r"^r\d{3,}-n\d+$")
STATUSES = ("ok", "failed", "rejected")

# The client's local α procedure, by this project's key names: what ADRA must know to read Δα.
CLIENT_SETTING_KEYS = ("alpha-optimizer", "alpha-lr", "alpha-weight-decay", "alpha-beta1", "alpha-batch-size",
                       "local-steps", "alpha-l2")
# Without these the attack cannot model the client's update; the rest default to 0 / Adam's 0.9.
REQUIRED_CLIENT_SETTINGS = ("alpha-optimizer", "alpha-lr", "alpha-batch-size", "local-steps")


def capture_id(server_round: int, node_id: int) -> str:
    """The capture's name: round and destination node (``r003-n123``)."""
    return f"r{server_round:03d}-n{node_id}"


@dataclass(frozen=True)
class Capture:
    """One (round, client) as the eavesdropper saw it. Never the client's data.

    ``alpha_t1``/``theta_t1`` are what the server sent the node, ``alpha_t2`` what it
    replied; ``train_config`` is the train ConfigRecord the server sent (lr, local steps,
    B, optimizer, round); ``metrics`` the reply's MetricRecord (e.g. ``dp-epsilon``).
    ``status`` is ``ok``, ``failed`` (e.g. a reply without α) or ``rejected`` (the server
    left the reply out of its aggregate), with a ``reason``.
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


@dataclass(frozen=True)
class Manifest:
    """What a run's captures are of; ``captures/manifest.json`` (all fields public knowledge).

    Attributes
    ----------
    model : str or None
        ``package.module:factory`` of the victim's network (a callable with no required
        argument returning a ``torch.nn.Module`` whose α are named parameters matching
        ``alpha_pattern``); None for this project's own runs, whose ``config.json`` says it.
    alpha_pattern : str
        Regular expression (``re.search``) naming the α arrays; every other array is θ.
    input_shape : (C, H, W) or None; num_classes : int or None
        The victim's input and output (None: unknown to the server; give them offline).
    client_settings : mapping
        Settings of the client's α procedure the server operator knows as a fact of the
        app (e.g. ``{"alpha-optimizer": "sgd"}``), by the names of ``CLIENT_SETTING_KEYS``.
    wire_keys : mapping
        Where a setting crosses the wire: ``{our name: the app's key}``, looked up in the
        train config the server sends, then in the reply's metrics. Unmapped names are
        looked up as themselves (this project's apps need no mapping).
    arrays : mapping
        ``{"alpha": {name: shape}, "theta": {name: shape}}`` of the first message sent
        (P-DARTS's α changes shape per stage: each capture holds its own).
    paradigm : str or None
        This project's NAS paradigm (``darts``, ``pdarts``, ``enas``, ``smash``;
        docs/paradigms.md): which architecture state the ``alpha*`` arrays are, and that
        ``paradigm.*`` arrays among θ are the server state sent with them. None for another
        app's model.
    """

    model: str | None = None
    alpha_pattern: str = "^alpha"
    input_shape: tuple[int, int, int] | None = None
    num_classes: int | None = None
    client_settings: Mapping[str, Any] = field(default_factory=dict)
    wire_keys: Mapping[str, str] = field(default_factory=dict)
    arrays: Mapping[str, Any] = field(default_factory=dict)
    paradigm: str | None = None

    def __post_init__(self) -> None:
        re.compile(self.alpha_pattern)  # a bad pattern fails here, not at the first capture
        unknown = sorted(set(self.client_settings) - set(CLIENT_SETTING_KEYS))
        unknown += sorted(set(self.wire_keys) - set(CLIENT_SETTING_KEYS))
        if unknown:
            raise ValueError(f"unknown client settings {unknown}; known: {', '.join(CLIENT_SETTING_KEYS)}")
        if self.model is not None and (":" not in self.model or not all(self.model.split(":", 1))):
            raise ValueError(f"model {self.model!r}: expected 'package.module:factory'")
        if self.input_shape is not None and (len(self.input_shape) != 3 or min(self.input_shape) < 1):
            raise ValueError(f"input_shape {self.input_shape!r}: expected (channels, height, width)")

    def resolve(self, train_config: Mapping[str, Any], metrics: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """The client's α settings as this (round, client) shows them, and where each came from.

        The wire wins over a declared value (a server may change the learning rate per round);
        the reply's metrics over the train config for ``local-steps`` (the steps actually taken).
        """
        values: dict[str, Any] = {}
        source: dict[str, str] = {}
        for name in CLIENT_SETTING_KEYS:
            wire = self.wire_keys.get(name, name)
            places = [("reply-metrics", metrics), ("train-config", train_config)]
            if name != "local-steps":
                places.reverse()
            for where, record in places:
                if wire in record:
                    values[name], source[name] = _plain(record[wire]), f"{where}:{wire}"
                    break
            else:
                if name in self.client_settings:
                    values[name], source[name] = self.client_settings[name], "declared"
        return values, source

    def to_json(self) -> dict[str, Any]:
        return {VERSION_KEY: SCHEMA_VERSION, "model": self.model, "alpha-pattern": self.alpha_pattern,
                "input-shape": None if self.input_shape is None else list(self.input_shape),
                "num-classes": self.num_classes, "client-settings": dict(self.client_settings),
                "wire-keys": dict(self.wire_keys), "arrays": dict(self.arrays), "paradigm": self.paradigm}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], path: str | Path | None = None) -> Manifest:
        """A manifest, checked; a :class:`fednas.schema.SchemaError` names the file and the field at fault."""
        version_of(data, path)
        f = Fields(data, path)
        model = f.text("model")
        if model is not None and (":" not in model or not all(model.split(":", 1))):
            raise f.fail("model", f"expected 'package.module:factory', found {model!r}")
        pattern = f.text("alpha-pattern", default="^alpha")
        try:
            re.compile(pattern)
        except re.error as err:
            raise f.fail("alpha-pattern", f"not a regular expression ({err})") from None
        shape = f.get("input-shape",
                      lambda v: isinstance(v, list) and len(v) == 3 and all(is_int(x) and x > 0 for x in v),
                      "[channels, height, width] (three positive integers)")
        classes = f.integer("num-classes", minimum=1)
        settings, wire = f.mapping("client-settings"), f.mapping("wire-keys")
        for name, record in (("client-settings", settings), ("wire-keys", wire)):
            unknown = sorted(set(record) - set(CLIENT_SETTING_KEYS))
            if unknown:
                raise f.fail(name, f"unknown settings {unknown}; known: {', '.join(CLIENT_SETTING_KEYS)}")
        if not all(isinstance(v, str) for v in wire.values()):
            raise f.fail("wire-keys", "expected {setting: the app's key (a string)}")
        return cls(model=model, alpha_pattern=pattern, input_shape=None if shape is None else tuple(shape),
                   num_classes=classes, client_settings=settings, wire_keys=wire, arrays=f.mapping("arrays"),
                   paradigm=f.text("paradigm"))


def check_capture(data: Mapping[str, Any], path: str | Path | None = None) -> dict[str, Any]:
    """A capture's JSON, checked against the schema (older runs' files without a version included)."""
    version_of(data, path)
    f = Fields(data, path)
    f.text("id")
    f.integer("round", required=True, minimum=0)
    f.integer("node-id", required=True)
    f.integer("partition-id")
    status = f.text("status", default="ok")
    if status not in STATUSES:
        raise f.fail("status", f"expected one of {', '.join(STATUSES)}, found {status!r}")
    for name in ("reason", "sent", "reply"):
        f.text(name)
    for name in ("train-config", "metrics", "client-settings", "client-settings-source"):
        f.mapping(name)
    f.get("alpha-arrays", lambda v: isinstance(v, list), "a list of array names")
    return dict(data)


def missing_client_settings(settings: Mapping[str, Any]) -> list[str]:
    """Settings the attack needs that a capture does not show."""
    return [k for k in REQUIRED_CLIENT_SETTINGS if k not in settings]


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
    def write_manifest(self, manifest: Manifest) -> Path:
        """Write ``captures/manifest.json`` (again whenever it learns more, e.g. the arrays)."""
        return atomic_write_json(self.dir / MANIFEST, manifest.to_json())

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
            VERSION_KEY: SCHEMA_VERSION, "id": cid, "round": int(server_round), "node-id": int(node_id),
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

    def manifest(self) -> Manifest | None:
        """The run's manifest, or None for captures made before manifests existed.

        Raises :class:`fednas.schema.SchemaError` (naming the file and the field) for a
        truncated manifest or one that breaks the schema.
        """
        path = self.dir / MANIFEST
        return Manifest.from_json(read_json(path), path) if path.is_file() else None

    def path(self, cid: str) -> Path:
        """A capture's JSON file."""
        return self.dir / f"{cid}.json"

    def meta(self, cid: str) -> dict[str, Any]:
        """A capture's JSON, checked (:func:`check_capture`); a bad file raises ``SchemaError`` naming it."""
        path = self.path(cid)
        return check_capture(read_json(path), path)

    def problem(self, cid: str) -> str | None:
        """Why a capture cannot be read (its file and the field at fault), or None when it can."""
        try:
            meta = self.meta(cid)
        except SchemaError as err:
            return f"bad capture file: {err}"
        for key in ("sent", "reply"):
            if meta.get(key) and not (self.dir / meta[key]).is_file():
                return f"bad capture file: {self.path(cid)}: field {key!r}: {self.dir / meta[key]} is missing"
        return None

    def load(self, cid: str) -> Capture:
        """One capture. Problems (missing or unreadable arrays) come back as ``failed``."""
        meta = self.meta(cid)
        status, reason = meta.get("status", "ok"), meta.get("reason", "")
        alpha_t1: dict[str, np.ndarray] = {}
        theta_t1: dict[str, np.ndarray] = {}
        alpha_t2: dict[str, np.ndarray] = {}
        path = None
        try:
            if meta.get("sent"):
                path = self.dir / meta["sent"]
                sent = load_npz(path)
                alpha_t1, theta_t1 = _unprefixed("alpha", sent), _unprefixed("theta", sent)
            if meta.get("reply"):
                path = self.dir / meta["reply"]
                alpha_t2 = _unprefixed("alpha", load_npz(path))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:  # a damaged or missing array file
            status, reason = "failed", f"cannot read the capture's arrays: {path}: {type(err).__name__}: {err}"
        pid = meta.get("partition-id")
        return Capture(
            id=cid, round=int(meta["round"]), node_id=int(meta["node-id"]),
            partition_id=None if pid is None else int(pid),
            alpha_t1=alpha_t1, alpha_t2=alpha_t2, theta_t1=theta_t1,
            train_config=dict(meta.get("train-config", {})), metrics=dict(meta.get("metrics", {})),
            status=status, reason=reason,
            meta={k: v for k, v in meta.items() if k not in ("train-config", "metrics")},
        )

