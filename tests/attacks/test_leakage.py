"""The leakage audit on a small eavesdropped federation run in this process."""

import csv
import json
import shutil

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord
from flwr.serverapp.strategy import FedAvg

from attacks.adra.__main__ import main as adra_cli
from attacks.leakage import LeakageAudit
from clients.client_app import train
from fednas.captures import CaptureStore
from fednas.config import parse_config, search_to_record
from fednas.federated import initial_arrays
from fednas.rundir import atomic_save_npz, load_npz
from fednas.runlog import RunLog
from server.eavesdrop import Eavesdropper
from tests.scales import TINY_INVERSE
from tests.server.inprocess_grid import InProcessGrid

CLIENTS = 2
FLAT = {"dag-nodes": 3, "channels": 4, "head": "flatten", "local-steps": 1, "alpha-batch-size": 1, "max-samples": 300,
        "eavesdrop": True, "adra-iterations": 2, "adra-restarts": 1, "attack-workers": 0, **TINY_INVERSE}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """Two clients, two rounds, every capture in ``captures/``; one capture corrupted."""
    path = tmp_path_factory.mktemp("run")
    cfg = parse_config({**FLAT, "run-dir": str(path)})
    RunLog(cfg, path, {"supernodes": CLIENTS})
    store = CaptureStore(path)
    strategy = Eavesdropper(FedAvg(fraction_evaluate=0.0, min_train_nodes=CLIENTS, min_available_nodes=CLIENTS), store)
    strategy.start(grid=InProcessGrid(cfg.flat(), CLIENTS, train), initial_arrays=ArrayRecord(initial_arrays(cfg)),
                   num_rounds=2, train_config=ConfigRecord(search_to_record(cfg.search)))
    bad = store.ids()[-1]
    arrays = load_npz(path / "captures" / f"{bad}.npz")
    atomic_save_npz(path / "captures" / f"{bad}.npz", {k: np.full_like(v, np.nan) for k, v in arrays.items()})
    return path


def _rows(folder):
    with open(folder / "clients.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_every_capture_gets_rows_files_and_a_summary(run_dir):
    cfg = parse_config({**FLAT, "run-dir": str(run_dir)})
    summary = LeakageAudit(run_dir, cfg.flat(), run_dir / "leakage").finish()
    out = run_dir / "leakage"
    rows = _rows(out)
    ids = CaptureStore(run_dir).ids()
    assert len(ids) == 2 * CLIENTS
    assert [r["capture"] for r in rows] == ids  # one sample per capture here, none dropped
    for col in ("round", "partition-id", "sample", "status", "success", "identified", "psnr", "ssim", "mse",
                "label-correct", "attack-seconds", "identifiability", "adra-mode", "knows-weights"):
        assert col in rows[0], col
    ok = [r for r in rows if r["status"] == "ok"]
    bad = [r for r in rows if r["status"] != "ok"]
    assert len(ok) == 3 and len(bad) == 1
    assert "NaN or Inf" in bad[0]["reason"] and bad[0]["capture"] == ids[-1]
    assert all(r["attacked"] == "True" for r in ok) and bad[0]["attacked"] == "False"
    assert all(0.0 <= float(r["identifiability"]) <= 1.0 for r in ok)
    assert all(float(r["psnr"]) > 0 for r in ok)
    for name in ("report.md", "summary.json", "client-0.png", "client-1.png"):
        assert (out / name).is_file(), name
    report = (out / "report.md").read_text()
    assert "Per client, ranked by leakage" in report and "identified" in report
    assert "## Could not be attacked" in report and "NaN or Inf" in report.split("## Could not be attacked")[1]
    for key in ("success-rate", "identified-rate", "mean-psnr", "label-accuracy"):
        assert key in summary
    # the capture that could not be attacked is counted beside the figures, not as a 0 % success
    assert summary["captures"] == len(ids) and summary["failed"] == 0 and summary["unscored"] == 0
    assert summary["attacked"] == len(ids) - 1 and summary["not-attacked"] == 1 and summary["scored"] is True
    full = json.loads((out / "summary.json").read_text())
    assert full["samples"] == len(ids) - 1 and full["not-attacked-samples"] == 1
    assert full["success-rate"] == np.mean([r["success"] == "True" for r in ok])
    assert len(list((out / "reconstructions").glob("*.npz"))) == len(ids)
    _check_strict_identification(cfg, out, ok, full)


def _check_strict_identification(cfg, out, ok, full):
    """identified-dataset, rank, rank-dataset, nearest-dataset recomputed from the saved arrays."""
    from fednas.data import dataset_from_config

    x = dataset_from_config(cfg.data, cfg.run.seed).x.numpy().reshape(-1, *load_npz(
        out / "reconstructions" / f"{ok[0]['capture']}.npz")["images"].shape[1:])
    for r in ok:
        img = load_npz(out / "reconstructions" / f"{r['capture']}.npz")["images"][int(r["position"])]
        order = np.argsort(((x.reshape(len(x), -1) - img.reshape(1, -1)) ** 2).sum(1), kind="stable")
        g = int(r["sample"])
        assert int(r["nearest-dataset"]) == int(order[0])
        assert int(r["rank-dataset"]) == int(np.flatnonzero(order == g)[0]) + 1
        assert (r["identified-dataset"] == "True") == (int(order[0]) == g)
        # D^α is part of the dataset: the true sample can only rank better (or the same) there
        assert 1 <= int(r["rank"]) <= int(r["rank-dataset"])
        assert (r["identified"] == "True") == (int(r["rank"]) == 1)
        assert r["theta-knowledge"] == "wire θ_t1" and r["fidelity"] == "exact"
    assert full["identified-dataset-rate"] == np.mean([r["identified-dataset"] == "True" for r in ok])
    assert full["median-rank-dataset"] == np.median([int(r["rank-dataset"]) for r in ok])
    assert full["theta-knowledge"] == "wire θ_t1"


def test_the_offline_cli_writes_a_new_folder_and_refuses_other_keys(run_dir, capsys):
    (run_dir / "leakage").mkdir(exist_ok=True)
    assert adra_cli([str(run_dir), "--set", "adra-mode=paper", "--set", "adra-iterations=1", "--workers", "0",
                     "--limit", "1", "--set", "attack-identifiability=false"]) == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert out.endswith("leakage-1")
    rows = _rows(run_dir / "leakage-1")
    assert len(rows) == 1 and rows[0]["adra-mode"] == "paper"
    assert adra_cli([str(run_dir), "--set", "dag-nodes=5"]) == 2
    assert "only attack keys" in capsys.readouterr().err


def test_without_truth_the_attack_still_runs_and_the_report_says_it_is_unscored(run_dir, tmp_path):
    # a deployment: the clients kept which samples they used (write-truth = false, no truth/)
    copy = tmp_path / "deployed"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("truth", "leakage*"))
    flat = {**parse_config({**FLAT, "run-dir": str(copy)}).flat(), "write-truth": False, "attack-identifiability": False}
    summary = LeakageAudit(copy, flat, copy / "leakage").finish()
    rows = _rows(copy / "leakage")
    ids = CaptureStore(copy).ids()
    assert {r["capture"] for r in rows} == set(ids)
    unscored = [r for r in rows if r["status"] == "unscored"]
    assert len(unscored) == len(ids) - 1  # the corrupted capture still fails, for its own reason
    assert all(r["predicted-label"] != "" and r["psnr"] == "" and "write-truth = false" in r["reason"] for r in unscored)
    assert len(list((copy / "leakage" / "reconstructions").glob("*.npz"))) == len(ids)  # the attack ran
    assert summary["scored"] is False and summary["unscored"] == len(unscored) and summary["samples"] == 0
    assert summary["success-rate"] is None and summary["failed"] == 0
    assert summary["attacked"] == len({r["capture"] for r in unscored}) and summary["not-attacked"] == 1
    report = (copy / "leakage" / "report.md").read_text()
    assert "**Unscored**" in report and "deployment" in report
