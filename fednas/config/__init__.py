"""Run configuration: one schema of flat hyphenated keys, parsed once into frozen dataclasses.

Every knob of a run is a key in ``[tool.flwr.app.config]`` of ``pyproject.toml``. This
package holds the schema (key, type, default, allowed values, meaning), one module per
group of keys (``run``, ``space``, ``data``, ``search``, ``fed``, ``fault``, ``dp``,
``defense``, ``amia``, ``derive``, ``attack``, ``paradigm``): the only place a default
lives in Python. :func:`parse_config` (:mod:`fednas.config.parser`) turns a flat mapping
(Flower's ``context.run_config``, an experiment TOML, ``--set`` overrides) into a
:class:`Config` and rejects unknown keys, wrong types, out-of-range values and settings
the run would ignore, with messages that name the key and what is allowed.
``python -m fednas.config`` prints the reference table.
"""

from fednas.config.amia import AMIA_ATTACKS, AMIA_SHADOW_KINDS
from fednas.config.data import DATASETS, PARTITIONERS
from fednas.config.defense import MD_KEYS
from fednas.config.fault import FAULT_MODES, fault_partitions, fault_plan, parse_fault_partitions
from fednas.config.fed import ROBUST_STRATEGIES
from fednas.config.paradigm import PARADIGM_IGNORES, PARADIGMS, paradigm_spaces
from fednas.config.parser import (
    GROUP_KEYS,
    GROUPS,
    KEY_BY_NAME,
    KEYS,
    RENAMED_KEYS,
    SECTION_CLASSES,
    Config,
    SearchConfig,
    SpaceConfig,
    canonical_keys,
    check_against_federation,
    markdown_table,
    parse_config,
    sampled_per_round,
    search_from_record,
    search_to_record,
    toml_value,
)
from fednas.config.schema import ConfigError, Key, number_list, split_names
from fednas.config.space import ACTIVATIONS, HEADS
from fednas.registry import SPACES

__all__ = [
    "ACTIVATIONS", "AMIA_ATTACKS", "AMIA_SHADOW_KINDS", "DATASETS", "FAULT_MODES", "GROUPS", "GROUP_KEYS",
    "HEADS", "KEYS", "KEY_BY_NAME", "MD_KEYS", "PARADIGMS", "PARADIGM_IGNORES",
    "PARTITIONERS", "RENAMED_KEYS", "ROBUST_STRATEGIES", "SECTION_CLASSES", "SPACES", "Config", "ConfigError",
    "Key", "SearchConfig", "SpaceConfig", "canonical_keys", "check_against_federation", "fault_partitions",
    "fault_plan", "markdown_table", "number_list", "paradigm_spaces", "parse_config", "parse_fault_partitions",
    "sampled_per_round", "search_from_record", "search_to_record", "split_names", "toml_value",
]
