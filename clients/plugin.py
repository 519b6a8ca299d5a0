"""What another app's ClientApp calls to meet the plugin contract (docs/plugin.md): two helpers.

- :func:`tag_reply` puts the client's partition-id into its reply (a ``client``
  ConfigRecord): the eavesdropper stores it with the capture, the report tells clients apart
  by it and finds each capture's truth record with it.
- :func:`record_truth` writes, in a simulation and for scoring only, which samples each α
  step used (:mod:`fednas.truth`). It never goes into the reply.

Neither needs the server or anything else of this project's apps.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from pathlib import Path

from flwr.app import ConfigRecord, RecordDict

from fednas.schema import CLIENT_RECORD, PARTITION_KEY
from fednas.truth import TruthRecord, write_truth


def client_record(partition_id: int) -> ConfigRecord:
    """The ``client`` ConfigRecord of a reply: ``{"partition-id": partition_id}``."""
    if isinstance(partition_id, bool) or not hasattr(partition_id, "__index__"):
        raise TypeError(f"partition_id must be an integer, got {partition_id!r}")
    return ConfigRecord({PARTITION_KEY: operator.index(partition_id)})


def tag_reply(content: RecordDict, partition_id: int) -> RecordDict:
    """Add the client's partition-id to a reply's content (in place) and return the content."""
    content[CLIENT_RECORD] = client_record(partition_id)
    return content


def record_truth(run_dir: str | Path, server_round: int, partition_id: int, batches: Sequence[Sequence[int]],
                 pool: Sequence[int] | None = None) -> Path:
    """Write which samples this round's α steps used (simulation only, for scoring); return the file.

    Parameters
    ----------
    run_dir : path
        The run directory the server's plugin writes to (``eavesdrop(strategy, run_dir, ...)``),
        shared by the clients in a simulation.
    server_round : int
        The round, as the server counts it (``server-round`` or your train config's key).
    partition_id : int
        The same partition-id the reply is tagged with (:func:`tag_reply`).
    batches : sequence of sequences of int
        One sequence per α step, in order: the indices, into the data set the attack is
        scored on (``--data``), of the samples that step used.
    pool : sequence of int, optional
        The client's whole D^α (the samples its α steps draw from).
    """
    return write_truth(run_dir, server_round, partition_id, TruthRecord.of_batches(batches, pool))


__all__ = ["client_record", "tag_reply", "record_truth"]
