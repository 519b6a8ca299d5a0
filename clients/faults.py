"""Fault injection, a testing knob: a real ClientApp that misbehaves the way a hostile or
broken client would (``fault-partitions``, ``fault-mode``).

Two kinds of fault. Before training: ``raise`` (the train call raises) and ``exit`` (the
client's process dies with ``os._exit``, as on a crash or an OOM kill). After training, on
the honest reply: the α arrays (names starting with ``alpha``) are replaced by NaN
(``nan``), flattened (``shape``), cut to one row that NumPy would broadcast
(``broadcast``), cast to float64 (``dtype``), set to 1e30 (``huge``) or their update made 100
times larger (``amplify``: finite and well formed, yet it alone sets FedAvg's α); an array is added
(``extra-array``) or α is left out (``missing-alpha``); or the reply claims
``num-examples = -1`` (``bad-weight``). What the server does about each:
docs/reliability.md.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp.typing import ClientAppCallable

from clients.dp_mods import settings
from fednas.config import FAULT_MODES, fault_plan
from fednas.updates import REPLY_KEY

log = logging.getLogger(__name__)

ALPHA_PREFIX = "alpha"
HUGE = 1e30
AMPLIFY = 100.0  # the factor ``amplify`` multiplies the α update by


def _raise(pid: int) -> None:
    raise RuntimeError(f"fault injection: partition {pid} fails its train call (fault-partitions)")


def _exit(pid: int) -> None:
    log.warning("fault injection: partition %d ends its process (os._exit)", pid)
    os._exit(17)  # no clean-up, no exception: as a crash or an OOM kill would


BEFORE: dict[str, Callable[[int], None]] = {"raise": _raise, "exit": _exit}


def _map_alpha(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    def apply(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: fn(v) if k.startswith(ALPHA_PREFIX) else v for k, v in arrays.items()}
    return apply


ARRAY_FAULTS: dict[str, Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]] = {
    "nan": _map_alpha(lambda a: np.full_like(a, np.nan)),
    "shape": _map_alpha(lambda a: a.reshape(-1)),
    "broadcast": _map_alpha(lambda a: a[:1].copy()),
    "dtype": _map_alpha(lambda a: a.astype(np.float64)),
    "huge": _map_alpha(lambda a: np.full_like(a, HUGE)),
    "extra-array": lambda arrays: {**arrays, "extra": np.zeros(3, np.float32)},
    "missing-alpha": lambda arrays: {k: v for k, v in arrays.items() if not k.startswith(ALPHA_PREFIX)},
}


def amplified(arrays: dict[str, np.ndarray], sent: dict[str, np.ndarray], delta: bool) -> dict[str, np.ndarray]:
    """The α update × ``AMPLIFY``, in the reply's form: Δα × 100, or sent + 100 (α − sent)."""
    out = dict(arrays)
    for k, v in arrays.items():
        if k.startswith(ALPHA_PREFIX):
            update = v.astype(np.float64) if delta else v.astype(np.float64) - sent[k].astype(np.float64)
            out[k] = (AMPLIFY * update + (0.0 if delta else sent[k].astype(np.float64))).astype(v.dtype)
    return out


def _bad_weight(content: RecordDict) -> RecordDict:
    metrics = dict(content["metrics"])
    metrics["num-examples"] = -1
    content["metrics"] = MetricRecord(metrics)
    return content


FAULTS: tuple[str, ...] = (*BEFORE, *ARRAY_FAULTS, "amplify", "bad-weight")
assert set(FAULTS) == set(FAULT_MODES), "fednas.config.FAULT_MODES and clients.faults disagree"


def fault_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Train-only mod: the client of a ``fault-partitions`` id misbehaves (others pass)."""
    mode = fault_plan(settings(context)).get(int(context.node_config["partition-id"]))
    if mode is None:
        return call_next(msg, context)
    before_train(mode, int(context.node_config["partition-id"]))
    reply = call_next(msg, context)
    if reply.has_error():
        return reply
    sent = {k: v.numpy() for k, v in msg.content["arrays"].items()} if "arrays" in msg.content.array_records else {}
    delta = "config" in msg.content.config_records and msg.content["config"].get(REPLY_KEY) == "delta"
    return Message(content=corrupt_reply(mode, reply.content, sent=sent, delta=delta), reply_to=msg)


def before_train(mode: str | None, pid: int) -> None:
    """Misbehave before any work (``raise``, ``exit``); other modes do nothing here."""
    if mode in BEFORE:
        BEFORE[mode](pid)


def corrupt_reply(mode: str | None, content: RecordDict, arrays_key: str = "arrays",
                  sent: dict[str, np.ndarray] | None = None, delta: bool = False) -> RecordDict:
    """The reply ``content`` as a client in ``mode`` would send it (unchanged for other modes).
    ``amplify`` needs what the client was ``sent`` and whether it replies updates (``delta``)."""
    if mode == "bad-weight":
        return _bad_weight(content)
    if mode not in ARRAY_FAULTS and mode != "amplify":
        return content
    arrays = {k: v.numpy() for k, v in content[arrays_key].items()}
    corrupted = amplified(arrays, sent or {}, delta) if mode == "amplify" else ARRAY_FAULTS[mode](arrays)
    content[arrays_key] = ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in corrupted.items()})
    log.warning("fault injection: the reply is corrupted (%s)", mode)
    return content
