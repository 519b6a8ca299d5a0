"""Free TCP ports for the services a launcher starts (SuperLinks, SuperNodes, Ray nodes).

A port is only known to be free when it is picked; the service binds it later. Two things
can take it in between, and both made a Ray node fail to start:

- an outgoing connection: the kernel gives those source ports from its ephemeral range
  (``/proc/sys/net/ipv4/ip_local_port_range``), which is also where ``bind(port 0)``
  picks. Ray and Flower open hundreds of connections while they start. Ports are
  therefore picked *below* that range, and above Ray's own default worker ports
  (10002–19999);
- another pick of the same process: a Ray node needs 22 ports at once, and picks that
  are not bound yet are not seen as used. A process never hands out the same port twice.
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

LOWEST = 20000  # above Ray's default --min-worker-port/--max-worker-port (10002–19999)
EPHEMERAL_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
EPHEMERAL_DEFAULT = (32768, 60999)  # Linux's default, where the file cannot be read
TRIES = 200

_handed_out: set[int] = set()
_lock = threading.Lock()
_pick = random.SystemRandom()  # not the global stream: a seeded or forked one would repeat its picks


def ephemeral_range(path: Path | None = None) -> tuple[int, int]:
    """The kernel's ephemeral port range (first, last), from ``path`` (``EPHEMERAL_FILE``)."""
    try:
        lo, hi = (int(v) for v in (path or EPHEMERAL_FILE).read_text().split())
    except (OSError, ValueError):
        return EPHEMERAL_DEFAULT
    return lo, hi


def bindable(port: int) -> bool:
    """Whether ``port`` can be bound on 127.0.0.1 now (no listener, nothing in TIME_WAIT)."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _kernel_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, outside the ephemeral range where possible, and
    never one this process handed out before."""
    lo = ephemeral_range()[0]
    with _lock:
        for _ in range(TRIES):
            # a machine whose ephemeral range starts low leaves no room below it: ask the kernel
            port = _pick.randrange(LOWEST, lo) if lo - LOWEST >= 1000 else _kernel_port()
            if port not in _handed_out and bindable(port):
                _handed_out.add(port)
                return port
    raise OSError(f"no free TCP port on 127.0.0.1 after {TRIES} tries (below {lo}, the ephemeral range's start)")
