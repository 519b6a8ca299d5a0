import csv
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from attacks.amia.__main__ import main as amia_main
from fednas.captures import CaptureStore
from fednas.config import ConfigError, parse_config
from fednas.data import dataset_from_config, make_pools
from simulations.__main__ import main
from simulations.launcher import PROJECT_ROOT, Federation, clients_at_once, launch, load_experiment, prepare
from tests import reference
from tests.scales import TINY_INVERSE, as_sets


@pytest.mark.parametrize("sets, words", [
    (["nodez=4"], ["nodez", "dag-nodes"]),
    (["dag-nodes=1"], ["'dag-nodes'", ">= 2"]),
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
    good.write_text("dag-nodes = 4\n[federation]\nclients = 2\n")
    overrides, federation = prepare(PROJECT_ROOT, good, ["channels=4"], {})
    assert overrides == {"dag-nodes": 4, "channels": 4} and federation.clients == 2


def test_an_experiment_file_with_an_old_key_name_still_runs_and_set_overrides_it(tmp_path):
    old = tmp_path / "old.toml"
    old.write_text("nodes = 4\n")
    with pytest.warns(DeprecationWarning, match="use 'dag-nodes'"):
        overrides, _ = prepare(PROJECT_ROOT, old, ["channels=4"], {"clients": 2})
    assert overrides == {"dag-nodes": 4, "channels": 4}  # what flwr gets: names its pyproject table has
    with pytest.warns(DeprecationWarning):
        overrides, _ = prepare(PROJECT_ROOT, old, ["dag-nodes=5"], {"clients": 2})
    assert overrides == {"dag-nodes": 5}  # one source's old name, another's new one: the later wins


def test_a_search_that_cannot_fit_in_memory_is_warned_of_before_anything_starts(caplog):
    caplog.set_level(logging.WARNING, logger="simulations.launcher")
    prepare(PROJECT_ROOT, None, ["dag-nodes=8"], {"clients": 2})
    assert "needs about" not in caplog.text
    # P = 256 with batches of 4096 8x8 images: terabytes, more than any machine has
    prepare(PROJECT_ROOT, None, ["dag-nodes=256", "batch-size=4096"], {"clients": 2, "ray_cpus": 2})
    assert "needs about" in caplog.text and "'batch-size' 4096" in caplog.text and "2 client(s) at once" in caplog.text


def test_clients_at_once_are_those_sampled_that_ray_cpus_hold_in_this_machines_memory():
    cfg = parse_config({"fraction-train": 1.0})
    assert clients_at_once(cfg, Federation(clients=8, ray_cpus=4, cpus_per_client=2)) == 2
    assert clients_at_once(cfg, Federation(clients=1, ray_cpus=4)) == 1
    assert clients_at_once(parse_config({"fraction-train": 0.5, "min-train-clients": 1}),
                           Federation(clients=4, ray_cpus=16)) == 2
    assert clients_at_once(cfg, Federation(clients=4, gpus_per_client=0.5)) == 0  # their memory is the GPU's
    assert clients_at_once(cfg, Federation(clients=4, ray_address="10.0.0.1:6379")) == 0  # another machine's


@pytest.mark.slow
def test_one_eavesdropped_run_through_flwr_writes_every_file_and_both_attacks(tmp_path):
    """One real ``flwr run`` checks the run's files, a failing client, derive, the eavesdropper with
    the online ADRA, and ``amia = true`` (each a Flower run of its own before: about 1 min each)."""
    # client 2 raises in every train call: the run must go on with the others and count it
    result = launch(None, ["num-server-rounds=2", "dag-nodes=3", "channels=4", "local-steps=2", "max-samples=400",
                           "batch-size=16", "alpha-batch-size=1", f"output-dir={tmp_path}", "run-name=e2e",
                           "fault-partitions=2", "derive=true", "derive-rounds=1", "derive-random=1",
                           "eavesdrop=true", "attack-online=true", "attack-workers=1", "adra-iterations=3",
                           "adra-restarts=1", "amia=true", "amia-shadows=cnn,searched", "amia-num-shadows=2",
                           "amia-shadow-steps=3", "amia-mlp-epochs=5", "amia-members=40",
                           *as_sets(TINY_INVERSE)], clients=3)
    assert result.returncode == 0, result.status
    run = result.run_dir
    assert run.is_absolute() and run.parent == tmp_path
    for name in ("config.json", "rounds.csv", "genotype.json", "summary.json", "model.npz"):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["dag-nodes"] == 3 and config["federation"]["supernodes"] == 3
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
    _check_the_leakage_report(run, summary)
    _check_amia_and_its_cli(run, summary)


def _check_the_leakage_report(run: Path, summary: dict) -> None:
    """The eavesdropper captured clients 0 and 1 in both rounds (client 2's error replies are
    skipped) and the online ADRA scored each capture: 2 local steps of 1 sample each."""
    ids = CaptureStore(run).ids()
    assert len(ids) == 4
    with open(run / "leakage" / "clients.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and {r["capture"] for r in rows} == set(ids)  # a row per rebuilt sample
    assert all(r["status"] == "ok" for r in rows)
    assert {r["partition-id"] for r in rows} == {"0", "1"} and all(float(r["psnr"]) > 0 for r in rows)
    for name in ("report.md", "summary.json", "client-0.png", "client-1.png"):
        assert (run / "leakage" / name).is_file(), name
    assert summary["leakage"]["samples"] == 8 and 0.0 <= summary["leakage"]["success-rate"] <= 1.0


def _check_amia_and_its_cli(run: Path, summary: dict) -> None:
    """``amia = true`` attacked the saved model; the offline CLI adds another attack beside it."""
    assert summary["amia"] == {"status": "completed", "dir": str(run / "amia")}
    metrics = json.loads((run / "amia" / "metrics.json").read_text())
    assert {r["shadow"] for r in metrics["results"]} == {"cnn", "searched"}
    assert amia_main([str(run), "--set", "amia-shadows=cnn", "--set", "amia-num-shadows=2",
                      "--set", "amia-shadow-steps=2", "--set", "amia-mlp-epochs=2", "--set", "amia-attacks=loss"]) == 0
    again = json.loads((run / "amia-1" / "metrics.json").read_text())
    assert again["target"]["test-acc"] == metrics["target"]["test-acc"]  # the same saved model


@pytest.mark.slow
def test_a_failed_run_gives_a_non_zero_exit_status(capsys):
    # the ServerApp cannot create its run directory: the run fails inside Flower
    code = main(["run", "--clients", "2", "--set", "run-dir=/proc/fednas-cannot-write-here",
                 "--set", "max-samples=200", "--set", "num-server-rounds=1"])
    assert code == 1
    captured = capsys.readouterr()
    assert "did not complete" in captured.err and "failed" in captured.err
    assert captured.out.strip().splitlines()[-1] == "/proc/fednas-cannot-write-here"
