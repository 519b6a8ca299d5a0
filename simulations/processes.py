"""The processes a launcher started, found from what it holds and stopped, never by name;
and SIGINT/SIGTERM turned into an exception the launcher can clean up after.

Flower's local SuperLink runs in a session of its own (the launcher starts it so); its
SuperExec calls ``setsid`` and starts the ServerApp (``flwr-simulation``) and, through it,
Ray's head (``gcs_server``, ``raylet``, the workers and agents) inside that second session.
A SuperNode starts a SuperExec that starts a ClientApp process per message; ``ray start
--block`` starts Ray's daemons and workers. Signalling the one process a launcher started
therefore leaves the rest behind, and this machine's init does not reap orphans, so
Flower's parent-pid watchdogs see a zombie parent as alive and never exit.

What belongs to a run is found here (:func:`run_processes`) from what the launcher holds:
the pids it started, every descendant of those, every member of a session one of them
leads (where orphans stay once their parent died), and every process whose environment
carries the run's tag (``TAG_ENV``, a random id the launcher puts into the environment it
starts Flower with: it survives re-parenting and a dead session leader). A
:class:`Launched` group also remembers every process of it seen alive (pid and start
time), so that an orphan whose session leader has died since is still stopped. Only
those are signalled.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterable, Iterator

import psutil

log = logging.getLogger(__name__)

TAG_ENV = "FEDNAS_RUN_TAG"

Root = int | subprocess.Popen  # a pid, or a process this launcher started


def new_tag() -> str:
    """A fresh tag for one launch's processes (put it into their environment as ``TAG_ENV``)."""
    return uuid.uuid4().hex


def _pid(root: Root) -> int | None:
    """A root's pid; None for a started process already reaped (its pid may be someone else's
    now). One not yet reaped keeps its pid, zombie or not, and a zombie still leads its session."""
    if isinstance(root, subprocess.Popen):
        return root.pid if root.returncode is None else None
    return int(root)


def _sid(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except (ProcessLookupError, PermissionError):
        return None


def run_processes(roots: Iterable[Root], tag: str | None = None,
                  exclude_sessions: Iterable[int] = ()) -> list[psutil.Process]:
    """The processes of ``roots``, their descendants, the members of their sessions and,
    with ``tag``, every process whose environment has ``TAG_ENV=tag`` (and its descendants).

    A session is included when one of these processes leads it (its id is the leader's
    pid), so a session shared with something else (the caller's terminal, say) is never
    swept: ``exclude_sessions`` (and the caller's own session) are never swept either.
    The caller itself is never in the list.
    """
    excluded = {os.getsid(0), *exclude_sessions}
    found: dict[int, psutil.Process] = {}
    for root in roots:
        pid = _pid(root)
        proc = _process(pid) if pid is not None else None
        if proc is not None:
            for member in (proc, *_children(proc)):
                found[member.pid] = member
    leaders = {pid for pid in found if _sid(pid) == pid} - excluded
    for proc in psutil.process_iter() if leaders or tag else ():
        if proc.pid not in found and (_sid(proc.pid) in leaders or (tag is not None and _tagged(proc, tag))):
            for member in (proc, *_children(proc)):
                found.setdefault(member.pid, member)
    found.pop(os.getpid(), None)
    return list(found.values())


def session_members(sid: int, tag: str) -> list[psutil.Process]:
    """The processes of session ``sid`` whose environment has ``TAG_ENV=tag``: what a session
    leader started and left behind when it exited (the tag keeps a reused id from matching)."""
    return [p for p in psutil.process_iter() if _sid(p.pid) == sid and _tagged(p, tag)]


def _tagged(proc: psutil.Process, tag: str) -> bool:
    try:
        return proc.environ().get(TAG_ENV) == tag
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return False


def _children(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


def alive(procs: Iterable[psutil.Process | None]) -> list[psutil.Process]:
    """Those still running (``is_running`` also checks the pid was not reused; a zombie is not running)."""
    out = []
    for p in procs:
        if p is None:
            continue
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            continue
    return out


def terminate(procs: Iterable[psutil.Process | int], grace: float = 3.0) -> list[psutil.Process]:
    """SIGTERM every process (or pid), SIGKILL those alive after ``grace`` s; return survivors.

    The list is taken before anything is signalled, so children that get re-parented
    when their parent dies are still in it.
    """
    procs = alive(p if isinstance(p, psutil.Process) else _process(p) for p in procs)
    _signal(procs, signal.SIGTERM)
    _, left = psutil.wait_procs(procs, timeout=grace)
    if left:
        log.info("%d process(es) still running %.0f s after SIGTERM, SIGKILL: %s", len(left), grace,
                 ", ".join(_name(p) for p in left))
        _signal(left, signal.SIGKILL)
        _, left = psutil.wait_procs(left, timeout=grace)
    return alive(left)


def _name(proc: psutil.Process) -> str:
    try:
        return f"{proc.pid} {os.path.basename((proc.cmdline() or [proc.name()])[0])}"
    except psutil.Error:
        return str(proc.pid)


def _signal(procs: Iterable[psutil.Process], sig: int) -> None:
    for p in procs:
        try:
            p.send_signal(sig)
        except (psutil.NoSuchProcess, ProcessLookupError):
            continue


def stop_run_processes(roots: Iterable[Root], tag: str | None = None, grace: float = 3.0) -> list[psutil.Process]:
    """Find (:func:`run_processes`) and stop (:func:`terminate`) a run's processes; return
    those that would not stop. Roots given as ``Popen`` are reaped (no zombie of ours is left)."""
    roots = list(roots)
    t0 = time.monotonic()
    procs = run_processes(roots, tag)
    left = terminate(procs, grace)
    for root in roots:
        if isinstance(root, subprocess.Popen):
            with contextlib.suppress(subprocess.TimeoutExpired):
                root.wait(timeout=1)
    log.info("stopped %d process(es) in %.1f s%s", len(procs) - len(left), time.monotonic() - t0,
             f"; {len(left)} would not stop: {[p.pid for p in left]}" if left else "")
    return left


def snapshot(roots: Iterable[Root], into: dict[int, float], tag: str | None = None) -> dict[int, float]:
    """Add every live process of ``roots`` (:func:`run_processes`) to ``into`` (pid -> start time)."""
    for p in alive(run_processes(roots, tag)):
        with contextlib.suppress(psutil.NoSuchProcess):
            into.setdefault(p.pid, p.create_time())
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


class Launched(abc.ABC):
    """Processes started together (a context manager): ``start()`` on entry, ``stop()`` on exit,
    also when starting fails half-way.

    Subclasses fill ``procs`` as they start processes, with ``tag`` in their environment
    (``TAG_ENV``); ``seen`` keeps every process of theirs observed alive (pid -> start time).
    """

    what = "processes"
    grace = 10.0  # seconds between SIGTERM and SIGKILL

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.seen: dict[int, float] = {}
        self.tag = new_tag()

    @abc.abstractmethod
    def start(self) -> Launched:
        """Start the processes (filling ``procs``) and return self."""

    def note_processes(self) -> None:
        """Remember every live process of these (their children's children included)."""
        snapshot(self.procs, self.seen, self.tag)

    def stop(self) -> None:
        """Stop them all, and what they started, by the ids held (with orphans seen earlier
        whose session leader has died since)."""
        self.note_processes()
        left = stop_run_processes([*self.procs, *still_running(self.seen)], self.tag, self.grace)
        if left:
            log.warning("%s: processes %s would not stop", self.what, [p.pid for p in left])

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def listening_process(port: int) -> psutil.Process | None:
    """This user's process listening on TCP ``port`` (None when there is none, or not ours)."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:  # some systems restrict the table: look at our own processes
        conns = [c for p in psutil.process_iter() for c in _connections(p)]
    me = psutil.Process().username()
    for c in conns:
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
            proc = _process(c.pid)
            if proc is not None and proc.username() == me:
                return proc
    return None


def _connections(proc: psutil.Process) -> list:
    try:
        return [c._replace(pid=proc.pid) for c in proc.net_connections(kind="tcp")]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


# ---------------------------------------------------------------------------- signals


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived (a KeyboardInterrupt, so ``except Exception`` lets it by)."""

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        self.name = signal.Signals(signum).name
        super().__init__(f"stopped by {self.name}")

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + the signal's number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum


class StopSignals:
    """Inside ``with StopSignals() as s:``, the first SIGINT/SIGTERM raises :class:`Interrupted`
    in the main thread; later ones are only logged. Inside ``s.shield()`` (clean-up) even
    the first is only recorded (``received``), for the caller to act on afterwards. Outside
    the main thread (where Python cannot install handlers) it does nothing.
    """

    def __init__(self, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> None:
        self.signals = signals
        self.received: int | None = None
        self._shielded = False
        self._saved: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._saved = {s: signal.signal(s, self._handle) for s in self.signals}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._saved.items():
            signal.signal(s, handler)
        self._saved = {}

    def _handle(self, signum: int, frame: object) -> None:
        first = self.received is None
        if first:
            self.received = signum
        if first and not self._shielded:
            raise Interrupted(signum)
        log.warning("%s received: already stopping, please wait", signal.Signals(signum).name)

    @contextlib.contextmanager
    def shield(self) -> Iterator[None]:
        """Clean-up that a signal must not cut short."""
        self._shielded = True
        try:
            yield
        finally:
            self._shielded = False

    @property
    def interrupted(self) -> Interrupted | None:
        return Interrupted(self.received) if self.received is not None else None
