"""Renamed keys: the new names work, the old ones still do with a warning naming the new one."""

import argparse
import json

import pytest

from fednas.config import RENAMED_KEYS, ConfigError, canonical_keys, parse_config
from fednas.overrides import dag_nodes_option, parse_overrides
from fednas.rundir import federation_size
from fednas.runlog import read_run_config


def test_the_new_names_set_the_new_fields():
    cfg = parse_config({"dag-nodes": 5, "cell-nodes": 3})
    assert (cfg.space.dag_nodes, cfg.space.cell_nodes) == (5, 3)
    assert "nodes" not in cfg.flat() and "steps" not in cfg.flat()


@pytest.mark.parametrize(("old", "new", "field"), [("nodes", "dag-nodes", "dag_nodes"), ("steps", "cell-nodes", "cell_nodes")])
def test_an_old_name_warns_naming_the_new_one_and_sets_the_same_field(old, new, field, caplog):
    with pytest.warns(DeprecationWarning, match=f"'{old}' is deprecated.*use '{new}'"):
        cfg = parse_config({old: 6})
    assert getattr(cfg.space, field) == 6 and cfg == parse_config({new: 6})
    assert f"use '{new}'" in caplog.text  # also in the log, where a run's output shows it


@pytest.mark.parametrize(("old", "new"), sorted(RENAMED_KEYS.items()))
def test_both_names_at_once_are_an_error_naming_both(old, new):
    with pytest.raises(ConfigError, match=f"'{old}' and '{new}'"):
        parse_config({old: 4, new: 4})


def test_old_names_are_read_from_every_source():
    with pytest.warns(DeprecationWarning):
        assert parse_overrides(["nodes=4"]) == {"dag-nodes": 4}  # --set
    with pytest.warns(DeprecationWarning):
        assert parse_config().replace(nodes=7).space.dag_nodes == 7  # replace() by field name
    with pytest.warns(DeprecationWarning, match=r"in exp\.toml"):
        assert canonical_keys({"steps": 2, "seed": 1}, "exp.toml") == {"cell-nodes": 2, "seed": 1}


def test_another_apps_own_nodes_key_is_left_alone():
    # allow_unknown: keys beside ours belong to the other app, so its "nodes" is not our P
    assert parse_config({"nodes": 99}, allow_unknown=True).space.dag_nodes == parse_config().space.dag_nodes


def test_a_run_directory_written_before_the_rename_still_reads(tmp_path):
    old = {"config": {"nodes": 5, "steps": 2, "seed": 3}, "federation": {"nodes": 4}}
    (tmp_path / "config.json").write_text(json.dumps(old))
    with pytest.warns(DeprecationWarning):
        cfg, clients = read_run_config(tmp_path / "config.json", None, frozenset(), ValueError)
    assert (cfg.space.dag_nodes, cfg.space.cell_nodes, cfg.run.seed, clients) == (5, 2, 3, 4)
    assert federation_size({"federation": {"supernodes": 6}}) == 6
    assert federation_size({"federation": {}}) is None and federation_size({}) is None


def test_the_dag_nodes_option_keeps_nodes_as_a_deprecated_alias():
    parser = argparse.ArgumentParser()
    dag_nodes_option(parser, type=int, default=8)
    assert parser.parse_args([]).dag_nodes == 8
    assert parser.parse_args(["--dag-nodes", "3"]).dag_nodes == 3
    with pytest.warns(DeprecationWarning, match="--nodes is deprecated: use --dag-nodes"):
        assert parser.parse_args(["--nodes", "5"]).dag_nodes == 5
