"""Running the plan: one result file per task, written atomically; resumable and parallel.

``<out>/results/<task key>.json`` holds each task's outcome (``ok`` with its figures, or
``failed`` with the error and the end of its traceback) and the engine that computed it
(:mod:`simulations.tables.fingerprint`); the worker that ran the task writes it, so a run
killed at any moment keeps everything finished. A rerun with the same command skips every
``ok`` result made by the current engine, retries the failed ones, recomputes those whose
engine changed (the source or a library), and builds what is missing.
Artifacts (capture runs, targets) are built in ``<out>/runs/<key>.partial-<pid>`` and
renamed into place when complete. Tasks run in ``--workers`` spawned processes (one torch
thread each) as soon as what they depend on is done; a task whose dependency failed is
recorded as failed with that reason, and the rest go on.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import math
import multiprocessing
import os
import shutil
import time
import traceback
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from fednas.config import RENAMED_KEYS
from fednas.rundir import atomic_write_json
from simulations.tables.fingerprint import matches
from simulations.tables.plan import CostClass, Task

log = logging.getLogger(__name__)

# CPU seconds per unit of a task at P = 8 before anything was measured (the ETA's starting
# point, replaced by measured figures as soon as there are any). Measured here (cpu scale's
# settings: 28x28 mnist-5k, 4 channels, one torch thread, a loaded machine): an ADRA capture
# with the engine's default attack (300 iterations) 110-117 s; a capture run 8 s; a target
# searched 20 epochs by 2 clients over 2,000 images 181 s at P = 4 (so ~630 s at P = 8);
# an AMIA cell with 4 CNN shadows 23-24 s; one with 4 searched shadows beside them (800 search
# steps each) 16 min at P = 4 (so ~55 min at P = 8).
PRIORS = {"captures": 8.0, "target": 630.0, "adra": 115.0, "amia": 24.0, "amia-searched": 3300.0}
P_EXPONENT = 1.8  # cost ~ P^1.8 when a size was not measured (attack: 93, 315, 962 s at P = 8, 16, 32)


def units(task: Task) -> int:
    """What a task's cost is proportional to at a given size: captures for an ADRA cell."""
    return int(task.spec.get("captures", 1)) * len(task.spec.get("runs", [None])) if task.kind == "adra" else 1


def result_path(out: Path, key: str) -> Path:
    return out / "results" / f"{key}.json"


def artifact_dir(out: Path, key: str) -> Path:
    return out / "runs" / key


def load_result(out: Path, key: str) -> dict[str, Any] | None:
    path = result_path(out, key)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _renamed(spec: Any) -> Any:
    """A recorded spec with its config's old key names as the new ones (a result written
    before a key was renamed was computed with the same settings)."""
    if not isinstance(spec, dict) or not isinstance(spec.get("config"), dict):
        return spec
    return {**spec, "config": {RENAMED_KEYS.get(k, k): v for k, v in spec["config"].items()}}


def current(out: Path, task: Task) -> dict[str, Any] | None:
    """The task's result when it was computed with the planned settings, else None (a result
    made with other settings, e.g. after the scale file changed, is stale and recomputed)."""
    r = load_result(out, task.key)
    return r if r is not None and _same(_renamed(r.get("spec")), task.spec) else None


def is_done(out: Path, task: Task, engine: dict[str, Any] | None = None) -> bool:
    """An ``ok`` result with the planned settings (and, given ``engine``, made by that engine)."""
    r = current(out, task)
    return bool(r) and r.get("status") == "ok" and (engine is None or matches(r.get("engine"), engine))


# ---------------------------------------------------------------------------- work (in a worker)


def _build(task: Task, out: Path, make: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """Build an artifact in a partial folder, then rename it into place."""
    final = artifact_dir(out, task.key)
    partial = final.with_name(f"{final.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    info = make(partial)
    shutil.rmtree(final, ignore_errors=True)  # a copy left by an attempt killed before its result was written
    os.replace(partial, final)
    return {**info, "dir": str(final)}


def _captures(task: Task, out: Path) -> dict[str, Any]:
    from simulations.tables.federation import build_captures

    s = task.spec
    return _build(task, out, lambda d: build_captures(d, s["config"], s["clients"], s["captures"], s["runner"]))


def _target(task: Task, out: Path) -> dict[str, Any]:
    from simulations.tables.federation import build_target

    s = task.spec
    return _build(task, out, lambda d: build_target(d, s["config"], s["clients"], s["runner"]))


def _adra(task: Task, out: Path) -> dict[str, Any]:
    from simulations.tables.engines import attack_captures

    s = task.spec
    runs = [artifact_dir(out, k) for k in s["runs"]]
    return attack_captures(runs, s["attack"], s["captures"], f"leakage-{s['theta']}-{s['mode']}")


def _amia(task: Task, out: Path) -> dict[str, Any]:
    from simulations.tables.engines import attack_target

    s = task.spec
    return attack_target(artifact_dir(out, s["target"]), s["attack"])


KINDS: dict[str, Callable[[Task, Path], dict[str, Any]]] = {
    "captures": _captures, "target": _target, "adra": _adra, "amia": _amia}


def execute(task: Task, out: str, engine: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one task and write its result file (ok or failed, with ``engine``); return the record."""
    import torch

    torch.set_num_threads(1)
    t0, c0 = time.perf_counter(), time.process_time()
    record: dict[str, Any] = {"key": task.key, "kind": task.kind, "spec": task.spec, "engine": engine,
                              "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "pid": os.getpid()}
    try:
        record.update(status="ok", result=KINDS[task.kind](task, Path(out)))
    except Exception as err:  # a failing cell is recorded with its error; the others go on
        record.update(status="failed", error=f"{type(err).__name__}: {err}",
                      traceback=traceback.format_exc()[-4000:])
    record["seconds"] = round(time.perf_counter() - t0, 2)
    # CPU time of this process (one torch thread): what the task costs on a core of its own,
    # whatever else the machine was doing meanwhile; the ETA is made from it
    record["cpu-seconds"] = round(time.process_time() - c0, 2)
    record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    atomic_write_json(result_path(Path(out), task.key), record)
    return record


def _init_worker() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    logging.basicConfig(level=logging.WARNING, format="%(processName)s %(name)s: %(message)s")


# ---------------------------------------------------------------------------- cost model


def cost_of(record: dict[str, Any]) -> float:
    """A finished task's cost: its CPU seconds (its wall seconds for older results)."""
    return float(record.get("cpu-seconds") or record.get("seconds") or 0.0)


class CostModel:
    """Expected seconds of a task, from results already measured (same class, else scaled)."""

    def __init__(self, out: Path, tasks: Iterable[Task], also: Iterable[Path] = ()) -> None:
        self.by_class: dict[CostClass, list[float]] = defaultdict(list)  # CPU seconds per unit
        for t in tasks:
            r = current(out, t)
            if r and r.get("status") == "ok" and cost_of(r):
                self.add(t, cost_of(r))
        for folder in also:  # another run's measurements (e.g. a slice with fewer samples per cell)
            for path in sorted((Path(folder) / "results").rglob("*.json")):
                r = json.loads(path.read_text())
                if r.get("status") == "ok" and cost_of(r) and r.get("kind") in PRIORS:
                    self.add(Task(r["key"], r["kind"], r["spec"]), cost_of(r))

    def add(self, task: Task, seconds: float) -> None:
        self.by_class[task.cost_class].append(seconds / units(task))

    def measured(self, task: Task) -> bool:
        return task.cost_class in self.by_class

    def seconds(self, task: Task) -> float:
        """Expected CPU seconds: measured ones of the same class, else the nearest measured size
        of the same kind scaled as P^1.8, else the prior."""
        c = task.cost_class
        if c in self.by_class:
            return units(task) * sum(self.by_class[c]) / len(self.by_class[c])
        p = c.P
        same = [(k, sum(v) / len(v)) for k, v in self.by_class.items()
                if k.P and (k.kind, k.recipe, k.mode, k.shadow) == (c.kind, c.recipe, c.mode, c.shadow)]
        same.sort(key=lambda kv: (kv[0].dataset != c.dataset, kv[0].B != c.B, abs(math.log(kv[0].P / (p or 1)))))
        if same and p:
            (k, per_unit) = same[0]
            return units(task) * per_unit * (p / k.P) ** P_EXPONENT
        prior = PRIORS.get(f"{c.kind}-{c.shadow}", PRIORS[c.kind])
        return units(task) * prior * ((p or 8) / 8) ** P_EXPONENT


def human(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# ---------------------------------------------------------------------------- scheduler


class Scheduler:
    """Runs the tasks not done yet, each once its dependencies are done, ``workers`` at a time."""

    def __init__(self, tasks: dict[str, Task], out: Path, workers: int, emit: Callable[[str], None],
                 costs_from: Iterable[Path] = (), engine: dict[str, Any] | None = None) -> None:
        self.tasks, self.out, self.workers, self.emit, self.engine = tasks, out, workers, emit, engine
        self.done = {k for k, t in tasks.items() if is_done(out, t, engine)}
        self.stale = sum(1 for t in tasks.values() if is_done(out, t) and t.key not in self.done)
        self.todo = [k for k in tasks if k not in self.done]
        self.failed: dict[str, str] = {}
        self.costs = CostModel(out, tasks.values(), costs_from)

    def remaining_seconds(self, keys: Iterable[str]) -> float:
        return sum(self.costs.seconds(self.tasks[k]) for k in keys) / max(1, self.workers)

    def _ready(self, waiting: list[str]) -> tuple[list[str], list[str]]:
        ready, blocked = [], []
        for k in waiting:
            deps = self.tasks[k].deps
            if any(d in self.failed for d in deps):
                blocked.append(k)
            elif all(d in self.done for d in deps):
                ready.append(k)
        return ready, blocked

    def _block(self, key: str) -> dict[str, Any]:
        dep = next(d for d in self.tasks[key].deps if d in self.failed)
        record = {"key": key, "kind": self.tasks[key].kind, "spec": self.tasks[key].spec, "status": "failed",
                  "error": f"not run: {dep} failed ({self.failed[dep]})", "seconds": 0.0}
        atomic_write_json(result_path(self.out, key), record)
        return record

    def run(self, progress: Any = None) -> dict[str, int]:
        """Run everything pending; returns counts (ok, failed, skipped as already done).

        Artifacts left half-built by a killed run (``*.partial-<pid>``) are removed first:
        one invocation at a time per output folder."""
        for partial in sorted((self.out / "runs").rglob("*.partial-*")) if (self.out / "runs").is_dir() else []:
            shutil.rmtree(partial, ignore_errors=True)
        waiting = list(self.todo)
        counts = {"ok": 0, "failed": 0, "already done": len(self.done)}
        total = len(waiting)
        pool = None
        if self.workers > 0 and waiting:
            pool = cf.ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                          initializer=_init_worker)
        running: dict[cf.Future, str] = {}
        try:
            while waiting or running:
                ready, blocked = self._ready(waiting)
                for k in blocked:
                    waiting.remove(k)
                    self._finish(self._block(k), counts, total, waiting, running, progress)
                free = (self.workers or 1) - len(running)
                for k in ready[:free]:
                    waiting.remove(k)
                    if pool is None:
                        self._finish(execute(self.tasks[k], str(self.out), self.engine), counts, total, waiting, running, progress)
                    else:
                        running[pool.submit(execute, self.tasks[k], str(self.out), self.engine)] = k
                if not running:
                    if waiting and not ready and not blocked:
                        raise RuntimeError(f"tasks wait on dependencies outside the plan: {waiting[:3]}")
                    continue
                finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                broken = False
                for f in finished:
                    k = running.pop(f)
                    try:
                        record = f.result()
                    except Exception as err:  # the worker process died (killed, out of memory)
                        record, broken = self._died(k, err), True
                    self._finish(record, counts, total, waiting, running, progress)
                if broken:  # every task of the broken pool is lost: recorded as failed, retried by a rerun
                    for f, k in list(running.items()):
                        running.pop(f)
                        self._finish(self._died(k, "the worker pool broke"), counts, total, waiting, running, progress)
                    pool.shutdown(wait=False, cancel_futures=True)
                    pool = cf.ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                                  initializer=_init_worker)
        finally:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        return counts

    def _died(self, key: str, err: Any) -> dict[str, Any]:
        record = {"key": key, "kind": self.tasks[key].kind, "spec": self.tasks[key].spec, "status": "failed",
                  "error": f"worker died: {err if isinstance(err, str) else f'{type(err).__name__}: {err}'}",
                  "seconds": 0.0}
        atomic_write_json(result_path(self.out, key), record)
        return record

    def _finish(self, record: dict[str, Any], counts: dict[str, int], total: int, waiting: list[str],
                running: dict[cf.Future, str], progress: Any) -> None:
        key = record["key"]
        task = self.tasks[key]
        ok = record.get("status") == "ok"
        if ok:
            self.done.add(key)
            self.costs.add(task, cost_of(record))
            counts["ok"] += 1
        else:
            self.failed[key] = record.get("error", "?")
            counts["failed"] += 1
        left = waiting + list(running.values())
        eta = self.remaining_seconds(left)
        n = counts["ok"] + counts["failed"]
        status = "ok" if ok else f"FAILED: {record.get('error', '')[:200]}"
        self.emit(f"[{n}/{total}] {key} {status} ({human(float(record.get('seconds') or 0))}, "
                  f"{human(float(record.get('cpu-seconds') or 0))} CPU); about {human(eta)} left")
        if progress is not None:
            progress(n, total, eta)
