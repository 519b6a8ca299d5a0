"""The eavesdropper and the online attack in a real federated run (flwr run, Ray)."""

import csv
import json

import pytest

from attacks.captures import CaptureStore
from simulations.launcher import launch


@pytest.mark.slow
def test_an_eavesdropped_run_ends_with_a_leakage_report(tmp_path):
    # client 1 raises in every round: its error replies are skipped, the run and the audit go on
    result = launch(None, ["num-server-rounds=2", "nodes=3", "channels=4", "head=flatten", "local-steps=1",
                           "alpha-batch-size=1", "max-samples=300", "fraction-evaluate=0.0", "min-evaluate-clients=0",
                           "eavesdrop=true", "attack-online=true", "attack-workers=1", "adra-iterations=3",
                           "adra-restarts=1", f"output-dir={tmp_path}", "run-name=adra-e2e", "fault-partitions=1"],
                    clients=2)
    assert result.returncode == 0, result.status
    run = result.run_dir
    ids = CaptureStore(run).ids()
    assert len(ids) == 2  # client 0 in rounds 1 and 2
    with open(run / "leakage" / "clients.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["capture"] for r in rows] == ids and all(r["status"] == "ok" for r in rows)
    assert {r["partition-id"] for r in rows} == {"0"} and all(float(r["psnr"]) > 0 for r in rows)
    for name in ("report.md", "summary.json", "client-0.png"):
        assert (run / "leakage" / name).is_file(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["leakage"]["samples"] == 2 and 0.0 <= summary["leakage"]["success-rate"] <= 1.0
