import tomllib
from pathlib import Path

import pytest

from fednas.config import KEY_BY_NAME, KEYS, ConfigError, parse_config, search_from_record, search_to_record

ROOT = Path(__file__).resolve().parents[2]


def test_pyproject_lists_every_key_with_the_schema_default():
    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    assert set(table) == {k.name for k in KEYS}
    for key in KEYS:
        assert table[key.name] == key.default, key.name
        assert type(table[key.name]) is type(key.default), key.name


def test_defaults_parse_and_round_trip():
    cfg = parse_config()
    assert parse_config(cfg.flat()) == cfg
    assert cfg.replace(dag_nodes=5).space.dag_nodes == 5


@pytest.mark.parametrize("raw, words", [
    ({"nodez": 3}, ["unknown config key 'nodez'", "'dag-nodes'"]),
    ({"dag-nodes": 1}, ["'dag-nodes'", ">= 2"]),
    ({"dag-nodes": "8"}, ["'dag-nodes'", "integer"]),
    ({"fraction-train": 0.0}, ["'fraction-train'", "(0, 1]"]),
    ({"fraction-train": 1.5}, ["'fraction-train'", "(0, 1]"]),
    ({"dataset": "imagenet"}, ["'dataset'", "digits", "mnist", "cifar10"]),
    ({"activation": "gelu"}, ["'activation'", "elu, tanh, sigmoid, relu"]),
    ({"share-weights": "yes"}, ["'share-weights'", "true or false"]),
    ({"clients-fraction": 0.9, "holdout-fraction": 0.2}, ["must be <= 1"]),
    ({"fault-partitions": "a,b"}, ["'fault-partitions'"]),
])
def test_bad_values_name_the_key_and_what_is_allowed(raw, words):
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    for w in words:
        assert w in str(info.value)


def test_every_error_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        parse_config({"dag-nodes": 0, "activation": "x", "bogus": 1})
    msg = str(info.value)
    assert "'dag-nodes'" in msg and "'activation'" in msg and "'bogus'" in msg


def test_ints_are_accepted_for_floats_and_unknown_keys_can_be_allowed():
    assert parse_config({"theta-lr": 1}).search.theta_lr == 1.0
    assert parse_config({"other-app-key": 1}, allow_unknown=True) == parse_config()


def test_search_settings_survive_the_train_config_record():
    cfg = parse_config({"alpha-lr": 0.01, "alpha-order": "second"})
    record = {**search_to_record(cfg.search), "server-round": 3}
    assert search_from_record(record) == cfg.search


def test_pooled_batchnorm_statistics_are_refused_beside_dp_that_covers_theta():
    for keys in ({"dp-update": True, "dp-update-theta": True}, {"dp-update": True, "dp-server": True}):
        with pytest.raises(ConfigError, match="'bn-statistics'"):
            parse_config(keys)
        parse_config({**keys, "bn-statistics": "client"})
        parse_config({**keys, "share-weights": False})  # no global θ: nothing is pooled


def test_every_line_of_the_schema_is_readable():
    long = [f"{p.name}:{i}" for p in sorted((ROOT / "fednas" / "config").glob("*.py"))
            for i, line in enumerate(p.read_text().splitlines(), 1) if len(line) > 120]
    assert long == []


@pytest.mark.parametrize(("name", "group"), [
    ("genotype-k", "space"), ("fault-partitions", "fault"), ("fault-mode", "fault"), ("md", "defense"),
    ("md-student", "defense"), ("md-epochs", "defense"), ("dag-nodes", "space"), ("proximal-mu", "fed"),
])
def test_keys_sit_in_the_group_they_configure(name, group):
    assert KEY_BY_NAME[name].group == group
    assert hasattr(getattr(parse_config(), group), KEY_BY_NAME[name].field)
