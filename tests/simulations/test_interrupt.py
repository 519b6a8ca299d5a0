"""Stopping a run: SIGINT to the launcher mid-round, and the signal helpers (processes: test_processes.py)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from fednas.runlog import mark_interrupted
from simulations.launcher import PROJECT_ROOT
from simulations.processes import StopSignals, alive, run_processes
from tests.simulations.waiting import wait_for


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_becomes_an_exception_once_and_clean_up_is_shielded(sig, code):
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        from simulations.processes import Interrupted, StopSignals
        with StopSignals() as s:
            try:
                print("ready", flush=True)
                time.sleep(60)
            except Interrupted as err:
                with s.shield():
                    os.kill(os.getpid(), {int(sig)})  # a second signal during clean-up: logged only
                    time.sleep(0.2)
                    print("cleaned", err.name, flush=True)
                sys.exit(err.exit_code)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=PROJECT_ROOT)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert out.strip() == f"cleaned {signal.Signals(sig).name}"
    assert "already stopping" in err


def test_the_handlers_are_restored():
    before = signal.getsignal(signal.SIGINT)
    with StopSignals():
        assert signal.getsignal(signal.SIGINT) is not before
    assert signal.getsignal(signal.SIGINT) is before


def test_an_interrupted_summary_keeps_the_last_finished_round(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"status": "running", "rounds-completed": 1}))
    (tmp_path / "rounds.csv").write_text("round,sampled\n1,2\n2,2\n")
    summary = mark_interrupted(tmp_path, "SIGINT")
    assert summary["status"] == "interrupted" and summary["last-finished-round"] == 2
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    (tmp_path / "summary.json").write_text(json.dumps({"status": "completed"}))
    assert mark_interrupted(tmp_path, "SIGTERM")["status"] == "completed"  # it finished first


@pytest.mark.slow
def test_sigint_mid_round_stops_the_run_and_every_process_of_it(tmp_path):
    # three rounds slow enough that the signal lands in round 2
    cmd = [sys.executable, "-m", "simulations", "run", "--clients", "2", "--set", "num-server-rounds=3",
           "--set", "dag-nodes=3", "--set", "channels=4", "--set", "max-samples=300", "--set", "local-steps=40",
           "--set", f"output-dir={tmp_path}", "--set", "run-name=interrupt"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        run_dir = None

        def round_one_done():
            nonlocal run_dir
            runs = [p for p in tmp_path.iterdir() if (p / "rounds.csv").is_file()]
            run_dir = runs[0] if runs else None
            return run_dir is not None and launcher.poll() is None
        wait_for(round_one_done, 400, "round 1 to finish")
        procs = run_processes([launcher.pid])  # launcher, SuperLink, SuperExec, ServerApp, Ray, flwr run
        cmdlines = " ".join(" ".join(p.cmdline()) for p in alive(procs))
        assert "flower-superlink" in cmdlines and "raylet" in cmdlines and "flwr-simulation" in cmdlines
        t0 = time.monotonic()
        launcher.send_signal(signal.SIGINT)
        out, err = launcher.communicate(timeout=120)
        seconds = time.monotonic() - t0
    finally:
        if launcher.poll() is None:
            launcher.kill()
    print(f"stopped in {seconds:.1f} s")
    assert launcher.returncode == 130, err[-2000:]
    assert out.strip().splitlines()[-1] == str(run_dir)
    assert "Traceback" not in err and "interrupted by SIGINT" in err
    summary = json.loads((run_dir / "summary.json").read_text())
    rounds = (run_dir / "rounds.csv").read_text().strip().splitlines()[1:]
    assert summary["status"] == "interrupted" and summary["signal"] == "SIGINT"
    assert summary["last-finished-round"] == len(rounds) >= 1 and summary["rounds-completed"] == len(rounds) < 3
    assert not (run_dir / "model.npz").exists()
    assert alive(procs) == [], [" ".join(p.cmdline())[:100] for p in alive(procs)]
