"""The registry type, and the extension points' default entries."""

import subprocess
import sys
from pathlib import Path

import pytest

from fednas.config import KEY_BY_NAME, markdown_table
from fednas.registry import REGISTRIES, Registry, UnknownNameError, resolve


def test_names_come_in_order_and_lazy_targets_are_imported_on_get():
    reg = Registry("widget")
    reg.register("b", "collections:OrderedDict", "an ordered dict", size=2)
    reg.register("a", dict)

    @reg.register("c", doc="a decorated function", size=2)
    def make():
        return 3

    assert tuple(reg) == reg.names() == ("b", "a", "c") and len(reg) == 3 and "a" in reg
    assert reg.names(size=2) == ("b", "c")
    assert reg.entry("b").lazy and not reg.entry("a").lazy
    import collections

    assert reg.get("b") is collections.OrderedDict and reg["a"] is dict and reg.get("c") is make
    assert reg.describe() == "b: an ordered dict\na\nc: a decorated function"
    with pytest.raises(ValueError, match="'b' is registered already"):
        reg.register("b", list)
    reg.register("b", list, replace=True)
    assert reg.get("b") is list
    assert reg.unregister("a").target is dict and reg.names() == ("b", "c")


def test_an_unknown_name_is_an_error_naming_the_kind_and_the_choices():
    reg = Registry("widget")
    reg.register("x", int)
    for call in (reg.get, reg.entry, reg.unregister):
        with pytest.raises(UnknownNameError, match="unknown widget 'y'; choose one of: x"):
            call("y")
    with pytest.raises(ValueError, match="'package.module:attr'"):
        resolve("no-colon-here")
    with pytest.raises(ValueError, match="non-empty string"):
        reg.register(" x", int)


def test_every_default_entry_resolves_and_the_config_offers_exactly_the_registered_names():
    for kind, reg in REGISTRIES.items():
        for name in reg:
            assert reg.get(name) is not None, (kind, name)
    for key, kind in (("space", "search space"), ("paradigm", "paradigm"), ("attack", "attack"),
                      ("strategy", "strategy"), ("dp-accountant", "accountant")):
        assert KEY_BY_NAME[key].choices is REGISTRIES[kind]
        row = next(line for line in markdown_table().splitlines() if line.startswith(f"| `{key}` |"))
        assert row.endswith("One of: " + ", ".join(f"`{n}`" for n in REGISTRIES[kind]) + ". |")


def test_adra_has_a_surface_for_every_default_paradigm():
    from attacks.adra.surfaces import SURFACES
    from fednas.registry import PARADIGMS

    assert tuple(SURFACES) == tuple(PARADIGMS)


def test_the_config_lists_the_names_without_importing_what_implements_them():
    code = ("import sys, fednas.config, fednas.registry; "
            "fednas.config.parse_config({'paradigm': 'enas', 'strategy': 'krum', 'attack': 'adra'}); "
            "print(sorted(m for m in ('torch', 'flwr', 'attacks', 'server') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout
    assert out.strip() == "[]"
