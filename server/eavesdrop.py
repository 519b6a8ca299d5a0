"""The eavesdropping strategy wrapper: records what crosses the wire, changes nothing.

``Eavesdropper(strategy, store)`` wraps any Flower ``Strategy`` the way Flower's DP
wrappers do: it holds ``self.strategy`` and forwards every method. On the way out
(``configure_train``) it records, per destination node, the arrays the server sent (α_t1,
and θ_t1 when sent) and the train ConfigRecord (lr, local steps, B, optimizer, round). On
the way back (``aggregate_train``) it records each reply's α_t2, the partition-id from
the reply's ``client`` ConfigRecord and the reply's metrics; then it hands the very same
replies to the inner strategy. Which samples a client used never crosses the wire, so it
never sees them (scoring reads them from the clients' own records: :mod:`fednas.truth`).
α is found among a message's arrays by a regular expression on the names, so the wrapper
needs nothing from this project's ClientApp. Recording never raises into the federation:
a problem is logged and, where a reply is concerned, stored as a failed capture. With a
``judge`` (e.g. ``ReplyGuard.judge`` of a guard inside it) a reply the server will leave
out of the aggregate is still recorded, as a ``rejected`` capture with the guard's reason.
When the train config asks for updates (``reply = "delta"``, :mod:`fednas.updates`) the
reply carries Δα; the eavesdropper, which recorded α_t1 going out, stores α_t2 = α_t1 + Δα,
so a capture means the same with either reply form.

The captures describe themselves (``captures/manifest.json``, :class:`fednas.captures.Manifest`):
the victim's model, which arrays are α, and per capture the client's α settings as far as
the wire shows them. For another Flower app, :func:`server.plugin.eavesdrop` is the entry
point (docs/plugin.md).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fednas.captures import CaptureStore, Manifest, split_arrays
from fednas.schema import CLIENT_RECORD, PARTITION_KEY
from fednas.updates import REPLY_KEY, apply_update
from server.wrapping import StrategyWrapper

log = logging.getLogger(__name__)


def message_arrays(msg: Message) -> dict[str, np.ndarray]:
    """Every array of every ArrayRecord in a message, by name (first record wins on a clash)."""
    out: dict[str, np.ndarray] = {}
    for record in msg.content.array_records.values():
        for name, array in record.items():
            out.setdefault(name, array.numpy())
    return out


def message_configs(msg: Message, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The values of a message's ConfigRecords (copied: the server reuses its record)."""
    out: dict[str, Any] = {}
    for key, record in msg.content.config_records.items():
        if key not in skip:
            out.update(dict(record))
    return out


def message_metrics(msg: Message) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for record in msg.content.metric_records.values():
        out.update(dict(record))
    return out


class Eavesdropper(StrategyWrapper):
    """Strategy wrapper that records each client's α before and after its round.

    Parameters
    ----------
    strategy : Strategy
        The strategy to wrap; it sees and returns exactly what it would alone.
    store : CaptureStore
        Where captures go (``<run-dir>/captures``).
    alpha_pattern : str
        Regular expression (``re.search``) naming the α arrays; every other array is θ.
    on_capture : callable, optional
        Called with each new capture's id (e.g. to schedule its attack).
    manifest : Manifest, optional
        What the captures are of (model, input, where the client's settings are on the
        wire); default: this project's app, α by ``alpha_pattern``. Its pattern wins.
    judge : callable, optional
        ``judge(server_round, replies)`` -> each reply's reason to be rejected, or None.
    """

    def __init__(self, strategy: Strategy, store: CaptureStore, alpha_pattern: str = "^alpha",
                 on_capture: Callable[[str], None] | None = None, manifest: Manifest | None = None,
                 judge: Callable[[int, list[Message]], list[str | None]] | None = None) -> None:
        self.strategy = strategy
        self.store = store
        self.manifest = manifest if manifest is not None else Manifest(alpha_pattern=alpha_pattern)
        self.alpha_pattern = self.manifest.alpha_pattern
        self.store.write_manifest(self.manifest)  # before the first round: a bad run dir fails now
        self.on_capture = on_capture
        self.judge = judge
        self.captures: list[str] = []
        self._sent: dict[tuple[int, int], dict[str, Any]] = {}
        self._untagged: set[int] = set()  # nodes whose replies carry no partition-id (said once)

    def __getattr__(self, name: str) -> Any:
        # Anything else the inner strategy offers (e.g. a DP wrapper's privacy_spent).
        if name == "strategy":
            raise AttributeError(name)
        return getattr(self.strategy, name)

    # ------------------------------------------------------------------ train
    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        messages = list(self.strategy.configure_train(server_round, arrays, config, grid))
        self._sent = {}
        for msg in messages:
            try:
                self._record_sent(server_round, msg)
            except Exception as err:  # recording must never stop the federation
                log.warning("eavesdropper: round %d: could not record the message to node %s: %s: %s",
                            server_round, msg.metadata.dst_node_id, type(err).__name__, err)
        return messages

    def _record_sent(self, server_round: int, msg: Message) -> None:
        alpha, theta = split_arrays(message_arrays(msg), self.alpha_pattern)
        if alpha and not self.manifest.arrays:  # the manifest learns the arrays' names and shapes once
            self.manifest = dataclasses.replace(self.manifest, arrays={
                part: {k: list(np.shape(v)) for k, v in arrays.items()} for part, arrays in (("alpha", alpha), ("theta", theta))})
            self.store.write_manifest(self.manifest)
        sent = self.store.write_sent(server_round, alpha, theta) if alpha else None
        config = message_configs(msg)
        self._sent[(server_round, msg.metadata.dst_node_id)] = {
            "sent": sent, "config": config, "has-theta": bool(theta),
            # α_t1 itself only where the reply will be an update to add it to
            "alpha-t1": alpha if config.get(REPLY_KEY) == "delta" else None,
        }

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        for msg, rejected in zip(replies, self._verdicts(server_round, replies)):
            try:
                self._record_reply(server_round, msg, rejected)
            except Exception as err:  # recording must never stop the federation
                log.warning("eavesdropper: round %d: could not record the reply of node %s: %s: %s",
                            server_round, msg.metadata.src_node_id, type(err).__name__, err)
        return self.strategy.aggregate_train(server_round, replies)

    def _verdicts(self, server_round: int, replies: list[Message]) -> list[str | None]:
        if self.judge is None:
            return [None] * len(replies)
        try:
            return list(self.judge(server_round, replies))
        except Exception as err:  # recording must never stop the federation
            log.warning("eavesdropper: round %d: the judge failed: %s: %s", server_round, type(err).__name__, err)
            return [None] * len(replies)

    def _record_reply(self, server_round: int, msg: Message, rejected: str | None = None) -> None:
        node = int(msg.metadata.src_node_id)
        if msg.has_error():
            log.info("eavesdropper: round %d: node %d replied an error (%s); nothing to capture",
                     server_round, node, msg.error.reason)
            return
        sent = self._sent.get((server_round, node), {})
        alpha_t2, _ = split_arrays(message_arrays(msg), self.alpha_pattern)
        delta_problem = None
        if sent.get("alpha-t1") is not None and alpha_t2:
            try:  # the reply is Δα: the client's α is what was sent plus it
                alpha_t2 = apply_update(sent["alpha-t1"], alpha_t2)
            except (KeyError, ValueError) as err:
                delta_problem = f"the reply's delta cannot be added to the alpha sent: {err}"
        client = dict(msg.content.config_records.get(CLIENT_RECORD, {}))
        pid = client.get(PARTITION_KEY)
        if pid is None:
            self._say_untagged(node)
        status, reason = "ok", ""
        if not sent.get("sent"):
            status, reason = "failed", f"no alpha (pattern {self.alpha_pattern!r}) was recorded going to node {node}"
        elif not alpha_t2:
            status, reason = "failed", f"the reply has no array matching alpha-pattern {self.alpha_pattern!r}"
        elif delta_problem:
            status, reason = "failed", delta_problem
        if rejected is not None:  # kept for the record; the attack refuses it (status is not ok)
            status, reason = "rejected", f"rejected by the server: {rejected}"
        metrics = message_metrics(msg)
        settings, source = self.manifest.resolve(sent.get("config", {}), metrics)
        cid = self.store.write(
            server_round=server_round, node_id=node, sent=sent.get("sent"), alpha_t2=alpha_t2,
            partition_id=None if pid is None else int(pid), train_config=sent.get("config", {}),
            metrics=metrics, status=status, reason=reason,
            extra={"has-theta": sent.get("has-theta", False), "alpha-pattern": self.alpha_pattern,
                   "alpha-arrays": sorted(alpha_t2), "client-settings": settings,
                   "client-settings-source": source},
        )
        if status != "ok":
            log.warning("eavesdropper: capture %s %s: %s", cid, status, reason)
        self.captures.append(cid)
        if self.on_capture is not None:
            self.on_capture(cid)

    def _say_untagged(self, node: int) -> None:
        """Name, once per run, the replies that carry no partition-id (not once per round)."""
        if not self._untagged:
            log.warning("eavesdropper: node %d replied without a partition-id (a %r ConfigRecord holding %r, "
                        "clients.plugin.tag_reply): its captures cannot be matched to the client's truth records, "
                        "and the report keeps them apart by node id (said once, whichever nodes and rounds follow)",
                        node, CLIENT_RECORD, PARTITION_KEY)
        self._untagged.add(node)

    # ------------------------------------------------------------------ evaluate
    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return self.strategy.aggregate_evaluate(server_round, replies)

    def untagged_nodes(self) -> list[int]:
        """Nodes whose replies carried no partition-id."""
        return sorted(self._untagged)

    def summary(self) -> None:
        log.info("\t├──> Eavesdropper: recording alpha (pattern %r) into %s", self.alpha_pattern, self.store.dir)
        self.strategy.summary()
