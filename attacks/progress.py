"""Progress of an attack run: per capture its stage, iteration, best match and an ETA.

An attack reports through a :class:`CaptureTracker` (``tracker(stage, done, total, best)``);
the events reach one :class:`Board` in the process that runs the report, directly or,
from worker processes, through a queue (:class:`QueueSink`, :class:`Listener`). The board
shows them two ways:

- ``bars`` (the offline CLI, ``python -m attacks.adra RUN_DIR``): tqdm bars, one for the
  run and one per capture in flight;
- log lines (the federated run's log, online attacks): tqdm's meter text, every
  ``every`` seconds and whenever a capture finishes.

The ETA of a capture comes from the pace of its current stage and that stage's most
iterations (a solver that stops at a plateau finishes sooner: the ETA is an upper bound);
the run's ETA from the seconds the finished captures took.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    """One report of one capture's attack."""

    capture: str
    stage: str  # the solver's stage (screen, refine, final); "done" when the attack returned
    done: int
    total: int
    best: float | None
    stage_started: float  # time.time() of the stage's first report
    started: float  # time.time() when the capture's attack started
    now: float

    def eta(self) -> float | None:
        """Seconds left in this stage at its current pace (an upper bound where the solver stops early)."""
        if self.done <= 0 or self.total <= self.done:
            return None
        return (self.now - self.stage_started) / self.done * (self.total - self.done)

    def text(self) -> str:
        best = "–" if self.best is None else f"{self.best:.4g}"
        eta = self.eta()
        return (f"{self.capture}: {self.stage} {self.done}/{self.total}, best match {best}, "
                f"{human(self.now - self.started)} so far" + ("" if eta is None else f", ETA ≤ {human(eta)}"))


def human(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


class CaptureTracker:
    """What an attack calls to report; forwards :class:`Event` s to ``sink``, at most every
    ``every`` seconds within a stage (stage changes always go through). Picklable when
    ``sink`` is (a :class:`QueueSink`)."""

    def __init__(self, capture: str, sink: Callable[[Event], None], every: float = 0.5) -> None:
        self.capture, self.sink, self.every = capture, sink, every
        self.started = time.time()
        self._stage, self._stage_started, self._last = "", self.started, 0.0

    def __call__(self, stage: str, done: int, total: int, best: float | None = None) -> None:
        now = time.time()
        if stage != self._stage:
            self._stage, self._stage_started = stage, now
        elif now - self._last < self.every and done < total:
            return
        self._last = now
        self.sink(Event(self.capture, stage, int(done), int(total), best, self._stage_started, self.started, now))


class QueueSink:
    """A sink that puts events on a (manager) queue: for worker processes."""

    def __init__(self, q: Any) -> None:
        self.q = q

    def __call__(self, event: Event) -> None:
        try:
            self.q.put_nowait(event)
        except Exception:  # noqa: BLE001  progress must never break an attack (a closed manager, a full queue)
            pass


class Board:
    """Collects events of a run's captures and shows them (see the module docstring).

    Parameters
    ----------
    total : int
        Captures the run will attack (grows with :meth:`expect`).
    workers : int
        Attacks running side by side (for the run's ETA).
    bars : bool
        tqdm bars on ``stream`` (else log lines through ``emit``).
    """

    def __init__(self, total: int = 0, workers: int = 1, bars: bool = False, emit: Callable[[str], None] | None = None,
                 every: float = 30.0, stream: Any = None) -> None:
        self.total, self.workers, self.bars, self.every = total, max(1, workers), bars, every
        self.emit = emit or log.info
        self.live: dict[str, Event] = {}
        self.seconds: list[float] = []
        self.t0, self._last_log = time.time(), 0.0
        self._lock = threading.Lock()
        self._bars: dict[str, tqdm] = {}
        self._run_bar = tqdm(total=total, desc="captures", unit="capture", file=stream or sys.stderr,
                             dynamic_ncols=True) if bars else None
        self._stream = stream or sys.stderr

    def expect(self, n: int = 1) -> None:
        """``n`` more captures will be attacked (online runs learn their count as they go)."""
        with self._lock:
            self.total += n
            if self._run_bar is not None:
                self._run_bar.total = self.total
                self._run_bar.refresh()

    def event(self, ev: Event) -> None:
        with self._lock:
            self.live[ev.capture] = ev
            if self.bars:
                self._bar(ev)
            elif time.time() - self._last_log >= self.every:
                self._log_all()

    def finished(self, capture: str, seconds: float, status: str = "ok") -> None:
        """A capture's attack returned (in whichever process)."""
        with self._lock:
            self.live.pop(capture, None)
            self.seconds.append(seconds)
            bar = self._bars.pop(capture, None)
            if bar is not None:
                bar.close()
            line = f"{capture}: {status} in {human(seconds)}; {self.run_text()}"
            if self._run_bar is not None:
                self._run_bar.update(1)
                self._run_bar.set_postfix_str(self.run_text(short=True))
            else:
                self.emit("attack " + line)

    def run_text(self, short: bool = False) -> str:
        done = len(self.seconds)
        left = max(self.total - done, 0)
        mean = sum(self.seconds) / done if done else None
        eta = "" if mean is None or left == 0 else f", ETA {human(mean * left / self.workers)}"
        if short:
            return f"{mean:.0f} s/capture{eta}" if mean is not None else ""
        per = "" if mean is None else f", {mean:.0f} s each"
        return f"{done}/{self.total} captures attacked{per}{eta}"

    def _bar(self, ev: Event) -> None:
        bar = self._bars.get(ev.capture)
        if bar is None:
            bar = self._bars[ev.capture] = tqdm(total=ev.total, desc=ev.capture, leave=False, file=self._stream,
                                                dynamic_ncols=True, position=len(self._bars) + 1)
        if bar.total != ev.total or ev.done < bar.n:
            bar.reset(total=ev.total)
        bar.n = ev.done
        bar.set_postfix_str(f"{ev.stage}, best {'–' if ev.best is None else f'{ev.best:.4g}'}", refresh=False)
        bar.refresh()

    def _log_all(self) -> None:
        self._last_log = time.time()
        for ev in self.live.values():
            meter = tqdm.format_meter(ev.done, ev.total, ev.now - ev.stage_started, ncols=40, prefix=f"{ev.capture} {ev.stage}")
            self.emit(f"attack {meter}; {ev.text()}")

    def close(self) -> None:
        with self._lock:
            for bar in self._bars.values():
                bar.close()
            self._bars.clear()
            if self._run_bar is not None:
                self._run_bar.close()


class Listener:
    """Moves events from a queue to a board, in a thread of the board's process."""

    def __init__(self, q: Any, board: Board) -> None:
        self.q, self.board = q, board
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="attack-progress", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                ev = self.q.get(timeout=0.5)
            except queue.Empty:
                continue
            except (EOFError, OSError):  # the manager went away: nothing more will come
                return
            self.board.event(ev)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=2.0)
