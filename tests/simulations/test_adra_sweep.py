"""The ADRA sweep over a capture run it reuses (made here in one process, no Flower)."""

import csv
import json
from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord
from flwr.serverapp.strategy import FedAvg

from clients.client_app import train
from fednas.captures import CaptureStore
from fednas.config import parse_config, search_to_record
from fednas.federated import initial_arrays
from fednas.runlog import RunLog
from server.eavesdrop import Eavesdropper
from simulations.adra_sweep import main
from tests.scales import TINY_INVERSE, as_cli
from tests.server.inprocess_grid import InProcessGrid

FLAT = {"dag-nodes": 3, "channels": 4, "local-steps": 1, "alpha-batch-size": 1, "batch-size": 8, "max-samples": 200,
        "head": "flatten", "alpha-optimizer": "sgd", "eavesdrop": True, "attack-online": False}


def capture_run(path: Path) -> Path:
    """One eavesdropped round of 2 real clients, with the config.json the attack reads (and the
    truth the clients write into the run directory, as in a simulation)."""
    cfg = parse_config({**FLAT, "run-dir": str(path)})
    RunLog(cfg, path, {"supernodes": 2})
    strategy = Eavesdropper(FedAvg(fraction_evaluate=0.0, min_train_nodes=2, min_available_nodes=2), CaptureStore(path))
    strategy.start(grid=InProcessGrid(cfg.flat(), 2, train), initial_arrays=ArrayRecord(initial_arrays(cfg)),
                   num_rounds=1, train_config=ConfigRecord(search_to_record(cfg.search)))
    return path


def _rows(out: Path) -> list[dict]:
    with open(out / "figures.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_the_sweep_attacks_a_reused_run_and_replaces_a_repeated_row(tmp_path, capsys):
    run = capture_run(tmp_path / "run")
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "runs.json").write_text(json.dumps({"sgd-p3-b1": str(run)}))  # the capture run is reused, not relaunched
    quick = ["--set", "adra-iterations=3", "--set", "adra-restarts=1", "--set", "attack-identifiability=false",
             "--set", "adra-init=noise", *as_cli(TINY_INVERSE)]
    args = ["--dag-nodes", "3", "--batches", "1", "--knows", "true", "--workers", "0", "--out", str(out), *quick]
    assert main([*args, "--modes", "paper,strong"]) == 0
    rows = _rows(out)
    assert [(r["P"], r["B"], r["mode"], r["knows-weights"]) for r in rows] == [("3", "1", "paper", "true"),
                                                                              ("3", "1", "strong", "true")]
    for r in rows:  # each row is its own offline attack, and says what that attack's report says
        report = json.loads((Path(r["leakage"]) / "summary.json").read_text())
        assert int(r["captures"]) == report["captures"] == 2 and int(r["samples"]) == report["samples"] == 2
        assert float(r["success-rate"]) == report["success-rate"]
        assert report["settings"]["adra-mode"] == r["mode"]
    assert len({r["leakage"] for r in rows}) == 2  # a fresh leakage folder per attack, none overwritten
    assert "| 3 | 1 | sgd | strong | true | 2 |" in (out / "figures.md").read_text()
    # a second sweep into the same --out adds up; the repeated (P, B, mode, knows) row is replaced
    assert main([*args, "--modes", "strong"]) == 0
    again = _rows(out)
    assert [r["mode"] for r in again] == ["paper", "strong"] and again[1]["leakage"] not in {r["leakage"] for r in rows}
    assert json.loads((out / "runs.json").read_text()) == {"sgd-p3-b1": str(run)}
    assert capsys.readouterr().out.strip().endswith(str(out))
