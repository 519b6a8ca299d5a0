"""The attack progress board: per-capture events, log lines, bars, the run's ETA."""

import io
import multiprocessing
import time

from attacks.progress import Board, CaptureTracker, Event, Listener, QueueSink


def test_a_capture_reports_its_stage_iteration_best_match_and_an_eta():
    ev = Event("r001-n0", "refine", 10, 40, 0.0123, stage_started=100.0, started=90.0, now=120.0)
    assert ev.eta() == 60.0  # 2 s per iteration so far, 30 iterations left
    text = ev.text()
    assert "refine 10/40" in text and "0.0123" in text and "30 s so far" in text and "ETA ≤ 60 s" in text
    assert Event("c", "final", 1, 1, None, 0.0, 0.0, 5.0).eta() is None  # a finished stage has none


def test_log_lines_name_every_capture_in_flight_and_the_run_eta():
    lines = []
    board = Board(workers=2, emit=lines.append, every=0.0)
    board.expect(3)
    track = CaptureTracker("r001-n0", board.event, every=0.0)
    track("screen", 0, 1)
    track("refine", 3, 40, 0.5)
    assert any("r001-n0: refine 3/40, best match 0.5" in line for line in lines)
    board.finished("r001-n0", 10.0)
    assert "r001-n0: ok in 10 s" in lines[-1] and "ETA 10 s" in lines[-1]  # 2 left, 2 side by side, 10 s each
    board.close()


def test_the_tracker_throttles_within_a_stage_but_passes_stage_changes_and_ends():
    seen = []
    track = CaptureTracker("c", seen.append, every=3600.0)
    for i in range(1, 11):
        track("refine", i, 10)
    track("final", 0, 1)
    assert [(e.stage, e.done) for e in seen] == [("refine", 1), ("refine", 10), ("final", 0)]


def _worker(q) -> None:
    """An attack in a worker process: reports through a QueueSink (pickled across)."""
    track = CaptureTracker("r002-n1", QueueSink(q), every=0.0)
    track("screen", 1, 1)
    track("refine", 2, 4, 0.25)


def test_bars_and_the_queue_sink_carry_events_from_workers():
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: the events must cross a pickle
    with ctx.Manager() as manager:
        q = manager.Queue()
        worker = ctx.Process(target=_worker, args=(q,))
        worker.start()
        worker.join(timeout=60)
        assert worker.exitcode == 0
        stream = io.StringIO()
        board = Board(total=1, bars=True, stream=stream)
        listener = Listener(q, board)
        deadline = time.time() + 10
        while board.live.get("r002-n1") is None or board.live["r002-n1"].stage != "refine":
            assert time.time() < deadline, "the worker's events never reached the board"
            time.sleep(0.01)
        listener.stop()
    ev = board.live["r002-n1"]
    assert (ev.capture, ev.stage, ev.done, ev.total, ev.best) == ("r002-n1", "refine", 2, 4, 0.25)
    assert ev.started <= ev.stage_started <= ev.now  # the worker's clock: its stage began after its capture
    bar = board._bars["r002-n1"]
    assert (bar.n, bar.total) == (2, 4) and "refine, best 0.25" in str(bar)  # the capture's bar shows the event
    board.finished("r002-n1", 3.0)
    assert "r002-n1" not in board._bars and "r002-n1" not in board.live  # its bar closed with it
    assert (board._run_bar.n, board._run_bar.total) == (1, 1)
    board.close()
    out = stream.getvalue()
    assert "r002-n1:  50%" in out and "2/4" in out and "captures: 100%" in out and "1/1" in out
