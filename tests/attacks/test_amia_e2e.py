"""End to end: a federated run through Flower with ``amia = true``, then the CLI on it."""

import json

import pytest

from attacks.amia.__main__ import main
from simulations.launcher import launch

TINY = ["num-server-rounds=1", "nodes=3", "channels=4", "local-steps=2", "batch-size=16", "alpha-batch-size=16",
        "max-samples=400", "amia=true", "amia-shadows=cnn,searched", "amia-num-shadows=2", "amia-shadow-steps=3",
        "amia-mlp-epochs=5", "amia-members=40"]


@pytest.mark.slow
def test_a_run_with_amia_true_ends_with_its_attack_and_the_cli_adds_another(tmp_path):
    result = launch(None, [*TINY, f"output-dir={tmp_path}"], clients=2)
    assert result.returncode == 0, result.status
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["amia"] == {"status": "completed", "dir": str(result.run_dir / "amia")}
    metrics = json.loads((result.run_dir / "amia" / "metrics.json").read_text())
    assert {r["shadow"] for r in metrics["results"]} == {"cnn", "searched"}
    assert main([str(result.run_dir), "--set", "amia-shadows=cnn", "--set", "amia-num-shadows=2",
                 "--set", "amia-shadow-steps=2", "--set", "amia-mlp-epochs=2", "--set", "amia-attacks=loss"]) == 0
    again = json.loads((result.run_dir / "amia-1" / "metrics.json").read_text())
    assert again["target"]["test-acc"] == metrics["target"]["test-acc"]  # the same saved model
