"""The client half of ``reply = "delta"``: turn a train reply's weights into the round's update.

Registered outermost on train (``@app.train(mods=[delta_reply_mod, ...])``), so that the
DP mods inside it have already clipped and noised the update (they work on sent −
received whatever the form): this mod only subtracts what the server sent. It acts when
the server's train config asks for it (``reply = "delta"``, set by ``server.deltas.DeltaReplies``),
passes every other message through, and answers an error (the server counts a failed
client) when the reply holds an array the server did not send, which has no update.
"""

from __future__ import annotations

import logging

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Error, Message, MessageType
from flwr.clientapp.typing import ClientAppCallable
from flwr.common.constant import ErrorCode

from fednas.updates import REPLY_KEY, update_of

log = logging.getLogger(__name__)


def delta_reply_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Reply Δ = reply − received for the ``arrays`` record when the server asks for deltas."""
    if msg.metadata.message_type != MessageType.TRAIN or "config" not in msg.content.config_records:
        return call_next(msg, context)
    if msg.content["config"].get(REPLY_KEY, "weights") != "delta":
        return call_next(msg, context)
    received = {k: np.array(v.numpy(), copy=True) for k, v in msg.content["arrays"].items()}
    out = call_next(msg, context)
    if out.has_error() or "arrays" not in out.content.array_records:
        return out
    sent = {k: v.numpy() for k, v in out.content["arrays"].items()}
    try:
        delta = update_of(sent, received)
    except (KeyError, ValueError) as err:
        reason = f"delta_reply_mod: cannot reply an update: {err}"
        log.error(reason)
        return Message(Error(code=ErrorCode.MOD_FAILED_PRECONDITION, reason=reason), reply_to=msg)
    out.content["arrays"] = ArrayRecord({k: Array(np.ascontiguousarray(delta[k])) for k in sent})
    return out
