"""The offline attack keeps going: a bad file costs its capture only, named; the report is always written."""

import csv
import json
import shutil

import pytest
from flwr.app import ArrayRecord, ConfigRecord
from flwr.serverapp.strategy import FedAvg

from attacks.adra.__main__ import main as adra_cli
from clients.client_app import train
from fednas.captures import CaptureStore
from fednas.config import parse_config, search_to_record
from fednas.federated import initial_arrays
from fednas.runlog import RunLog
from server.eavesdrop import Eavesdropper
from tests.scales import TINY_INVERSE, as_cli
from tests.server.inprocess_grid import InProcessGrid

CLIENTS = 2
FLAT = {"dag-nodes": 3, "channels": 4, "head": "flatten", "local-steps": 1, "alpha-batch-size": 1, "max-samples": 300,
        "eavesdrop": True}
ATTACK = ["--workers", "0", "--set", "adra-iterations=2", "--set", "adra-restarts=1",
          "--set", "attack-identifiability=false", *as_cli(TINY_INVERSE)]


@pytest.fixture(scope="module")
def captured(tmp_path_factory):
    """Two clients, one round: two captures and their truth records."""
    path = tmp_path_factory.mktemp("run")
    cfg = parse_config({**FLAT, "run-dir": str(path)})
    RunLog(cfg, path, {"supernodes": CLIENTS})
    strategy = Eavesdropper(FedAvg(fraction_evaluate=0.0, min_train_nodes=CLIENTS, min_available_nodes=CLIENTS),
                            CaptureStore(path))
    strategy.start(grid=InProcessGrid(cfg.flat(), CLIENTS, train), initial_arrays=ArrayRecord(initial_arrays(cfg)),
                   num_rounds=1, train_config=ConfigRecord(search_to_record(cfg.search)))
    return path


@pytest.fixture
def run_dir(captured, tmp_path):
    """A copy each test may damage."""
    copy = tmp_path / "run"
    shutil.copytree(captured, copy)
    return copy


def _truncate(path):
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _report(folder):
    with open(folder / "clients.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return rows, json.loads((folder / "summary.json").read_text()), (folder / "report.md").read_text()


@pytest.mark.parametrize("damaged", ["json", "npz"])
def test_a_truncated_capture_costs_that_capture_only_and_is_named(run_dir, damaged):
    store = CaptureStore(run_dir)
    bad, good = store.ids()
    path = store.path(bad) if damaged == "json" else run_dir / "captures" / f"{bad}.npz"
    _truncate(path)
    assert adra_cli([str(run_dir), *ATTACK]) == 0
    rows, summary, report = _report(run_dir / "leakage")
    assert summary["captures"] == 2 and summary["attacked"] == 1 and summary["not-attacked"] == 1
    assert {r["capture"] for r in rows if r["attacked"] == "True"} == {good}
    lost = [r for r in rows if r["capture"] == bad]
    assert lost and all(r["attacked"] == "False" and str(path) in r["reason"] for r in lost)
    if damaged == "json":
        assert "truncated or not JSON" in lost[0]["reason"] and lost[0]["round"] == "1"
    assert str(path) in report.split("## Could not be attacked")[1]


def test_when_no_capture_can_be_attacked_the_report_is_written_and_the_exit_status_says_so(run_dir, capsys):
    store = CaptureStore(run_dir)
    for cid in store.ids():
        _truncate(store.path(cid))
    assert adra_cli([str(run_dir), *ATTACK]) == 1
    assert "no capture could be attacked" in capsys.readouterr().err
    rows, summary, report = _report(run_dir / "leakage")
    assert summary["attacked"] == 0 and summary["not-attacked"] == 2 and len(rows) == 2
    assert all("truncated or not JSON" in r["reason"] for r in rows) and "## Could not be attacked" in report


def test_a_bad_truth_record_leaves_its_capture_unscored_with_the_file_named(run_dir):
    store = CaptureStore(run_dir)
    cid = store.ids()[0]
    meta = store.meta(cid)
    truth = run_dir / "truth" / f"r001-p{meta['partition-id']}.json"
    truth.write_text(json.dumps({"alpha-indices": [[3], [4]], "alpha-batch-sizes": [2]}))
    assert adra_cli([str(run_dir), *ATTACK]) == 0
    rows, summary, _ = _report(run_dir / "leakage")
    mine = [r for r in rows if r["capture"] == cid]
    assert summary["attacked"] == 2 and all(r["status"] == "unscored" for r in mine)
    assert all(r["reason"].startswith(f"bad truth record: {truth}: field 'alpha-batch-sizes'") for r in mine)
    assert all(r["status"] == "ok" for r in rows if r["capture"] != cid)  # the other client still scores


def test_a_truncated_manifest_stops_the_attack_before_any_work(run_dir, capsys):
    manifest = run_dir / "captures" / "manifest.json"
    _truncate(manifest)
    assert adra_cli([str(run_dir), *ATTACK]) == 2
    assert f"error: {manifest}: truncated or not JSON" in capsys.readouterr().err
    assert not list(run_dir.glob("leakage*"))


def test_a_report_that_cannot_be_computed_is_still_written_plain(run_dir, monkeypatch, capsys):
    import attacks.leakage

    def broken(*args, **kwargs):  # e.g. a disk that fills up while the figures are written
        raise OSError("No space left on device")

    monkeypatch.setattr(attacks.leakage, "write_report", broken)
    assert adra_cli([str(run_dir), *ATTACK]) == 1
    assert "the leakage report failed (OSError: No space left on device)" in capsys.readouterr().err
    rows, summary, report = _report(run_dir / "leakage")
    assert summary["status"] == "failed" and summary["attacked"] == 2 and len({r["capture"] for r in rows}) == 2
    assert "could not be computed" in report and "No space left on device" in report
