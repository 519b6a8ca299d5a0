"""Attack settings of the suite's runs that check the attack's plumbing, not its quality."""

from __future__ import annotations

# ADRA's default reader at B <= 4 is the learned inverse, at full size (4,096 pairs, 60 epochs,
# 1,024 wide) minutes of CPU per round. The smoke scale's tiny one (simulations/scale-smoke.toml)
# takes the same code path (pairs, training, read-out, polish) in seconds. Tests that judge a
# reconstruction (the quickstart's identified rate, tests/attacks/test_inverse.py) keep their own.
TINY_INVERSE = {"adra-inverse-pairs": 256, "adra-inverse-epochs": 5, "adra-inverse-hidden": 128,
                "adra-inverse-polish": 2}


def as_sets(keys: dict) -> list[str]:
    """``keys`` as the launcher's ``--set`` strings (``key=value``)."""
    return [f"{k}={v}" for k, v in keys.items()]


def as_cli(keys: dict) -> list[str]:
    """``keys`` as ``--set key=value`` arguments of the attack CLIs."""
    return [a for s in as_sets(keys) for a in ("--set", s)]
