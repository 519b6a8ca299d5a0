"""``python -m benchmarks.reliability [dead-client] [stop] [--runs N]``: what a dying client
costs the healthy ones, and how long stopping a run takes.

- ``dead-client``: federated runs in which partition 1 ends its process (``os._exit``) in
  every train call, with Flower's behaviour (``FEDNAS_ACTOR_MAX_RESTARTS=0``: a dead Ray
  actor stays dead) and with this project's default (the actor is restarted, see
  :mod:`clients.actors`), side by side. Counted: train calls of healthy clients that
  failed, over all of them (rate with a Wilson 95 % interval).
- ``stop``: ``python -m simulations run`` in a subprocess, SIGINT once round 1 is written;
  seconds from the signal to the launcher's exit, and those it reports for stopping the
  run's processes (mean with a t 95 % interval); whether any process of the run survived.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, loadavg, machine, t_interval, table, wilson, write_results
from fednas.rundir import read_rows
from simulations.launcher import PROJECT_ROOT, launch
from simulations.processes import alive, run_processes

TINY = ["dag-nodes=3", "channels=4", "local-steps=2", "batch-size=8", "alpha-batch-size=2", "max-samples=400",
        "fraction-evaluate=0.0", "min-evaluate-clients=0"]


def dead_client(runs: int, clients: int, rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, restarts in (("flower (no restart)", "0"), ("restarted (default)", "-1")):
        failed = calls = 0
        per_run = []
        os.environ["FEDNAS_ACTOR_MAX_RESTARTS"] = restarts  # inherited by the SuperLink and Ray
        try:
            for i in range(runs):
                with tempfile.TemporaryDirectory() as tmp:
                    result = launch(None, [*TINY, f"num-server-rounds={rounds}", "fault-partitions=1:exit",
                                           f"output-dir={tmp}", f"seed={i}"], clients=clients,
                                    stream=open(os.devnull, "w"))
                    rows = read_rows(result.run_dir / "rounds.csv") if (result.run_dir / "rounds.csv").is_file() else []
                healthy_failed = sum(int(r["failed"]) - 1 for r in rows)  # the dying client fails every round
                failed += healthy_failed
                calls += (clients - 1) * len(rows)
                per_run.append({"status": result.status, "rounds": len(rows), "healthy-failed": healthy_failed,
                                "seconds": round(result.seconds, 1)})
        finally:
            os.environ.pop("FEDNAS_ACTOR_MAX_RESTARTS", None)
        lo, hi = wilson(failed, calls)
        out[label] = {"healthy-calls": calls, "healthy-failed": failed, "rate": failed / calls if calls else None,
                      "ci95": [lo, hi], "runs": per_run}
    return out


def stop_runs(runs: int) -> dict[str, Any]:
    totals, reported, leftovers = [], [], []
    for i in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "simulations", "run", "--clients", "2", "--set", "num-server-rounds=3",
                   "--set", "local-steps=40", "--set", f"output-dir={tmp}", "--set", f"seed={i}",
                   *[x for s in TINY for x in ("--set", s)]]
            proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            while not list(Path(tmp).glob("*/rounds.csv")) and proc.poll() is None:
                time.sleep(0.2)
            procs = run_processes([proc.pid])
            t0 = time.monotonic()
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=300)
            totals.append(time.monotonic() - t0)
            m = re.search(r"processes were stopped in ([\d.]+) s", err)
            reported.append(float(m.group(1)) if m else math.nan)
            leftovers.append(len(alive(procs)))
            print(f"run {i}: exit {proc.returncode}, {totals[-1]:.1f} s to exit, stop {reported[-1]} s, "
                  f"{leftovers[-1]} left, load {loadavg()}", file=sys.stderr)
    return {"signal-to-exit": t_interval(totals), "stop-reported": t_interval(reported), "runs": runs,
            "left-over-processes": sum(leftovers), "raw": {"signal-to-exit": totals, "stop": reported}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.reliability", description=__doc__.splitlines()[0])
    p.add_argument("what", nargs="*", default=["dead-client", "stop"], choices=("dead-client", "stop"))
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    payload: dict[str, Any] = {"machine": machine(), "load-before": loadavg(), "args": vars(args)}
    if "dead-client" in args.what:
        res = payload["dead-client"] = dead_client(args.runs, args.clients, args.rounds)
        print(table([(k, v["healthy-calls"], v["healthy-failed"], f"{100 * (v['rate'] or 0):.0f}%",
                      f"{100 * v['ci95'][0]:.0f}-{100 * v['ci95'][1]:.0f}%") for k, v in res.items()],
                    ("actor", "healthy train calls", "failed", "rate", "95% CI (Wilson)")))
    if "stop" in args.what:
        res = payload["stop"] = stop_runs(args.runs)
        print(table([(k, f"{v[0]:.1f}", f"{v[1]:.1f}-{v[2]:.1f}") for k, v in
                     (("signal to exit (s)", res["signal-to-exit"]), ("stop reported (s)", res["stop-reported"]))],
                    ("measure", "mean", "95% CI (t)")) + f"\nprocesses left over: {res['left-over-processes']}")
    payload["load-after"] = loadavg()
    print("results:", write_results("reliability", payload, RESULTS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
