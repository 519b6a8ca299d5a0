import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fednas.config import ConfigError, parse_config
from fednas.data import dataset_from_config, make_pools
from simulations.__main__ import main
from simulations.launcher import PROJECT_ROOT, launch, load_experiment, prepare
from tests import reference


@pytest.mark.parametrize("sets, words", [
    (["nodez=4"], ["nodez", "nodes"]),
    (["nodes=1"], ["'nodes'", ">= 2"]),
    (["dataset=imagenet"], ["'dataset'", "mnist"]),
    (["fraction-train=0"], ["'fraction-train'"]),
])
def test_bad_config_fails_before_anything_starts(sets, words):
    with pytest.raises(ConfigError) as info:
        prepare(PROJECT_ROOT, None, sets, {"clients": 3})
    for w in words:
        assert w in str(info.value)


def test_more_clients_than_samples_is_refused(capsys):
    assert main(["run", "--clients", "40", "--set", "max-samples=50"]) == 2
    assert "too many clients" in capsys.readouterr().err


def test_experiment_files_are_checked(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("nodes = 4\n[federation]\nclientz = 3\n")
    with pytest.raises(ConfigError, match="clientz"):
        load_experiment(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_experiment(tmp_path / "missing.toml")
    good = tmp_path / "good.toml"
    good.write_text("nodes = 4\n[federation]\nclients = 2\n")
    overrides, federation = prepare(PROJECT_ROOT, good, ["channels=4"], {})
    assert overrides == {"nodes": 4, "channels": 4} and federation.clients == 2


@pytest.mark.slow
def test_end_to_end_run_through_flwr_writes_every_file(tmp_path):
    # client 2 raises in every train call: the run must go on with the others and count it
    result = launch(None, ["num-server-rounds=2", "nodes=3", "channels=4", "local-steps=2", "max-samples=400",
                           f"output-dir={tmp_path}", "run-name=e2e", "fault-partitions=2",
                           "derive=true", "derive-rounds=1", "derive-random=1"], clients=3)
    assert result.returncode == 0, result.status
    run = result.run_dir
    assert run.is_absolute() and run.parent == tmp_path
    for name in ("config.json", "rounds.csv", "genotype.json", "summary.json", "model.npz"):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["nodes"] == 3 and config["federation"]["nodes"] == 3
    rounds = pd.read_csv(run / "rounds.csv")
    assert list(rounds["round"]) == [1, 2]
    assert (rounds["sampled"] == 3).all() and (rounds["replied"] == 2).all() and (rounds["failed"] == 1).all()
    assert rounds["central-acc"].between(0, 1).all() and rounds["genotype"].str.startswith("node 1 <-").all()
    genotype = json.loads((run / "genotype.json").read_text())
    assert genotype["final"]["space"] == "dag" and len(genotype["rounds"]) == 2
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["rounds-completed"] == 2 and summary["failures"] == 2
    assert summary["derive"]["status"] == "completed" and (run / "derived" / "metrics.json").is_file()
    assert {"alpha-entropy", "alpha-step", "param-free-share", "genotype-changes"} <= set(rounds.columns)
    with np.load(run / "model.npz") as model:
        assert model["alpha"].shape == (3, 8)
        final = dict(model)
    # the last round's central accuracy is the saved model's on the server's test pool, counted here
    cfg = parse_config(config["config"])
    pools = make_pools(len(dataset_from_config(cfg.data, cfg.run.seed)), cfg.data, cfg.run.seed)
    assert rounds["central-acc"].iloc[-1] == pytest.approx(reference.accuracy(cfg, final, pools.test), abs=1e-12)
    assert not list(run.glob(".*.tmp"))  # atomic writes leave no temporaries


@pytest.mark.slow
def test_a_failed_run_gives_a_non_zero_exit_status(capsys):
    # the ServerApp cannot create its run directory: the run fails inside Flower
    code = main(["run", "--clients", "2", "--set", "run-dir=/proc/fednas-cannot-write-here",
                 "--set", "max-samples=200", "--set", "num-server-rounds=1"])
    assert code == 1
    captured = capsys.readouterr()
    assert "did not complete" in captured.err and "failed" in captured.err
    assert captured.out.strip().splitlines()[-1] == "/proc/fednas-cannot-write-here"
