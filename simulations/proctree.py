"""The processes a launcher started, found from the pids it holds and stopped; never by name.

Flower's SuperLink starts its SuperExec in a session of its own (``setsid``), which starts
the ServerApp; a SuperNode starts a SuperExec that starts a ClientApp process per message;
``ray start --block`` starts Ray's daemons and workers. Signalling the one process a
launcher started therefore leaves the rest behind, and this machine's init does not reap
orphans, so Flower's parent-pid watchdogs see a zombie parent as alive and never exit.
What belongs to a launched process is taken here as: the process, its descendants, and
every member of a session one of them leads (where orphans stay once their parent died).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from collections.abc import Iterable

import psutil

log = logging.getLogger(__name__)


def _sid(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except (ProcessLookupError, PermissionError):
        return None


def family(roots: Iterable[int]) -> list[psutil.Process]:
    """``roots``, their descendants and the members of sessions they lead (never ours)."""
    found: dict[int, psutil.Process] = {}
    for pid in roots:
        try:
            root = psutil.Process(pid)
            for proc in (root, *root.children(recursive=True)):
                found[proc.pid] = proc
        except psutil.NoSuchProcess:
            continue
    leaders = {pid for pid in found if _sid(pid) == pid} - {os.getsid(0)}
    if leaders:
        for proc in psutil.process_iter():
            if proc.pid not in found and _sid(proc.pid) in leaders:
                found[proc.pid] = proc
    found.pop(os.getpid(), None)
    return list(found.values())


def _alive(procs: Iterable[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            continue
    return out


def _send(procs: Iterable[psutil.Process], sig: int) -> None:
    for p in procs:
        try:
            p.send_signal(sig)
        except psutil.NoSuchProcess:
            continue


def stop(popens: Iterable[subprocess.Popen], grace: float = 10.0, also: Iterable[int] = ()) -> list[int]:
    """SIGTERM every process of these launched ones and of the pids ``also`` (:func:`family`),
    SIGKILL what outlives ``grace`` s, reap the ones we started; return the pids that would not stop.

    The family is listed before anything is signalled, so processes re-parented when
    their parent dies are still in it.
    """
    popens = list(popens)
    procs = _alive(family([*(p.pid for p in popens), *also]))
    _send(procs, signal.SIGTERM)
    _, left = psutil.wait_procs(procs, timeout=grace)
    if left:
        log.info("%d process(es) still running %.0f s after SIGTERM: SIGKILL %s", len(left), grace,
                 [p.pid for p in left])
        _send(left, signal.SIGKILL)
        _, left = psutil.wait_procs(left, timeout=grace)
    for p in popens:  # no zombie of ours left behind
        try:
            p.wait(timeout=1)
        except subprocess.TimeoutExpired:
            pass
    return [p.pid for p in _alive(left)]


def snapshot(popens: Iterable[subprocess.Popen], into: dict[int, float]) -> dict[int, float]:
    """Add every live process of these launched ones to ``into`` (pid -> start time)."""
    for p in family(q.pid for q in popens):
        try:
            into.setdefault(p.pid, p.create_time())
        except psutil.NoSuchProcess:
            continue
    return into


def still_running(seen: dict[int, float]) -> list[int]:
    """The processes of ``seen`` (pid -> start time) still alive (a reused pid is not one of them)."""
    out = []
    for pid, started in seen.items():
        try:
            p = psutil.Process(pid)
            if p.create_time() == started and p.status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            continue
    return out


class Launched:
    """Processes started together (a context manager): ``start()`` on entry, ``stop()`` on exit,
    also when starting fails half-way. Subclasses fill ``procs`` as they start processes;
    ``seen`` keeps every process of theirs observed alive (pid -> start time)."""

    what = "processes"

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.seen: dict[int, float] = {}

    def start(self) -> Launched:
        raise NotImplementedError

    def note_processes(self) -> None:
        """Remember every live process of these (their children's children included)."""
        snapshot(self.procs, self.seen)

    def stop(self) -> None:
        """Stop them all, and what they started, by the ids held (with orphans seen earlier
        whose parent has died since)."""
        self.note_processes()
        left = stop(self.procs, also=still_running(self.seen))
        if left:
            log.warning("%s: processes %s would not stop", self.what, left)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
