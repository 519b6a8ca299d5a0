"""What every benchmark shares: devices, clocks, memory sampling, tables and result files.

Memory is read from Linux's ``/proc``: a sampler thread records the peak resident set
(RSS) of this process, or the peak proportional set (PSS, shared pages split between the
processes that map them) summed over this process and all its descendants (the SuperLink,
the simulation process, Ray's raylet, GCS and workers), so that a federated run's memory
is counted once.
"""

from __future__ import annotations

import os
import platform
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from fednas.rundir import atomic_write_json, unique_path

RESULTS = Path(__file__).resolve().parent / "results"
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resolve_device(name: str) -> torch.device:
    """``cpu`` or ``cuda``; asking for CUDA without a GPU is a clear error, not a silent CPU run."""
    if name == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("error: --device cuda, but torch sees no CUDA device here "
                             f"(torch {torch.__version__}, torch.cuda.is_available() is False)")
        return torch.device("cuda")
    if name != "cpu":
        raise SystemExit(f"error: unknown --device {name!r}; choose cpu or cuda")
    return torch.device("cpu")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds one call of ``fn`` takes (the device drained before and after)."""
    synchronize(device)
    t0 = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - t0


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


# --------------------------------------------------------------------------- memory


def _rss_self() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])  # the name may hold spaces
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    tree, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(tree.get(p, []))
    return out


def pss(pid: int) -> int:
    """Proportional set size of one process in bytes (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _environ(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            items = f.read().split(b"\0")
    except OSError:
        return {}
    return dict(i.decode(errors="replace").split("=", 1) for i in items if b"=" in i)


def process_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return "?"
    words = [a.decode(errors="replace") for a in args if a]
    if not words:
        return "?"
    if words[0].startswith("ray::"):
        return "ray-worker"
    exe = Path(words[0]).name
    if exe.startswith("python") and len(words) > 1:
        exe = Path(words[1]).name if not words[1].startswith("-") else " ".join(words[1:3])
    return exe[:40]


class PeakMemory:
    """Context manager sampling peak memory in a thread.

    ``tree=False``: this process's RSS (``peak``, bytes, and ``baseline`` at entry).
    ``tree=True``: PSS summed over this process (unless ``include_self`` is False) and its
    descendants, with the peak of each process name (``by_name``) and the
    ``OMP_NUM_THREADS`` seen in Ray workers (``worker_threads``).
    """

    def __init__(self, tree: bool = False, interval: float | None = None, include_self: bool = True) -> None:
        self.tree, self.include_self = tree, include_self
        self.worker_threads: set[str] = set()
        self.interval = interval if interval is not None else (0.5 if tree else 0.02)
        self.peak = self.baseline = 0
        self.by_name: dict[str, int] = {}
        self._stop = threading.Event()

    def _sample(self) -> int:
        if not self.tree:
            return _rss_self()
        total, names = 0, {}
        for pid in descendants(os.getpid()):
            if pid == os.getpid() and not self.include_self:
                continue
            size = pss(pid)
            total += size
            name = process_name(pid)
            names[name] = names.get(name, 0) + size
            if name == "ray-worker":
                self.worker_threads.add(_environ(pid).get("OMP_NUM_THREADS", "unset"))
        for name, size in names.items():
            self.by_name[name] = max(self.by_name.get(name, 0), size)
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self._sample())

    def __enter__(self) -> PeakMemory:
        self.baseline = self.peak = self._sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._sample())


def mb(n: float | None) -> float | None:
    return None if n is None else round(n / 2**20, 1)


# --------------------------------------------------------------------------- output


def machine() -> dict[str, Any]:
    """Where the figures were measured."""
    info = {
        "host": platform.node(), "cpu": _cpu_model(), "cpus": os.cpu_count(), "python": platform.python_version(),
        "torch": torch.__version__, "torch-threads": torch.get_num_threads(),
        "loadavg-at-start": loadavg(), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def loadavg() -> list[float] | None:
    """1, 5 and 15 minute load averages (other work on a shared machine shows here)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def table(rows: Iterable[Sequence[Any]], header: Sequence[str]) -> str:
    """A plain-text table, columns right-aligned."""
    cells = [[_fmt(v) for v in row] for row in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def write_results(kind: str, payload: dict[str, Any], root: Path = RESULTS) -> Path:
    """``<root>/<kind>-<timestamp>.json`` (never overwritten); ``payload`` holds ``machine()`` from the start."""
    path = unique_path(root / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}.json")
    atomic_write_json(path, {"benchmark": kind, **payload, "loadavg-at-end": loadavg()})
    return path
