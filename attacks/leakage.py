"""The leakage audit of one run: attack every capture, score, write the report.

Used online by the ServerApp (``submit`` as captures arrive, ``finish`` after the last
round) and offline by ``python -m attacks.adra`` (every stored capture, a fresh leakage
folder). ``finish`` never raises and always writes the report (``clients.csv``,
``report.md``, ``summary.json``): a capture whose file is unreadable or breaks the schema
is skipped, with its path and the reason in its row; scoring that cannot start leaves the
rows unscored, with the reason; a report that cannot be written in full is written plain.
The federated run it belongs to still completes.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from attacks.base import Reconstruction
from attacks.report import (COLUMNS, ScoringContext, leakage_dict, per_client, report_of, run_score_job, score_run,
                            summary_table, write_report)
from attacks.runner import AttackRunner
from fednas.captures import CaptureStore
from fednas.rundir import atomic_write_csv, atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)


class LeakageAudit:
    """Attacks captures (online: in worker processes) and writes ``<out_dir>``.

    Parameters
    ----------
    run_dir : path
        The run directory (``captures/``, ``truth/`` and ``config.json`` inside).
    flat : mapping
        The flat config (attack keys included) to attack with.
    out_dir : path, optional
        The leakage folder (default ``<run_dir>/leakage``).
    target : ForeignTarget, optional
        Another app's model and data (``attacks.foreign``); None: this project's run.
    """

    def __init__(self, run_dir: str | Path, flat: Mapping[str, Any], out_dir: str | Path | None = None,
                 workers: int | None = None, target: Any = None, bars: bool = False) -> None:
        self.run_dir = Path(run_dir)
        self.flat = dict(flat)
        self.out_dir = Path(out_dir) if out_dir is not None else self.run_dir / "leakage"
        self.store = CaptureStore(self.run_dir)
        self.target = target
        self.workers = int(self.flat.get("attack-workers", 1) if workers is None else workers)
        self.report = report_of(self.flat)  # what the attack adds to the report
        # its scoring job (ADRA's identifiability) needs the run's own dataset and supernet
        job = self.report.score_job(self.flat) if target is None else None
        self.score_job = functools.partial(run_score_job, job) if job is not None else None
        self.runner = AttackRunner(self.run_dir, self.flat, self.out_dir, self.workers, target, bars=bars)
        self.skipped: dict[str, Reconstruction] = {}  # captures whose files cannot be read: never attacked

    def submit(self, capture_id: str) -> None:
        """Schedule one capture's attack (and its scoring job) now; an unreadable capture is skipped."""
        problem = self.store.problem(capture_id)
        if problem is not None:
            log.warning("leakage: capture %s skipped: %s", capture_id, problem)
            self.skipped[capture_id] = Reconstruction.failed(capture_id, problem)
            return
        self.runner.submit(capture_id, self.score_job)

    def finish(self, emit: Callable[[str], None] | None = None, only: list[str] | None = None) -> dict[str, Any]:
        """Wait for the attacks, score them, write the report; return the summary.

        Every stored capture (or each one ``only`` names, for an offline run on a subset)
        is attacked if it was not submitted yet, and gets its rows.
        """
        emit = emit or log.info
        ids = self.store.ids() if only is None else list(only)
        try:
            submitted = set(self.runner.order) | set(self.skipped)
            for cid in ids:  # stored but never submitted (offline, or attack-workers = 0): attack now
                if cid not in submitted:
                    self.submit(cid)
            recs, scores = self.runner.finish(self.score_job, emit)
        except Exception as err:  # the report is written all the same, every capture failed with this reason
            log.exception("the attacks did not finish")
            lost = f"the attacks did not finish: {type(err).__name__}: {err}"
            recs, scores = {cid: Reconstruction.failed(cid, lost) for cid in ids}, {}
        recs.update(self.skipped)
        rows: list[dict[str, Any]] = [{"capture": cid, "attacked": False, "status": "failed",
                                       "reason": recs[cid].reason if cid in recs else "not attacked"} for cid in ids]
        try:
            ctx = self._scoring_context()
            rows = score_run(ctx, ids, recs, scores, self.flat)
            summary = write_report(self.out_dir, ctx, rows, self.flat)
        except Exception as err:  # the report must never take the run down, and is still written
            log.exception("the leakage report failed; writing it plain")
            return self._plain_report(rows, f"{type(err).__name__}: {err}")
        emit("leakage per client (" + str(self.out_dir) + "):\n"
             + summary_table(summary, per_client(rows, self.report), self.report))
        if summary["unscored"]:
            emit(f"leakage: {summary['unscored']} rebuilt images are unscored: which samples the clients used "
                 "is not known here (a deployment keeps it on the clients); see report.md")
        return leakage_dict(summary, self.report)

    def _scoring_context(self) -> Any:
        """The truth side; when it cannot be built (data, truth, model), a context that scores nothing, saying why."""
        try:
            if self.target is None:
                return ScoringContext(self.run_dir, self.flat)
            from attacks.foreign import ForeignScoringContext

            return ForeignScoringContext(self.run_dir, self.target, int(self.flat.get("seed", 0)))
        except Exception as err:  # the attacks' results stand; only the scores are lost
            log.exception("leakage: scoring cannot start; the rows are unscored")
            return UnscoredContext(self.run_dir, f"scoring could not start: {type(err).__name__}: {err}")

    def _plain_report(self, rows: list[dict[str, Any]], error: str) -> dict[str, Any]:
        """clients.csv, report.md and summary.json without figures, when the full report failed."""
        out = {"status": "failed", "error": error, "dir": str(self.out_dir),
               "captures": len({r.get("capture") for r in rows}),
               "attacked": len({r.get("capture") for r in rows if r.get("attacked")})}
        try:
            plain = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
            columns = [c for c in COLUMNS if any(c in r for r in plain)]
            atomic_write_csv(self.out_dir / "clients.csv", plain, columns)
            atomic_write_text(self.out_dir / "report.md", "\n".join([
                "# Leakage report\n", f"Run: `{self.run_dir}`\n",
                f"**The report could not be computed**: {error}. The rows are in `clients.csv`, each capture's "
                "reconstruction in `reconstructions/`.\n",
                "| capture | attacked | status | reason |", "|---|---|---|---|",
                *[f"| {r.get('capture')} | {r.get('attacked')} | {r.get('status')} | {r.get('reason') or ''} |"
                  for r in plain]]) + "\n")
            atomic_write_json(self.out_dir / "summary.json", out)
        except Exception:  # nothing more can be done here; the log has it
            log.exception("leakage: could not write even the plain report into %s", self.out_dir)
        return out

    def close(self) -> None:
        """Stop scheduling and drop pending attacks (a run that failed)."""
        self.runner.close()


class UnscoredContext:
    """A scoring context that knows no truth (duck-types :class:`attacks.report.ScoringContext`)."""

    def __init__(self, run_dir: str | Path, reason: str) -> None:
        import numpy as np

        self.run_dir = Path(run_dir)
        self.store = CaptureStore(self.run_dir)
        self.splits: dict[int, Any] = {}
        self.x = self.y = np.zeros((0, 1, 1, 1), np.float32)
        self.unscored_reason = reason
        self.scorable = False

    def truth(self, cid: str) -> None:
        return None
