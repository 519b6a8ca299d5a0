"""An outside Flower app written from docs/plugin.md alone (tests/plugin_app), captured and attacked.

In one process (the app's own ServerApp ``main`` and ClientApp on an in-process grid): the report
is scored per client, the contract's checks refuse a wrong ``--model`` before any capture, and
Flower's log names the wrapped strategy.
"""

import csv
import json
import logging
import sys

import pytest
import torch
from flwr.app import Context, RecordDict

from attacks.adra.__main__ import main as adra_main
from fednas.captures import CaptureStore
from fednas.truth import read_truth
from server.inprocess import InProcessGrid, through
from tests.plugin.conftest import APP
from tests.scales import TINY_INVERSE, as_cli

CLIENTS, ROUNDS = 2, 2
ATTACK = ["--workers", "0", "--set", "adra-iterations=10", "--set", "adra-restarts=1", *as_cli(TINY_INVERSE)]
DATA = ["--data", "cellsearch.data:images", "--aux", "cellsearch.data:public_images"]


def app_config(run_dir):
    import tomllib

    config = tomllib.loads((APP / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    return {**config, "run-dir": str(run_dir)}


def run_app(run_dir):
    """The app's ServerApp main against its ClientApp, two clients, as under ``flwr run``."""
    from cellsearch.client_app import app as client_app
    from cellsearch.server_app import main

    torch.manual_seed(0)
    config = app_config(run_dir)
    grid = InProcessGrid(config, CLIENTS, through(client_app))
    main(grid, Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=config))


@pytest.fixture(scope="module")
def captured(tmp_path_factory):
    """One run of the app, shared by the tests (its package on the path while it runs)."""
    sys.path.insert(0, str(APP))
    try:
        run_dir = tmp_path_factory.mktemp("cellsearch")
        records = _Lines()
        logging.getLogger("flwr").addHandler(records)
        try:
            run_app(run_dir)
        finally:
            logging.getLogger("flwr").removeHandler(records)
        return run_dir, records.lines
    finally:
        sys.path.remove(str(APP))


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def check_scored_per_client(run_dir, out):
    """One report row per partition-id, every capture's samples matched to the client's truth record."""
    store = CaptureStore(run_dir)
    ids = store.ids()
    assert len(ids) == CLIENTS * ROUNDS
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(c["client"] for c in summary["clients"]) == [str(p) for p in range(CLIENTS)]
    assert summary["attacked"] == len(ids) and summary["unscored"] == 0 and summary["failed"] == 0
    with open(out / "clients.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for cid in ids:
        meta = store.meta(cid)
        truth = read_truth(run_dir, meta)
        mine = [r for r in rows if r["capture"] == cid]
        assert [int(r["sample"]) for r in mine] == list(truth.alpha_indices)  # the client's own samples
        assert {r["partition-id"] for r in mine} == {str(meta["partition-id"])}
        assert all(r["status"] == "ok" and float(r["psnr"]) > 0 for r in mine)
    assert summary["samples"] == sum(len(read_truth(run_dir, store.meta(c)).alpha_indices) for c in ids)
    for pid in range(CLIENTS):
        assert (out / f"client-{pid}.png").is_file()
    settings = summary["settings"]  # the attacked model, not this project's network keys
    assert settings["model"] == "cellsearch.model:make_net" and settings["input-shape"] == "1x8x8"
    assert settings["num-classes"] == 10 and settings["alpha-arrays"] == "cell.arch_weights [3, 3]"
    assert "nodes" not in settings and "channels" not in settings and "dataset" not in settings


def test_the_app_is_captured_and_scored_per_client(captured):
    run_dir, lines = captured
    assert "Starting Eavesdropper(FedAvg) strategy:" in lines
    meta = CaptureStore(run_dir).meta(CaptureStore(run_dir).ids()[0])
    assert meta["schema-version"] == 1 and meta["partition-id"] in range(CLIENTS)
    assert meta["client-settings-source"] == {"alpha-optimizer": "declared", "alpha-lr": "train-config:arch-lr",
                                              "alpha-batch-size": "train-config:arch-batch",
                                              "local-steps": "reply-metrics:steps-done"}
    truth = json.loads(next((run_dir / "truth").glob("*.json")).read_text())
    assert set(truth) == {"schema-version", "alpha-indices", "alpha-batch-sizes", "alpha-pool"}
    assert adra_main([str(run_dir), *DATA, *ATTACK, "--out", "scored"]) == 0
    check_scored_per_client(run_dir, run_dir / "scored")


def _factory_module(tmp_path, monkeypatch, body):
    (tmp_path / "wrongnets.py").write_text("import torch\n" + body)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "wrongnets", raising=False)


@pytest.mark.parametrize("body, words", [
    ("def plain():\n    return torch.nn.Linear(64, 10)\n", "no parameter name matches alpha-pattern"),
    ("class N(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
     "        self.arch_weights = torch.nn.Parameter(torch.zeros(3, 4))\n"
     "def plain():\n    return N()\n", "lack the captured alpha arrays"),
])
def test_a_model_without_the_captured_alpha_is_refused_once_before_any_capture(captured, tmp_path, monkeypatch,
                                                                              capsys, body, words):
    run_dir, _ = captured
    _factory_module(tmp_path, monkeypatch, body)
    assert adra_main([str(run_dir), "--model", "wrongnets:plain", *ATTACK, "--out", "wrong"]) == 2
    err = capsys.readouterr().err
    assert "'wrongnets:plain'" in err and words in err and err.count("error:") == 1
    assert not list(run_dir.glob("wrong*"))  # no capture was attacked, no folder made


def test_a_truncated_manifest_is_an_error_naming_it_before_any_work(captured, tmp_path, capsys):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(captured[0], copy, ignore=shutil.ignore_patterns("scored*", "leakage*"))
    manifest = copy / "captures" / "manifest.json"
    manifest.write_text(manifest.read_text()[:40])
    assert adra_main([str(copy), *DATA, *ATTACK]) == 2
    assert f"{manifest}: truncated or not JSON" in capsys.readouterr().err
    assert not list(copy.glob("leakage*"))


def test_data_that_cannot_load_leaves_the_attacks_figures_unscored_with_the_reason(captured, tmp_path, monkeypatch):
    run_dir, _ = captured
    _factory_module(tmp_path, monkeypatch, "def broken():\n    raise OSError('the images are on another disk')\n")
    assert adra_main([str(run_dir), "--data", "wrongnets:broken", "--aux", "cellsearch.data:public_images", *ATTACK,
                      "--out", "broken"]) == 0
    out = run_dir / "broken"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["attacked"] == CLIENTS * ROUNDS and summary["samples"] == 0 and summary["unscored"] > 0
    with open(out / "clients.csv", newline="") as f:
        reasons = {r["reason"] for r in csv.DictReader(f)}
    assert reasons == {"scoring could not start: OSError: the images are on another disk"}
    assert "scoring could not start" in (out / "report.md").read_text()


def test_a_data_reference_that_does_not_import_is_refused_before_any_capture(captured, capsys):
    run_dir, _ = captured
    assert adra_main([str(run_dir), "--data", "cellsearch.data:no_such", *ATTACK, "--out", "nodata"]) == 2
    assert "--data 'cellsearch.data:no_such'" in capsys.readouterr().err and not list(run_dir.glob("nodata*"))


def test_without_the_attackers_images_the_attack_runs_without_a_learned_prior(captured, capsys):
    run_dir, _ = captured
    assert adra_main([str(run_dir), "--data", "cellsearch.data:images", *ATTACK, "--limit", "1", "--out", "noaux"]) == 0
    summary = json.loads((run_dir / "noaux" / "summary.json").read_text())
    assert summary["attacked"] == 1 and summary["settings"]["adra-prior"] == "none"
    assert adra_main([str(run_dir), *ATTACK, "--set", "adra-prior=pca", "--out", "pca"]) == 2
    assert "--aux" in capsys.readouterr().err and not list(run_dir.glob("pca*"))
