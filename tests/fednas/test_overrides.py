import pytest

from fednas.config import ConfigError, parse_config
from fednas.overrides import parse_override, parse_overrides, parse_value


def test_set_values_are_read_as_toml():
    assert parse_value("3") == 3 and parse_value("0.5") == 0.5 and parse_value("true") is True
    assert parse_value("elu") == "elu" and parse_value('"x y"') == "x y"


def test_a_string_key_keeps_its_text_and_the_result_parses():
    # fault-partitions is a string key: "1" must stay "1", where TOML would read the integer 1
    assert parse_override("fault-partitions=1") == ("fault-partitions", "1")
    assert parse_override('activation="tanh"') == ("activation", "tanh")
    sets = parse_overrides(["dag-nodes=4", "alpha-lr=0.01", "share-weights=false", "fault-partitions=0,2"])
    assert sets == {"dag-nodes": 4, "alpha-lr": 0.01, "share-weights": False, "fault-partitions": "0,2"}
    assert parse_config(sets).fault.fault_partitions == "0,2"


@pytest.mark.parametrize("item", ["nodes", "=3", ""])
def test_an_item_without_key_and_value_is_refused(item):
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_override(item)
