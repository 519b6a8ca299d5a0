"""Running an attack over a run's captures: online (worker processes) or offline.

``AttackRunner`` takes capture ids as the eavesdropper writes them and attacks each in a
worker process, so the rounds go on meanwhile; ``finish()`` waits for the rest and saves
every reconstruction under ``<leakage>/reconstructions/``. Progress (per capture: stage,
iteration, best match, ETA) goes to an :class:`attacks.progress.Board`: log lines in the
run's log, or tqdm bars for the offline CLI. A
worker only ever gets the run directory and a capture id: it loads the capture (never the
truth) and the public knowledge itself. The identifiability figure, which needs the
truth, is a separate scoring job (the attack's ``AttackReport.score_job``) run in the same
pool. A capture whose attack raises or whose worker dies comes back as a failed
reconstruction: nothing here stops the federation.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import functools
import logging
import multiprocessing
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from attacks.base import Knowledge, Reconstruction, attack_class, make_attack
from attacks.progress import Board, CaptureTracker, Listener, QueueSink
from fednas.captures import CaptureStore
from fednas.config import parse_config
from fednas.rundir import atomic_save_npz, atomic_write_json

log = logging.getLogger(__name__)

RECONSTRUCTIONS = "reconstructions"


# ---------------------------------------------------------------------------- knowledge


@functools.lru_cache(maxsize=2)
def _knowledge(flat_items: tuple, target: Any = None) -> Knowledge:
    from fednas.data import dataset_from_config, make_pools

    cfg = parse_config(dict(flat_items))
    if target is not None:  # another app's model (attacks.foreign): no dataset of ours
        return target.knowledge(cfg)
    dataset = dataset_from_config(cfg.data, cfg.run.seed)
    aux_x = aux_y = None
    if attack_class(cfg.attack.attack).wants_aux(cfg):
        aux = make_pools(len(dataset), cfg.data, cfg.run.seed).aux
        aux_x, aux_y = dataset.x[aux].numpy(), dataset.y[aux].numpy()
    return Knowledge(cfg, dataset.spec, aux_x, aux_y)


def knowledge_for(flat: Mapping[str, Any], target: Any = None) -> Knowledge:
    """The attacker's public knowledge for a run config, or another app's ``ForeignTarget`` (cached per process)."""
    return _knowledge(tuple(sorted(flat.items())), target)


# ---------------------------------------------------------------------------- one job


def save_reconstruction(out_dir: Path, rec: Reconstruction) -> None:
    folder = out_dir / RECONSTRUCTIONS
    atomic_save_npz(folder / f"{rec.capture_id}.npz", {
        "images": rec.images, "labels": rec.labels, "steps": rec.steps, "positions": rec.positions})
    atomic_write_json(folder / f"{rec.capture_id}.json", {
        "capture": rec.capture_id, "status": rec.status, "reason": rec.reason, "match": rec.match,
        "seconds": rec.seconds, "details": rec.details})


@contextlib.contextmanager
def one_thread():
    """Torch on one thread for the duration: the attack's ops are tiny, and intra-op threads
    on a busy machine cost far more in synchronisation than they give (measured here: an
    attack step 13x slower with 2 threads than with 1 on 2 loaded cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def attack_job(run_dir: str, capture_id: str, flat: Mapping[str, Any], out_dir: str,
               progress: Callable[..., None] | None = None, target: Any = None) -> Reconstruction:
    """Attack one stored capture with the configured attack; save and return the result.

    ``target``: another app's model (``attacks.foreign.ForeignTarget``); None: this project's run.
    """
    with one_thread():
        return _attack_job(run_dir, capture_id, flat, out_dir, progress, target)


def _attack_job(run_dir: str, capture_id: str, flat: Mapping[str, Any], out_dir: str,
                progress: Callable[..., None] | None, target: Any = None) -> Reconstruction:
    t0 = time.perf_counter()
    try:
        knowledge = knowledge_for(flat, target)
        cfg = knowledge.config
        capture = CaptureStore(run_dir).load(capture_id)
        attack = make_attack(cfg.attack.attack, cfg.attack, seed=cfg.run.seed)
        if progress is not None and hasattr(attack, "progress"):
            attack.progress = progress
        rec = attack.reconstruct([capture], knowledge)[0]
    except Exception as err:  # the attack never takes the run down: report and go on
        log.exception("attack on capture %s failed", capture_id)
        rec = Reconstruction.failed(capture_id, f"attack error: {type(err).__name__}: {err}", time.perf_counter() - t0)
    save_reconstruction(Path(out_dir), rec)
    return rec


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # one core per worker (see one_thread)


# ---------------------------------------------------------------------------- runner


class AttackRunner:
    """Attacks captures as they come (``submit``), and collects the results (``finish``).

    Parameters
    ----------
    run_dir : path
        The run directory (``captures/`` inside).
    flat : mapping
        The run's flat config (attack keys included).
    out_dir : path
        The leakage folder; reconstructions go to its ``reconstructions/``.
    workers : int
        Worker processes (0: attack in this process when ``finish`` is called).
    target : ForeignTarget, optional
        Another app's model (``attacks.foreign``); None: the run's own supernet.
    """

    def __init__(self, run_dir: str | Path, flat: Mapping[str, Any], out_dir: str | Path, workers: int = 1,
                 target: Any = None, bars: bool = False, emit: Callable[[str], None] | None = None) -> None:
        self.run_dir, self.out_dir = Path(run_dir), Path(out_dir)
        self.flat = dict(flat)
        self.target = target
        self.order: list[str] = []
        self.futures: dict[str, cf.Future] = {}
        self.scoring: dict[str, cf.Future] = {}
        self.pool = self.listener = self.manager = None
        self.board = Board(0, max(workers, 1), bars=bars, emit=emit)
        if workers > 0:
            ctx = multiprocessing.get_context("spawn")
            self.pool = cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker)
            self.manager = ctx.Manager()  # its queue carries the workers' progress events here
            self.queue = self.manager.Queue()
            self.listener = Listener(self.queue, self.board)

    def submit(self, capture_id: str, score_job: Callable[..., Any] | None = None) -> None:
        """Schedule the attack of one capture (and its scoring job, e.g. identifiability)."""
        self.order.append(capture_id)
        self.board.expect(1)
        if self.pool is None:
            return
        tracker = CaptureTracker(capture_id, QueueSink(self.queue))
        future = self.pool.submit(attack_job, str(self.run_dir), capture_id, self.flat, str(self.out_dir), tracker,
                                  self.target)
        future.add_done_callback(lambda f, cid=capture_id: self._done(cid, _result(f, cid)))
        self.futures[capture_id] = future
        if score_job is not None:
            self.scoring[capture_id] = self.pool.submit(score_job, str(self.run_dir), capture_id, self.flat)

    def _done(self, cid: str, rec: Reconstruction) -> None:
        self.board.finished(cid, rec.seconds, rec.status if rec.status == "ok" else f"failed ({rec.reason[:60]})")

    def finish(self, score_job: Callable[..., Any] | None = None,
               emit: Callable[[str], None] | None = None) -> tuple[dict[str, Reconstruction], dict[str, Any]]:
        """Wait for every attack (in-process ones run now); return reconstructions and scores."""
        results: dict[str, Reconstruction] = {}
        scores: dict[str, Any] = {}
        if emit is not None:
            self.board.emit = emit
        try:
            if self.pool is None:
                for cid in self.order:
                    tracker = CaptureTracker(cid, self.board.event)
                    results[cid] = attack_job(str(self.run_dir), cid, self.flat, str(self.out_dir), progress=tracker,
                                              target=self.target)
                    self._done(cid, results[cid])
                    if score_job is not None:
                        scores[cid] = _guard(score_job, str(self.run_dir), cid, self.flat)
            else:
                pending = {f: cid for cid, f in self.futures.items()}
                for f in cf.as_completed(pending):
                    results[pending[f]] = _result(f, pending[f])
                for cid, f in self.scoring.items():
                    try:
                        scores[cid] = f.result()
                    except Exception as err:  # a scoring job must not lose the report
                        scores[cid] = {"error": f"{type(err).__name__}: {err}"}
        finally:
            self._close()
        for cid in self.order:  # a worker that died: still one failed row per capture
            if cid not in results:
                results[cid] = Reconstruction.failed(cid, "the attack did not run (worker pool stopped)")
                save_reconstruction(self.out_dir, results[cid])
        return results, scores

    def _close(self, wait: bool = True) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=wait, cancel_futures=True)
        if self.listener is not None:
            self.listener.stop()
        if self.manager is not None:
            self.manager.shutdown()
        self.board.close()

    def close(self) -> None:
        """Stop scheduling and drop pending attacks (a run that failed)."""
        self._close(wait=False)


def _result(f: cf.Future, cid: str) -> Reconstruction:
    try:
        return f.result()
    except Exception as err:  # BrokenProcessPool, pickling errors: the worker is gone
        return Reconstruction.failed(cid, f"attack worker failed: {type(err).__name__}: {err}")


def _guard(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as err:  # a scoring job must not lose the report
        log.warning("scoring job failed for %s: %s: %s", args[1], type(err).__name__, err)
        return {"error": f"{type(err).__name__}: {err}"}
