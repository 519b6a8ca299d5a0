"""``python -m simulations.tables``: the paper's Tables 1-6 regenerated beside ours.

    python -m simulations.tables [--scale smoke|cpu|gpu|FILE] [--tables 1,2,3,4,5,6]
        [--datasets mnist-5k,fashion-mnist] [--workers N] [--out DIR] [--data-root DIR]
        [--cells GLOB ...] [--plan] [--costs-from DIR ...] [--render] [--publish DIR]

Plans the cells of the chosen tables at the chosen scale, runs those not done yet (a
rerun of the same command resumes: finished cells are skipped, failed ones retried, and
cells computed by another engine, i.e. other project source or library versions, are
computed again), then writes ``<out>/tables.md``, ``<out>/table<N>.csv`` and the plots.

- ``--plan``: print what would run and how long it should take (from the tasks measured
  in ``<out>`` and in the ``--costs-from`` folders, else from priors); run nothing.
- ``--cells``: run only the tasks whose key matches a pattern (and what they need), e.g.
  ``--cells 'adra/mnist-5k/elu/P8/*'``.
- ``--render``: only rewrite the outputs from the results in ``<out>``.
- ``--publish DIR``: copy tables.md, the CSVs and the plots there (e.g. ``docs/results``),
  every absolute path made portable. A published table must come from a commit: refused
  (before anything runs) when the checkout has uncommitted changes, and (after) when any
  row was computed by an older engine or the source changed during the run.

Exit status: 0 every planned task ok, 1 some failed (the tables say which and why), 2 a
bad argument or scale file, 3 ``--publish`` refused, 130 interrupted (rerun the same
command to resume).
"""

from __future__ import annotations

import argparse
import fnmatch
import logging
import shlex
import shutil
import signal
import sys
import time
from pathlib import Path

from fednas.config import ConfigError
from simulations.tables import fingerprint, render
from simulations.tables.plan import TABLES, Plan, make_plan
from simulations.tables.runner import Scheduler, human
from simulations.tables.scale import SIMULATIONS, load_scale

log = logging.getLogger("simulations.tables")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m simulations.tables", description=__doc__.splitlines()[0])
    p.add_argument("--scale", default="smoke", help="smoke, cpu, gpu, or a scale file (default: smoke)")
    p.add_argument("--tables", default="1,2,3,4,5,6", help="comma-separated table numbers (default: all)")
    p.add_argument("--datasets", help="comma-separated datasets (default: the scale's)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (0: run in this process)")
    p.add_argument("--out", help="output folder (default: outputs/tables-<scale>)")
    p.add_argument("--data-root", help="where CIFAR-10/100 (and MNIST) files are (default: the scale's)")
    p.add_argument("--cells", nargs="+", metavar="GLOB", help="run only the tasks whose key matches (and their inputs)")
    p.add_argument("--plan", action="store_true", help="print the plan and the time estimate; run nothing")
    p.add_argument("--costs-from", nargs="+", default=[], metavar="DIR",
                   help="also estimate from the tasks measured in these output folders (e.g. a slice run elsewhere)")
    p.add_argument("--render", action="store_true", help="only rewrite tables.md, CSVs and plots from the results")
    p.add_argument("--publish", metavar="DIR", help="copy tables.md, the CSVs and the plots to DIR when done")
    return p.parse_args(argv)


def _tables(text: str) -> tuple[int, ...]:
    try:
        tables = tuple(sorted({int(t) for t in text.split(",") if t.strip()}))
    except ValueError:
        raise ConfigError(f"--tables {text!r}: expected numbers among {TABLES}") from None
    bad = [t for t in tables if t not in TABLES]
    if bad or not tables:
        raise ConfigError(f"--tables {text!r}: expected numbers among {TABLES}")
    return tables


def selected(plan: Plan, patterns: list[str] | None) -> dict:
    """The tasks to run: all, or those matching ``patterns`` and everything they depend on."""
    if not patterns:
        return dict(plan.tasks)
    keys = {k for k in plan.tasks if any(fnmatch.fnmatch(k, p) for p in patterns)}
    if not keys:
        raise ConfigError(f"--cells {patterns}: no task matches (keys look like {next(iter(plan.tasks), '?')})")
    stack = list(keys)
    while stack:
        for d in plan.tasks[stack.pop()].deps:
            if d not in keys:
                keys.add(d)
                stack.append(d)
    return {k: t for k, t in plan.tasks.items() if k in keys}


def print_plan(plan: Plan, sched: Scheduler, emit) -> None:
    """Rows per table by state, pending tasks by kind, and the estimated wall time."""
    for t, rows in sorted(plan.rows.items()):
        keys = {k for r in rows for ks in r.cells.values() for k in ks}
        stack = list(keys)
        while stack:  # with their inputs (artifacts shared with another table count in both)
            for d in plan.tasks[stack.pop()].deps:
                if d not in keys:
                    keys.add(d)
                    stack.append(d)
        todo = [k for k in keys if k in sched.todo]
        explained = sum(1 for r in rows if r.reason)
        kinds = {}
        for k in todo:
            kinds[plan.tasks[k].kind] = kinds.get(plan.tasks[k].kind, 0) + 1
        measured = sum(1 for k in todo if sched.costs.measured(plan.tasks[k]))
        emit(f"Table {t}: {len(rows)} rows ({explained} not runnable here), {len(keys)} tasks, {len(todo)} to run "
             f"({', '.join(f'{v} {k}' for k, v in sorted(kinds.items())) or 'none'}); estimated "
             f"{human(sched.remaining_seconds(todo))} with {max(1, sched.workers)} worker(s) "
             f"({measured} of {len(todo)} from measured tasks of the same kind and size; tasks shared with another "
             "table count in each)")
    emit(f"All tables: {len(sched.todo)} tasks to run, {len(sched.done)} done; estimated "
         f"{human(sched.remaining_seconds(sched.todo))} with {max(1, sched.workers)} worker(s), each on a core of "
         "its own (CPU seconds of measured tasks / workers; longer on a machine shared with other work)")


def _progress(console):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[bold]tables"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("ETA {task.fields[eta]}"), console=console, transient=False)


def publish(out: Path, dest: Path, root: Path | None = None) -> None:
    """Copy the outputs a reader needs (not the runs and results behind them) to ``dest``;
    text with every absolute path made portable (:func:`render.portable`, relative to
    ``root``, default the current folder: the project's root)."""
    dest.mkdir(parents=True, exist_ok=True)
    provenance = [out / render.INVOCATIONS] if (out / render.INVOCATIONS).is_file() else []
    for path in [out / "tables.md", *sorted(out.glob("table*.csv")), *sorted(out.glob("table*.png")), *provenance]:
        if path.suffix in (".md", ".csv", ".json"):
            (dest / path.name).write_text(render.portable(path.read_text(), root or Path.cwd()))
        else:
            shutil.copyfile(path, dest / path.name)


def refuse_dirty(root: Path = fingerprint.PROJECT) -> str:
    """Why a run meant for publication may not start here (empty: it may)."""
    changes = fingerprint.dirty(root)
    if not changes:
        return ""
    shown = "; ".join(c.strip() for c in changes[:5]) + (f"; and {len(changes) - 5} more" if len(changes) > 5 else "")
    return (f"--publish: the checkout at {root} has uncommitted changes ({shown}); a published table must come "
            "from a commit, so that its engine column names code a reader can check out: commit or stash them, "
            "or run without --publish")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s", stream=sys.stderr)
    from rich.console import Console

    console = Console(stderr=True)

    def emit(line: str) -> None:
        console.print(line, markup=False, highlight=False, soft_wrap=True)

    try:
        scale = load_scale(args.scale)
        tables = _tables(args.tables)
        datasets = tuple(d.strip() for d in args.datasets.split(",") if d.strip()) if args.datasets else None
        if args.workers < 0:
            raise ConfigError(f"--workers {args.workers}: must be >= 0")
        plan = make_plan(scale, tables, datasets, args.data_root)
        out = Path(args.out or SIMULATIONS.parent / "outputs" / f"tables-{scale.name}").resolve()
        tasks = selected(plan, args.cells)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    command = "python -m simulations.tables " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    if args.publish and not args.plan and (why := refuse_dirty()):
        print(f"error: {why}", file=sys.stderr)
        return 3
    engine = fingerprint.engine()
    sched = Scheduler(tasks, out, args.workers, emit, [Path(d) for d in args.costs_from], engine)
    print_plan(plan, sched, emit)
    if sched.stale:
        emit(f"{sched.stale} finished task(s) were computed by another engine than this checkout's (source "
             f"{engine['source'][:12]}, or library versions): "
             + ("tables.md marks their rows ✗" if args.render or args.plan else "they run again"))
    if args.plan:
        return 0
    t0, rev = time.monotonic(), engine["commit"]
    counts = {"ok": 0, "failed": 0}
    if not args.render and sched.todo:
        out.mkdir(parents=True, exist_ok=True)
        with _progress(console) as bar:
            job = bar.add_task("tables", total=len(sched.todo), eta="?")
            try:
                counts = sched.run(lambda n, total, eta: bar.update(job, completed=n, eta=human(eta)))
            except KeyboardInterrupt:
                # a second SIGINT (``timeout`` signals the process and then its group) must not cut the record short
                previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
                try:
                    render.log_invocation(out, command, rev, time.monotonic() - t0, {**counts, "interrupted": True})
                finally:
                    signal.signal(signal.SIGINT, previous)
                emit("interrupted: finished cells are kept; rerun the same command to resume")
                return 130
    wall = time.monotonic() - t0
    out.mkdir(parents=True, exist_ok=True)
    if not args.render:
        render.log_invocation(out, command, rev, wall, counts)
    md = render.write(plan, out, engine)
    if args.publish:
        stale = render.stale_rows({t: render.table_rows(render.Evaluator(plan, out, engine), t) for t in plan.rows})
        if fingerprint.source_hash() != engine["source"] or stale:
            print(f"error: --publish refused: {stale} row(s) were computed by an older engine (✗ in tables.md)"
                  if stale else "error: --publish refused: the project's source changed while the tables ran",
                  file=sys.stderr)
            return 3
        publish(out, Path(args.publish))
    emit(f"{counts['ok']} tasks ok, {counts['failed']} failed this time ({human(wall)})")
    print(md)
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
