"""Every reply checked before aggregation: the ``ReplyGuard`` strategy wrapper.

Flower's strategies trust what clients send. One hostile or broken client can then poison
the global model (NaN, 1e30, an array NumPy silently broadcasts) or abort the whole run
(a wrong shape, an extra array, a missing one: ``InconsistentMessageReplies``). The
guard wraps any strategy and, each round, checks every reply against what the server
itself sent that node:

- one ArrayRecord per record sent, holding exactly the arrays sent (names), each with the
  shape and dtype sent, readable, and finite;
- exactly one MetricRecord, whose weight (``num-examples``) is one finite number > 0, and
  whose keys are those of the round's other replies (the most common set);
- last, over the replies that passed all of the above, the size of each one's update
  (:mod:`server.magnitude`): per group (α, θ) at most ``update-guard-k`` × the round's
  lower-median norm, and as a whole at most ``max-update-norm`` when set; beyond it the
  reply is rejected or clipped (``update-guard``).

A reply that fails is left out of the aggregate, with its reason (logged, and kept in
``rejections`` for the round's row); the inner strategy never sees it. A clipped reply is
aggregated with its update scaled down, in place (logged, and kept in ``clippings``). A
round in which nothing is left to aggregate, or whose aggregate is not finite, returns no
arrays, so Flower keeps the previous global model. Evaluate replies get the metric checks. The guard
never raises on a reply: one it cannot check is rejected with the error as its reason.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from server.magnitude import Sizing, UpdateBound, clipped_arrays, group_norms, size_verdicts, update_of
from server.strategies import partition_of
from server.wrapping import StrategyWrapper

log = logging.getLogger(__name__)

Sent = dict[str, dict[str, np.ndarray]]  # ArrayRecord name -> array name -> what was sent


@dataclass(frozen=True)
class Rejection:
    """One reply left out of a round's aggregate (or, in ``clippings``, clipped: the reason says how)."""

    round: int
    node_id: int
    partition_id: int | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"round": self.round, "node-id": self.node_id, "partition-id": self.partition_id, "reason": self.reason}


# ---------------------------------------------------------------------------- checks (pure)


def sent_arrays(msg: Message) -> Sent:
    """What a message to a client carries, by ArrayRecord and array name."""
    return {key: {name: arr.numpy() for name, arr in record.items()}
            for key, record in msg.content.array_records.items()}


def check_arrays(reply: Mapping[str, ArrayRecord], sent: Sent) -> str | None:
    """Why the reply's ArrayRecords do not match what was sent (None: they do)."""
    if set(reply) != set(sent):
        return f"ArrayRecords {sorted(reply)} (expected {sorted(sent)})"
    for key, expected in sent.items():
        names = list(reply[key].keys())
        missing = [n for n in expected if n not in names]
        extra = [n for n in names if n not in expected]
        if missing or extra:
            return ", ".join(filter(None, (f"missing arrays {missing}" if missing else "",
                                           f"unexpected arrays {extra}" if extra else "")))
        for name, ref in expected.items():
            problem = check_array(name, reply[key][name], ref)
            if problem:
                return problem
    return None


def check_array(name: str, arr: Any, ref: np.ndarray) -> str | None:
    """Why one array differs in shape, dtype or finiteness from ``ref`` (None: it does not)."""
    if tuple(arr.shape) != ref.shape:
        return f"{name!r} has shape {tuple(arr.shape)}, expected {ref.shape}"
    if str(arr.dtype) != str(ref.dtype):
        return f"{name!r} has dtype {arr.dtype}, expected {ref.dtype}"
    try:
        value = arr.numpy()
    except Exception as err:  # a payload that does not decode as declared
        return f"{name!r} cannot be read: {type(err).__name__}: {err}"
    if value.shape != ref.shape or value.dtype != ref.dtype:
        return f"{name!r} decodes as {value.dtype}{value.shape}, expected {ref.dtype}{ref.shape}"
    if np.issubdtype(value.dtype, np.inexact) and not np.isfinite(value).all():
        bad = int(value.size - np.isfinite(value).sum())
        return f"{name!r} holds {bad} non-finite value(s) (NaN or Inf) of {value.size}"
    return None


def check_metrics(msg: Message, weight_key: str) -> str | None:
    """Why the reply's MetricRecord cannot weight an average (None: it can)."""
    records = msg.content.metric_records
    if len(records) != 1:
        return f"{len(records)} MetricRecords (expected one)"
    record = next(iter(records.values()))
    if weight_key not in record:
        return f"no {weight_key!r} metric"
    weight = record[weight_key]
    if isinstance(weight, list) or not math.isfinite(float(weight)) or float(weight) <= 0:
        return f"metric {weight_key!r} = {weight!r}: must be one finite number > 0"
    return None


def metric_keys(msg: Message) -> frozenset[str]:
    return frozenset(k for record in msg.content.metric_records.values() for k in record.keys())


def common_keys(replies: list[Message]) -> frozenset[str] | None:
    """The most common metric key set (ties: the earliest reply's)."""
    if not replies:
        return None
    counts = Counter(metric_keys(m) for m in replies)
    return max(counts, key=lambda keys: counts[keys])  # max keeps the first of equal counts


def judge_replies(replies: list[Message], sent: Mapping[int, Sent] | None, weight_key: str,
                  bound: UpdateBound | None = None, delta: bool = False) -> list[str | None]:
    """Each reply's reason to be rejected (None: accepted), error replies None.

    ``sent`` maps node id to what it was sent (train replies); None checks only metrics
    (evaluate replies). ``bound``: the size limits on train replies' updates (none if None).
    """
    return [v.reason for v in assess_replies(replies, sent, weight_key, bound, delta)]


def assess_replies(replies: list[Message], sent: Mapping[int, Sent] | None, weight_key: str,
                   bound: UpdateBound | None = None, delta: bool = False) -> list[Sizing]:
    """Each reply's verdict: rejected with a reason, clipped (scales per group), or accepted.

    The size check comes last, over the replies every other check accepted: the round's
    reference norm is theirs (see :mod:`server.magnitude`).
    """
    verdicts: list[str | None] = []
    for msg in replies:
        if msg.has_error():
            verdicts.append(None)
            continue
        try:
            verdicts.append(_judge_one(msg, sent, weight_key))
        except Exception as err:  # a reply that cannot be checked is not aggregated
            verdicts.append(f"could not be checked: {type(err).__name__}: {err}")
    keys = common_keys([m for m, v in zip(replies, verdicts) if v is None and not m.has_error()])
    for i, msg in enumerate(replies):
        if verdicts[i] is None and not msg.has_error() and metric_keys(msg) != keys:
            verdicts[i] = f"metric keys {sorted(metric_keys(msg))} differ from the other replies' {sorted(keys)}"
    out = [Sizing(reason=v) for v in verdicts]
    if sent is None or bound is None or not bound.active:
        return out
    checked = [i for i, (m, v) in enumerate(zip(replies, verdicts)) if v is None and not m.has_error()]
    norms = []
    for i in checked:
        node = int(replies[i].metadata.src_node_id)
        norms.append(reply_norms(replies[i], sent[node], delta, bound))
    for i, sizing in zip(checked, size_verdicts(norms, bound)):
        out[i] = sizing
    return out


def reply_norms(msg: Message, sent: Sent, delta: bool, bound: UpdateBound) -> dict[str, float]:
    """The L2 norm of a reply's update per group (α, θ), over all its ArrayRecords."""
    squares: dict[str, float] = {}
    for key, expected in sent.items():
        reply = {name: arr.numpy() for name, arr in msg.content.array_records[key].items()}
        for g, norm in group_norms(update_of(reply, expected, delta), bound).items():
            squares[g] = squares.get(g, 0.0) + norm * norm
    return {g: math.sqrt(v) for g, v in squares.items()}


def clip_reply(msg: Message, sent: Sent, delta: bool, sizing: Sizing, bound: UpdateBound) -> None:
    """Scale the reply's update by the sizing's factors, in place (its ArrayRecords replaced)."""
    for key, expected in sent.items():
        reply = {name: arr.numpy() for name, arr in msg.content.array_records[key].items()}
        clipped = clipped_arrays(reply, expected, delta, sizing.scales, bound)
        msg.content[key] = ArrayRecord({n: Array(np.ascontiguousarray(v)) for n, v in clipped.items()})


def _judge_one(msg: Message, sent: Mapping[int, Sent] | None, weight_key: str) -> str | None:
    if sent is not None:
        node = int(msg.metadata.src_node_id)
        if node not in sent:
            return f"node {node} was sent no train message this round"
        problem = check_arrays(msg.content.array_records, sent[node])
        if problem:
            return problem
    return check_metrics(msg, weight_key)


def weight_key_of(strategy: Any, default: str = "num-examples") -> str:
    """The metric a strategy weights by (``weighted_by_key``), looking through wrappers."""
    while strategy is not None:
        key = getattr(strategy, "weighted_by_key", None)
        if isinstance(key, str):
            return key
        strategy = getattr(strategy, "strategy", None)
    return default


def finite_record(record: ArrayRecord) -> bool:
    return all(not np.issubdtype(a.dtype, np.inexact) or np.isfinite(a).all()
               for a in (arr.numpy() for arr in record.values()))


# ---------------------------------------------------------------------------- the wrapper


class ReplyGuard(StrategyWrapper):
    """Strategy wrapper that leaves bad replies out of the aggregate (see the module doc).

    Parameters
    ----------
    strategy : Strategy
        The strategy that aggregates the replies that pass.
    max_update_norm : float
        Absolute bound on a reply's update norm (0: none).
    delta_replies : bool
        Clients reply updates (Δ) rather than whole arrays: the norm is the reply's own.
    update_guard : str
        What a reply beyond a size limit gets: ``reject``, ``clip``, or ``off`` (no limit).
    update_guard_k : float
        The relative limit: k × the round's lower-median update norm, per group (α, θ).
    alpha_pattern : str
        Regular expression naming the α arrays (the rest is θ).
    """

    def __init__(self, strategy: Strategy, max_update_norm: float = 0.0, delta_replies: bool = False,
                 update_guard: str = "reject", update_guard_k: float = 10.0, alpha_pattern: str = "^alpha") -> None:
        super().__init__(strategy)
        self.bound = UpdateBound(update_guard, float(update_guard_k), float(max_update_norm), alpha_pattern)
        self.max_update_norm = float(max_update_norm)
        self.delta_replies = delta_replies
        self.weight_key = weight_key_of(strategy)
        self.rejections: list[Rejection] = []  # this round's
        self.clippings: list[Rejection] = []  # this round's clipped replies, how each was clipped
        self.kept_previous: str | None = None  # why this round kept the previous global model
        self._sent: dict[int, Sent] = {}
        self._round = 0

    def __repr__(self) -> str:
        return f"ReplyGuard({self.strategy!r})"

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        messages = list(self.strategy.configure_train(server_round, arrays, config, grid))
        cache: dict[int, Sent] = {}  # messages usually share one ArrayRecord: decode it once
        self._sent = {}
        for msg in messages:
            key = id(next(iter(msg.content.array_records.values()), None))
            if key not in cache:
                cache[key] = sent_arrays(msg)
            self._sent[int(msg.metadata.dst_node_id)] = cache[key]
        self._round, self.rejections, self.clippings = server_round, [], []
        return messages

    def assess(self, server_round: int, replies: Iterable[Message]) -> list[Sizing]:
        """Each train reply's verdict (rejected, clipped, accepted). Pure: no logging."""
        return assess_replies(list(replies), self._sent if server_round == self._round else {},
                              self.weight_key, self.bound, self.delta_replies)

    def judge(self, server_round: int, replies: Iterable[Message]) -> list[str | None]:
        """Each train reply's reason to be rejected (None: accepted, clipped or not). Pure: no logging."""
        return [v.reason for v in self.assess(server_round, replies)]

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        verdicts = self.assess(server_round, replies)
        self.rejections = self._reject(server_round, replies, [v.reason for v in verdicts])
        self.clippings = []
        for msg, v in zip(replies, verdicts):
            if v.clipped:
                clip_reply(msg, self._sent[int(msg.metadata.src_node_id)], self.delta_replies, v, self.bound)
                pid = partition_of(msg)
                self.clippings.append(Rejection(server_round, int(msg.metadata.src_node_id), pid, v.note))
                log.warning("round %d: reply of node %d (partition %s) clipped: %s",
                            server_round, msg.metadata.src_node_id, pid, v.note)
        kept = [m for m, v in zip(replies, verdicts) if v.reason is None]
        self.kept_previous = None
        if not any(not m.has_error() for m in kept):
            return self._keep(server_round, f"no reply left to aggregate ({len(self.rejections)} rejected, "
                                            f"{sum(m.has_error() for m in replies)} failed)")
        arrays, metrics = self.strategy.aggregate_train(server_round, kept)
        if arrays is not None and not finite_record(arrays):  # e.g. a sum that overflowed
            return self._keep(server_round, "the aggregate is not finite", metrics)
        return arrays, metrics

    def _keep(self, server_round: int, reason: str, metrics: MetricRecord | None = None) -> tuple[None, MetricRecord | None]:
        """No new global model this round: Flower keeps the previous one."""
        log.warning("round %d: %s: the global model stays as it was", server_round, reason)
        self.kept_previous = reason
        return None, metrics

    def _reject(self, server_round: int, replies: list[Message], verdicts: list[str | None]) -> list[Rejection]:
        out = []
        for msg, reason in zip(replies, verdicts):
            if reason is not None:
                pid = partition_of(msg)
                out.append(Rejection(server_round, int(msg.metadata.src_node_id), pid, reason))
                log.warning("round %d: reply of node %d (partition %s) rejected: %s",
                            server_round, msg.metadata.src_node_id, pid, reason)
        return out

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        replies = list(replies)
        verdicts = judge_replies(replies, None, self.weight_key)
        for msg, reason in zip(replies, verdicts):
            if reason is not None:
                log.warning("round %d: evaluate reply of node %d rejected: %s", server_round,
                            msg.metadata.src_node_id, reason)
        kept = [m for m, v in zip(replies, verdicts) if v is None]
        return self.strategy.aggregate_evaluate(server_round, kept) if kept else None

    def summary(self) -> None:
        log.info("\t├──> ReplyGuard: names, shapes, dtypes, finite values; update size: %s",
                 self.bound.describe())
        self.strategy.summary()
