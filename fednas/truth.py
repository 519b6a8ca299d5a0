"""The truth of a simulation: which D^α samples each client's α steps used. Never on the wire.

In a simulation every client writes its own record, after its local search and before it
replies, to ``<run-dir>/truth/r<round>-p<partition-id>.json``; the leakage report's scoring
reads it back through :func:`read_truth`, the only reader. The record reveals the samples
behind Δα (and, under DP-SGD, the Poisson sample whose secrecy the privacy guarantee relies
on), so it never crosses the protocol: the eavesdropper, the server's strategy and an
attack see none of it. It needs a filesystem the clients and the scorer share, which a
simulation has and a deployment does not: there ``write-truth`` is false and the leakage
report is unscored (:data:`UNSCORED_REASON`).

The record (:class:`TruthRecord`, schema version :data:`fednas.schema.SCHEMA_VERSION`)::

    {"schema-version": 1,
     "alpha-indices": [12, 40, 7],        # every α step's samples, step after step (flat);
                                          # or one list per step: [[12, 40], [7]]
     "alpha-batch-sizes": [2, 1],         # how many samples each α step used (optional:
                                          # one step of them all; read from a nested list)
     "alpha-pool": [3, 7, 12, 40, ...]}   # optional: the client's whole D^α

Indices are positions in the data set the scorer loads (this project's dataset, or
another app's ``--data``). ``alpha-step-sizes`` is the older name of ``alpha-batch-sizes``
and is still read. Other fields are kept as they are (this project's clients add
``partition-id``, ``server-round``, ``alpha-batch-size``, ``alpha-steps``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fednas.rundir import atomic_write_json
from fednas.schema import SCHEMA_VERSION, VERSION_KEY, Fields, SchemaError, read_json, version_of

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


INDICES, SIZES, POOL = "alpha-indices", "alpha-batch-sizes", "alpha-pool"
OLD_SIZES = "alpha-step-sizes"  # the name before schema version 1: a count of samples, not a step size


@dataclass(frozen=True)
class TruthRecord:
    """One client's record of one round, checked (see the module docstring for the file).

    Attributes
    ----------
    alpha_indices : tuple of int
        Every α step's samples, step after step.
    alpha_batch_sizes : tuple of int
        How many of them each α step used (sums to ``len(alpha_indices)``).
    alpha_pool : tuple of int or None
        The client's whole D^α, when the client wrote it.
    extra : mapping
        The record's other fields, kept as written.
    source : str or None
        The file it was read from (for error messages; not compared).
    """

    alpha_indices: tuple[int, ...]
    alpha_batch_sizes: tuple[int, ...]
    alpha_pool: tuple[int, ...] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = field(default=None, compare=False)

    def check_within(self, size: int) -> None:
        """Every index points into a data set of ``size`` samples; else a ``SchemaError`` naming the file."""
        for name, values in ((INDICES, self.alpha_indices), (POOL, self.alpha_pool or ())):
            outside = [i for i in values if i >= size]
            if outside:
                raise SchemaError(self.source, name, f"index {outside[0]} is outside the data ({size} samples)")

    def samples(self) -> list[tuple[int, int, int]]:
        """(step, position in the step, index) of every sample the client's α steps used."""
        out, start = [], 0
        for step, size in enumerate(self.alpha_batch_sizes):
            out += [(step, pos, self.alpha_indices[start + pos]) for pos in range(size)]
            start += size
        return out

    def to_json(self) -> dict[str, Any]:
        out = {**self.extra, VERSION_KEY: SCHEMA_VERSION, INDICES: list(self.alpha_indices),
               SIZES: list(self.alpha_batch_sizes)}
        if self.alpha_pool is not None:
            out[POOL] = list(self.alpha_pool)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any], path: str | Path | None = None) -> TruthRecord:
        """Check a record; a :class:`fednas.schema.SchemaError` names the file and the field at fault."""
        version_of(data, path)
        f = Fields(data, path)
        raw = f.get(INDICES, lambda v: isinstance(v, list), "a list of sample indices", required=True)
        sizes_field = SIZES if SIZES in data else OLD_SIZES
        sizes = f.index_list(sizes_field)
        if SIZES in data and OLD_SIZES in data and f.index_list(OLD_SIZES) != sizes:
            raise f.fail(OLD_SIZES, f"disagrees with {SIZES!r} (write one of them)")
        if raw and all(isinstance(v, list) for v in raw):  # one list per α step
            indices = Fields({INDICES: [i for step in raw for i in step]}, path).index_list(INDICES)
            steps = [len(step) for step in raw]
            if sizes is not None and sizes != steps:
                raise f.fail(sizes_field, f"{sizes} disagrees with the per-step lists of {INDICES!r} "
                                          f"(sizes {steps})")
            sizes = steps
        elif any(isinstance(v, list) for v in raw):
            raise f.fail(INDICES, "mixes indices and lists: expected a flat list of indices (step after step) "
                                  "or one list per alpha step")
        else:
            indices = f.index_list(INDICES)
            if sizes is None:
                sizes = [len(indices)] if indices else []
            elif sum(sizes) != len(indices):
                raise f.fail(sizes_field, f"its sizes sum to {sum(sizes)} but {INDICES!r} holds {len(indices)} "
                                          "indices (one size per alpha step: how many samples it used)")
        pool = f.index_list(POOL)
        extra = {k: v for k, v in data.items() if k not in (VERSION_KEY, INDICES, SIZES, OLD_SIZES, POOL)}
        return cls(tuple(indices), tuple(sizes), None if pool is None else tuple(pool), extra,
                   None if path is None else str(path))

    @classmethod
    def of_batches(cls, batches: Sequence[Sequence[int]], pool: Sequence[int] | None = None,
                   **extra: Any) -> TruthRecord:
        """The record of α steps that used ``batches`` (one sequence of indices per step, in order)."""
        data: dict[str, Any] = {INDICES: [[_index(i) for i in b] for b in batches], **extra}
        if pool is not None:
            data[POOL] = [_index(i) for i in pool]
        return cls.from_json(data)


def _index(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def write_truth(run_dir: str | Path, server_round: int, partition_id: int,
                record: Mapping[str, Any] | TruthRecord) -> Path:
    """Write one client's record of one round (checked, atomically) and return its path.

    ``record`` is a :class:`TruthRecord` or its fields (``alpha-indices``: flat, step after
    step, or one list per α step; ``alpha-batch-sizes``; optionally ``alpha-pool``); numpy
    integers are fine. A record that breaks the schema raises a ``SchemaError`` naming the path.
    """
    path = truth_path(run_dir, server_round, partition_id)
    if not isinstance(record, TruthRecord):
        record = TruthRecord.from_json({k: _plain(v) for k, v in record.items()}, path)
    return atomic_write_json(path, record.to_json())


def read_truth(run_dir: str | Path, capture: Mapping[str, Any]) -> TruthRecord | None:
    """The record behind one capture (its JSON: ``round``, ``partition-id``, ``id``), or None.

    The one reader of the truth, for scoring. It also finds a record an older version
    stored under the capture's name (``truth/r003-n<node>.json``: the eavesdropper kept a
    reply's ``audit`` record), so older run directories still score. A record that cannot
    be read or breaks the schema raises :class:`fednas.schema.SchemaError` naming its file.
    """
    candidates = []
    if capture.get("partition-id") is not None:
        candidates.append(truth_path(run_dir, int(capture["round"]), int(capture["partition-id"])))
    if capture.get("id"):
        candidates.append(Path(run_dir) / TRUTH_DIR / f"{capture['id']}.json")
    for path in candidates:
        if path.is_file():
            return TruthRecord.from_json(read_json(path), path)
    return None


__all__ = ["TruthRecord", "SchemaError", "read_truth", "write_truth", "truth_path", "TRUTH_DIR", "UNSCORED_REASON"]
