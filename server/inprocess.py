"""A Flower Grid that delivers messages to ClientApp functions in this process (no Ray).

Real ``Message`` objects and records travel both ways, replies are built with
``Message(content, reply_to=msg)`` as a SuperNode would, and a client function that raises
becomes an error reply: what a strategy and its wrappers see is what they see in a
simulation, minus the transport. The tests drive strategies with it, and
``simulations.tables`` runs the whole ServerApp on it (``server.server_app.main``) with
the real ClientApp as every node.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flwr.app import Context, Error, Message, MessageType, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity

ClientFn = Callable[[Message, Context], Message]


def through(app: Any) -> ClientFn:
    """A ClientApp as a client function: every call goes through its mods, as in a SuperNode."""
    return lambda msg, context: app(message=msg, context=context)


class InProcessGrid(Grid):
    """``num_nodes`` SuperNodes (partition ids 0..N-1) answering with ``train``/``evaluate``/``query``
    (each may be a whole ``ClientApp``, which dispatches by message type itself)."""

    def __init__(self, run_config: Mapping[str, Any], num_nodes: int, train: ClientFn, evaluate: ClientFn | None = None,
                 first_node_id: int = 1001, query: ClientFn | None = None) -> None:
        self.train, self.evaluate, self.query = train, evaluate, query
        # What Flower's ServerApp runtime sets in its process; messages read it.
        for attr, value in (("_run_id", 1), ("_node_id", 0), ("_task_id", 1)):
            if getattr(TaskIdentity, attr) is None:
                setattr(TaskIdentity, attr, value)
        self.contexts = {
            first_node_id + i: Context(run_id=1, node_id=first_node_id + i,
                                       node_config={"partition-id": i, "num-partitions": num_nodes},
                                       state=RecordDict(), run_config=dict(run_config))
            for i in range(num_nodes)
        }
        self._run = None
        self._ids = itertools.count(1)
        self._replies: dict[str, Message] = {}
        self.sent: list[Message] = []

    def set_run(self, run: Any) -> None:
        self._run = run

    @property
    def run(self) -> Any:
        return self._run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str,
                       ttl: float | None = None) -> Message:
        return Message(content=content, message_type=message_type, dst_node_id=dst_node_id, group_id=group_id, ttl=ttl)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def _deliver(self, msg: Message) -> Message:
        msg.metadata.__dict__["_message_id"] = f"m{next(self._ids)}"  # as InMemoryGrid does
        self.sent.append(msg)
        category = msg.metadata.message_type.split(".")[0]
        fn = {MessageType.TRAIN: self.train, MessageType.EVALUATE: self.evaluate, MessageType.QUERY: self.query}.get(category)
        if fn is None:
            return Message(Error(code=1, reason=f"no {category} function"), reply_to=msg)
        try:
            return fn(msg, self.contexts[msg.metadata.dst_node_id])
        except Exception as err:  # a failing client becomes an error reply, as in a simulation
            return Message(Error(code=2, reason=f"{type(err).__name__}: {err}"), reply_to=msg)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for msg in messages:
            reply = self._deliver(msg)
            self._replies[msg.metadata.message_id] = reply
            ids.append(msg.metadata.message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(i) for i in message_ids if i in self._replies]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        return self.pull_messages(self.push_messages(messages))
