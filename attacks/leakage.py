"""The leakage audit of one run: attack every capture, score, write the report.

Used online by the ServerApp (``submit`` as captures arrive, ``finish`` after the last
round) and offline by ``python -m attacks.adra`` (every stored capture, a fresh leakage
folder). ``finish`` never raises: whatever goes wrong is logged and reported, and the
federated run it belongs to still completes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from attacks.captures import CaptureStore
from attacks.report import ScoringContext, identifiability_job, leakage_dict, per_client, score_run, summary_table, write_report
from attacks.runner import AttackRunner

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
        # identifiability needs the run's own dataset and supernet
        self.score_job = identifiability_job if self.flat.get("attack-identifiability", True) and target is None else None
        self.runner = AttackRunner(self.run_dir, self.flat, self.out_dir, self.workers, target, bars=bars)

    def submit(self, capture_id: str) -> None:
        """Schedule one capture's attack (and identifiability) now."""
        self.runner.submit(capture_id, self.score_job)

    def finish(self, emit: Callable[[str], None] | None = None, only: list[str] | None = None) -> dict[str, Any]:
        """Wait for the attacks, score them, write the report; return the summary.

        Every stored capture (or each one ``only`` names, for an offline run on a subset)
        is attacked if it was not submitted yet, and gets its rows.
        """
        emit = emit or log.info
        try:
            ids = self.store.ids() if only is None else list(only)
            submitted = set(self.runner.order)
            for cid in ids:  # stored but never submitted (offline, or attack-workers = 0): attack now
                if cid not in submitted:
                    self.submit(cid)
            recs, scores = self.runner.finish(self.score_job, emit)
            ctx = self._scoring_context()
            rows = score_run(ctx, ids, recs, scores, self.flat)
            summary = write_report(self.out_dir, ctx, rows, self.flat)
            emit("leakage per client (" + str(self.out_dir) + "):\n" + summary_table(summary, per_client(rows)))
            if summary["unscored"]:
                emit(f"leakage: {summary['unscored']} rebuilt images are unscored: which samples the clients used "
                     "is not known here (a deployment keeps it on the clients); see report.md")
            return leakage_dict(summary)
        except Exception as err:  # the report must never take the run down
            log.exception("the leakage report failed")
            return {"status": "failed", "error": f"{type(err).__name__}: {err}", "dir": str(self.out_dir)}

    def _scoring_context(self) -> Any:
        if self.target is None:
            return ScoringContext(self.run_dir, self.flat)
        from attacks.foreign import ForeignScoringContext

        return ForeignScoringContext(self.run_dir, self.target, int(self.flat.get("seed", 0)))

    def close(self) -> None:
        """Stop scheduling and drop pending attacks (a run that failed)."""
        self.runner.close()
