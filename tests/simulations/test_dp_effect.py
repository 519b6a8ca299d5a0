"""The effect table reads the leakage contract of the eavesdropper's runs, or says why not."""

import json
import math

import pytest

from fednas.config import ConfigError
from fednas.rundir import atomic_write_csv
from simulations.dp_effect import DEFAULT_SWEEP, NOT_MEASURED, attack_keys, load_sweep, markdown, row_for

COLUMNS = ["round", "partition-id", "sample", "status", "success", "identified", "psnr", "ssim", "mse",
           "label-correct", "attack-seconds", "identifiability", "dp-epsilon"]


def test_the_shipped_sweep_is_valid():
    sweep = load_sweep(DEFAULT_SWEEP)
    names = [v["name"] for v in sweep["variants"]]
    assert names[0] == "none" and len(names) >= 5
    assert any("dp-sgd" in v for v in sweep["variants"]) and any("dp-update" in v for v in sweep["variants"])


def test_bad_sweeps_are_refused(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[[variant]]\nname = "a"\n[[variant]]\nname = "a"\n')
    with pytest.raises(ConfigError, match="unique"):
        load_sweep(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_sweep(tmp_path / "missing.toml")


def test_unknown_attack_keys_are_left_out_with_a_reason():
    keys, note = attack_keys({"eavesdrop-nonexistent-key": True})
    assert keys == {} and "not measured" in note and "eavesdrop-nonexistent-key" in note


def test_rows_read_leakage_from_clients_csv_and_epsilon_from_summary(tmp_path):
    run = tmp_path / "run"
    (run / "leakage").mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"final-central-acc": 0.5, "status": "completed",
                                                  "dp": {"epsilon": 3.0, "delta": 1e-5, "mechanisms": {"dp-sgd": {}}}}))
    rows = [dict.fromkeys(COLUMNS, 0) | {"success": s, "identified": 0, "psnr": p, "label-correct": 1}
            for s, p in ((1, 10.0), (0, 14.0))]
    atomic_write_csv(run / "leakage" / "clients.csv", rows, COLUMNS)
    row = row_for("dp-sgd z=1", {"dp-sgd-noise-multiplier": 1.0}, run, "completed")
    assert row["success-rate"] == 0.5 and row["mean-psnr"] == 12.0 and row["label-accuracy"] == 1.0
    assert row["epsilon"] == 3.0 and row["mechanism"] == "dp-sgd" and row["noise"] == 1.0
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "summary.json").write_text(json.dumps({"final-central-acc": 0.6}))
    none_row = row_for("none", {}, bare, "completed")
    assert none_row["success-rate"] == NOT_MEASURED and none_row["epsilon"] == math.inf
    text = markdown([none_row, row], "attack columns not measured: why", "python -m simulations.dp_effect")
    assert "not measured: why" in text and "-0.100" in text
