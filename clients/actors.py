"""Let Ray restart a simulated client's actor when its process dies.

Flower 1.42's simulation runs every ClientApp call in a pool of Ray actors
(``flwr.simulation.ray_transport.ray_actor``). The actors are created with the resources
of the federation config and nothing else, so Ray's ``max_restarts`` is 0: when a client's
process dies (``os._exit``, a segfault, an OOM kill), its actor stays dead, Flower puts the
dead handle back into the pool, and every later message routed to it fails, healthy
clients included. The backend config has no field for actor options (the federation
config's ``client-resources-*`` only carry CPUs and GPUs), so the one place left is the
actor class's default options, which Ray merges into the ``.options(...)`` call that
creates each actor.

The simulation process loads the ClientApp (this package) once before it builds the actor
pool (``vce_api.start_vce``: "Test if ClientApp can be loaded", then ``run_api``), so
setting the default there, at import, reaches every actor.

Measured with Ray 2.55 (one actor, a call that ends its process, then plain calls):
without restarts every later call fails (``ActorDiedError``); with ``max_restarts`` alone
the calls made while the actor restarts (about 2-4 s here) still fail
(``ActorUnavailableError``); with one task retry as well (``max_task_retries = 1``) the
next call waits for the restarted actor and succeeds. The retry also runs the call that
crashed once more, so a client that crashes on every call crashes twice per round, and
its reply is an error either way. ``FEDNAS_ACTOR_MAX_RESTARTS`` sets the restart limit
(default -1: unlimited; 0: Flower's own behaviour, no restart and no retry).
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)

ENV = "FEDNAS_ACTOR_MAX_RESTARTS"
TASK_RETRIES = 1  # lets a call that reaches a restarting actor wait for it (see above)


def max_restarts() -> int:
    """The restart limit from ``FEDNAS_ACTOR_MAX_RESTARTS`` (-1: unlimited)."""
    text = os.environ.get(ENV, "-1").strip()
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{ENV}={text!r}: expected an integer (-1: unlimited, 0: off)") from None
    if value < -1:
        raise ValueError(f"{ENV}={value}: expected -1 (unlimited), 0 (off) or a positive count")
    return value


def restart_dead_actors(force: bool = False) -> int | None:
    """Make Flower's client actors restartable; return the limit set (None: not applied).

    Only acts in a process running Flower's simulation engine (or with ``force``): a
    SuperNode's ClientApp process in a deployment has no actors and should not import Ray.
    """
    if not force and "flwr.simulation" not in sys.modules:
        return None
    limit = max_restarts()
    try:
        from flwr.simulation.ray_transport.ray_actor import ClientAppActor
    except ImportError:  # flwr without its simulation extra: no actors to restart
        return None
    options = getattr(ClientAppActor, "_default_options", None)
    if not isinstance(options, dict):
        log.warning("cannot make Flower's client actors restartable: ray.actor.ActorClass has no "
                    "_default_options in this Ray version; a client process that dies stays dead")
        return None
    if limit == 0:
        options.pop("max_restarts", None)
        options.pop("max_task_retries", None)
    else:
        options.update(max_restarts=limit, max_task_retries=TASK_RETRIES)
    return limit
