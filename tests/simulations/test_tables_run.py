"""``python -m simulations.tables`` for real: the smoke scale killed mid-way and resumed, its
outputs, and a failing cell recorded while the others go on."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simulations.tables.__main__ import main

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _ok_results(out: Path) -> dict[Path, bytes]:
    found = {}
    for path in (out / "results").rglob("*.json") if (out / "results").is_dir() else []:
        try:
            data = path.read_bytes()
            if json.loads(data).get("status") == "ok":
                found[path] = data
        except (OSError, ValueError):
            continue  # written atomically: never half a file, but it may vanish under a rename
    return found


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """The smoke scale started in a subprocess, SIGKILLed (its whole process group) once a
    few tasks are done, then run again with the same command to the end."""
    out = tmp_path_factory.mktemp("tables")
    cmd = [sys.executable, "-m", "simulations.tables", "--scale", "smoke", "--workers", "2", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    deadline = time.monotonic() + 900
    while len(_ok_results(out)) < 6:
        if first.poll() is not None:
            pytest.fail(f"the first run ended before it could be killed:\n{first.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            os.killpg(first.pid, signal.SIGKILL)
            pytest.fail("no task finished within 900 s")
        time.sleep(0.5)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    before = _ok_results(out)
    second = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    return out, before, second


def test_a_killed_run_resumed_with_the_same_command_redoes_no_finished_cell(resumed):
    out, before, second = resumed
    assert second.returncode == 0, second.stderr[-3000:]
    plan_line = next(line for line in second.stderr.splitlines() if line.startswith("All tables:"))
    total_todo, done = map(int, re.search(r"(\d+) tasks to run, (\d+) done", plan_line).groups())
    assert done >= len(before) and total_todo > 0  # it was killed mid-way, and resumed from there
    for path, content in before.items():  # byte for byte: no finished cell was computed again
        assert path.read_bytes() == content, path
    after = _ok_results(out)
    assert len(after) == total_todo + done
    assert not list((out / "runs").rglob("*.partial-*"))  # half-built artifacts of the killed run are gone


def test_the_smoke_scale_writes_every_table_with_both_columns(resumed):
    out, _, _ = resumed
    md = (out / "tables.md").read_text()
    for t in range(1, 7):
        assert f"## Table {t}:" in md
        rows = list(csv.DictReader((out / f"table{t}.csv").open()))
        assert rows and any(k.startswith("paper") for k in rows[0])
        computed = [r for r in rows if r.get("n")]
        assert computed, f"table {t}: no cell computed"
        for r in rows:
            assert r["n"] or r["note"], f"table {t}: a row neither computed nor explained: {r}"
        assert any(any(r[k] for k in r if k.startswith("paper")) for r in rows)  # the paper's side is filled
    for name in ("table1-sr-vs-p", "table2-sr-vs-b", "table3-amia-vs-p", "table5-amia-vs-eta", "table6-defense-deltas"):
        assert (out / f"{name}.png").stat().st_size > 1000
    assert "paradigm not built" in md or "paradigm" in md
    assert "Wilson" in md and "2·P[decision = label] − 1" in md  # both sides' definitions are stated
    # the strict identification, the nulls and the engine of every computed row
    t1 = list(csv.DictReader((out / "table1.csv").open()))
    attacked = [r for r in t1 if r["n"] and not r["null"]]
    assert attacked and all(r["identified-dataset"] != "" for r in attacked)
    assert {r["null"] for r in t1 if r["null"]} == {"aux-random", "aux-mean"}
    assert sum(1 for r in t1 if r["null"]) == 2 * len({(r["activation"], r["P"]) for r in attacked})
    for t in range(1, 7):
        computed = [r for r in csv.DictReader((out / f"table{t}.csv").open()) if r["n"] and not r.get("null")]
        assert all(r["engine-matches"] == "True" and r["commit"] for r in computed), f"table {t}"
    t3 = [r for r in csv.DictReader((out / "table3.csv").open()) if r["n"]]
    for r in t3:  # the references beside F1 come from the row's own set sizes
        m, n = int(r["n"]), int(r["n-nonmembers"])
        assert float(r["all-member-f1"]) == pytest.approx(2 * m / (2 * m + n))
        assert float(r["chance-f1-lo"]) < float(r["all-member-f1"]) and float(r["chance-acc-lo"]) < 0 < float(r["chance-acc-hi"])
    improved = [r for r in t3 if r["shadow"] == "searched"]  # the paper's improved AMIA beside the fixed shadows
    assert improved and all(r["dattack-acc"] and float(r["dattack-acc-lo"]) <= float(r["dattack-acc"]) for r in improved)
    assert "searched minus cnn shadows on the same target" in md
    assert "as 2P − 1" in md and "✓" in md
    assert "--scale smoke --workers 2" in md and "invocation(s)" in md  # the command, commit and wall time


def test_a_failing_cell_is_recorded_with_its_error_and_the_rest_go_on(tmp_path):
    scale = (ROOT / "simulations" / "scale-smoke.toml").read_text()
    scale = scale.replace('datasets = ["mnist-5k"]', 'datasets = ["digits"]').replace(
        "dp-update = { dp-update = true, dp-update-noise-std = 0.1 }",
        'dp-update = { dp-update = true, dp-update-noise-std = 0.1 }\nbroken = { fault-partitions = "0,1" }')
    path = tmp_path / "scale.toml"
    path.write_text(scale)
    out = tmp_path / "out"
    code = main(["--scale", str(path), "--tables", "6", "--workers", "0", "--out", str(out),
                 "--cells", "adra/digits/elu/P3/B1/*/unknown/*"])
    assert code == 1
    results = {p.relative_to(out / "results").as_posix()[:-5]: json.loads(p.read_text())
               for p in (out / "results").rglob("*.json")}
    broken = results["captures/digits/elu/P3/B1/broken/s0"]
    assert broken["status"] == "failed" and "0 usable captures of 2 needed (2 client failures" in broken["error"]
    log = out / "runs" / "captures/digits/elu/P3/B1/broken" / "s0.partial-{}".format(broken["pid"]) / "server.log"
    assert "fault injection" in log.read_text()  # the partial run is kept for the post-mortem
    cell = results["adra/digits/elu/P3/B1/broken/unknown/strong"]
    assert cell["status"] == "failed" and cell["error"].startswith("not run: captures/digits/elu/P3/B1/broken/s0 failed")
    assert results["adra/digits/elu/P3/B1/none/unknown/strong"]["status"] == "ok"
    assert results["adra/digits/elu/P3/B1/dp-update/unknown/strong"]["status"] == "ok"
    md = (out / "tables.md").read_text()
    assert "| digits | broken | elu | B=1, P=3 (paper: B=1, P=32) | unknown | strong |" in md
    assert "failed: not run: captures/digits/elu/P3/B1/broken/s0 failed" in md
