"""The outside app (tests/plugin_app, written from docs/plugin.md alone) under ``flwr run``, then attacked offline."""

import re
import subprocess

import pytest

from attacks.adra.__main__ import main as adra_main
from simulations.launcher import SuperLink, run_status
from tests.plugin.conftest import APP
from tests.plugin.test_plugin_app import ATTACK, CLIENTS, DATA, check_scored_per_client


@pytest.mark.slow
def test_the_outside_app_runs_under_flwr_run_and_is_scored_per_client(tmp_path):
    link = SuperLink(tmp_path)  # FLWR_HOME in tmp_path: nothing of Flower's lands in the app
    out = tmp_path / "run"
    try:
        done = subprocess.run(["flwr", "run", str(APP), "--stream", "--run-config", f'run-dir="{out}"',
                               "--federation-config", f"num-supernodes={CLIENTS} client-resources-num-cpus=1"],
                              env=link.env, cwd=APP, capture_output=True, text=True, timeout=600)
        ids = re.findall(r"Successfully started run (\d+)", done.stdout)
        assert ids, done.stdout[-2000:] + done.stderr[-2000:]
        status = run_status(link.env, int(ids[0]), APP)  # --stream exits 0 even when the run failed
    finally:
        link.stop()
    assert status.endswith("completed"), status + done.stdout[-3000:]
    assert "Starting Eavesdropper(FedAvg) strategy" in done.stdout + done.stderr
    assert adra_main([str(out), *DATA, *ATTACK]) == 0
    check_scored_per_client(out, out / "leakage")
