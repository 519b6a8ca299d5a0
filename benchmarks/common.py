"""What every benchmark shares: devices, clocks, memory sampling, tables and result files.

Memory is read from Linux's ``/proc``: a sampler thread records the peak resident set
(RSS) of this process, or the peak proportional set (PSS, shared pages split between the
processes that map them) summed over this process and all its descendants (the SuperLink,
the simulation process, Ray's raylet, GCS and workers), so that a federated run's memory
is counted once.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from fednas import stats
from fednas.rundir import atomic_write_json, portable_paths, unique_path

RESULTS = Path(__file__).resolve().parent / "results"
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def int_list(text: str) -> list[int]:
    """An argparse type: comma-separated integers (``8,16,32``)."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


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


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of one call of ``fn`` (the device drained before and after).

    On a machine shared with other work, CPU time is the steadier measure of the work
    itself: time spent waiting for a core does not count.
    """
    synchronize(device)
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    synchronize(device)
    return time.perf_counter() - t0, time.process_time() - c0


def wilson(k: int, n: int) -> tuple[float, float]:
    """Wilson score 95% interval of a rate k/n (:func:`fednas.stats.wilson_interval`)."""
    return stats.wilson_interval(k, n)


def t_interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and its Student-t 95% interval (:func:`fednas.stats.t_interval`)."""
    mean = sum(values) / len(values)
    return (mean, *stats.t_interval(values))


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


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a process has used so far (None if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS


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
    descendants, with the peak of each process name (``by_name``), and the CPU seconds
    each process used, as last seen (``cpu_seconds``, by process name).
    """

    def __init__(self, tree: bool = False, interval: float | None = None, include_self: bool = True) -> None:
        self.tree, self.include_self = tree, include_self
        self._cpu: dict[int, tuple[str, float]] = {}
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
            used = cpu_seconds(pid)
            if used is not None:
                self._cpu[pid] = (name, used)
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

    @property
    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds by process name (processes that ended between samples lose their last interval)."""
        out: dict[str, float] = {}
        for name, used in self._cpu.values():
            out[name] = out.get(name, 0.0) + used
        return out


_PROBE = """
import sys, time, torch
torch.set_num_threads(1)
a, limit, n = torch.randn(256, 256), float(sys.argv[2]), 0
t = time.perf_counter()
if sys.argv[1] == "count":
    while time.perf_counter() - t < limit:
        a @ a
        n += 1
    print(n)
else:
    while n < limit:
        a @ a
        n += 1
    print(time.perf_counter() - t)
"""


def parallelism_probe(seconds: float = 2.0) -> float:
    """How much faster two CPU-bound one-thread processes get through fixed work than one.

    2.0 on an idle 2-core machine; on a machine busy with other work it shows how much of
    a second core is there to be had: the ceiling of any 1 -> 2 CPU scaling measured now.
    """
    work = _probe("count", seconds, 1)[0]  # matrix products in `seconds`
    single = _probe("run", work, 1)[0]
    return 2 * single / max(_probe("run", work, 2))


def _probe(mode: str, limit: float, copies: int) -> list[float]:
    procs = [subprocess.Popen([sys.executable, "-c", _PROBE, mode, str(limit)], stdout=subprocess.PIPE, text=True)
             for _ in range(copies)]
    return [float(p.communicate()[0].strip().splitlines()[-1]) for p in procs]


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
    atomic_write_json(path, _portable({"benchmark": kind, **payload, "loadavg-at-end": loadavg()}))
    return path


def _portable(obj: Any) -> Any:
    """``obj`` with every string's absolute paths made portable: results are committed, and
    name no folder of the machine that made them (the project's own made relative)."""
    if isinstance(obj, str):
        return portable_paths(obj, Path(__file__).resolve().parents[1])
    if isinstance(obj, dict):
        return {k: _portable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_portable(v) for v in obj]
    return obj
