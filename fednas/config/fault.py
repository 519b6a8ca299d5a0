"""Fault injection, a testing knob: clients that misbehave on purpose (``cfg.fault``; clients/faults.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fednas.config.schema import ConfigError, Key, keys_of, split_names

# Names of the fault-injection modes (clients.faults.FAULTS holds them; it checks it agrees).
FAULT_MODES = ("raise", "exit", "nan", "shape", "broadcast", "dtype", "extra-array", "missing-alpha", "huge",
               "bad-weight")

_k = keys_of("fault")

# fmt: off
KEYS: tuple[Key, ...] = (
    _k("fault-partitions", "",
       "Fault injection, a testing knob: comma-separated partition ids that misbehave in every train call, each "
       "as fault-mode or as its own 'id:mode' (e.g. '1,2:nan,3:exit'). Ids must exist in the federation."),
    _k("fault-mode", "raise",
       "What a fault-partitions client does: raise (an exception), exit (its process dies), nan (alpha all NaN), "
       "shape (alpha flattened), broadcast (alpha of one row), dtype (alpha as float64), extra-array, "
       "missing-alpha, huge (alpha = 1e30), bad-weight (num-examples = -1).",
       choices=FAULT_MODES),
)
# fmt: on


def parse_fault_partitions(text: str, default_mode: str = "raise") -> dict[int, str]:
    """``'1,2:nan'`` as ``{1: default_mode, 2: 'nan'}``; a ConfigError names what is wrong."""
    plan: dict[int, str] = {}
    for part in split_names(text):
        pid, _, mode = part.partition(":")
        mode = mode.strip() or default_mode
        if not pid.strip().isdigit():
            raise ConfigError(f"'fault-partitions' = {text!r}: expected comma-separated partition ids, each "
                              f"optionally with a mode, such as '0,2' or '1:nan,3:exit' (bad entry {part!r})")
        if mode not in FAULT_MODES:
            raise ConfigError(f"'fault-partitions' = {text!r}: unknown fault mode {mode!r}; choose one of: "
                              + ", ".join(FAULT_MODES))
        plan[int(pid)] = mode
    return plan


def fault_checks(flat: Mapping[str, Any]) -> list[str]:
    try:
        parse_fault_partitions(flat["fault-partitions"], flat["fault-mode"])
    except ConfigError as err:
        return [str(err)]
    return []


def fault_plan(cfg: Any) -> dict[int, str]:
    """Partition id -> fault mode, from ``fault-partitions`` and ``fault-mode``."""
    return parse_fault_partitions(cfg.fault.fault_partitions, cfg.fault.fault_mode)


def fault_partitions(cfg: Any) -> frozenset[int]:
    """Partition ids that the fault-injection knob makes misbehave."""
    return frozenset(fault_plan(cfg))
