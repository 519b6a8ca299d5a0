"""The config refuses a setting the chosen paradigm's round never reads, naming why."""

import pytest

from fednas.config import PARADIGMS, ConfigError, parse_config

# (setting, the paradigms that ignore it, a fragment of the reason)
IGNORED = [
    ({"alpha-warmup-rounds": 3}, ("pdarts", "enas", "smash"), "warm-up is part of the darts round"),
    ({"bn-statistics": "client"}, ("pdarts", "enas", "smash"), "only the darts round re-estimates"),
    ({"bn-statistics-batches": 4}, ("pdarts", "enas", "smash"), "no BatchNorm recalibration pass"),
    ({"proximal-alpha": True}, ("pdarts", "enas", "smash"), "no proximal term"),
    ({"alpha-l2": 0.01}, ("enas", "smash"), "no alpha loss for the L2 penalty"),
    ({"dp-sgd": True, "dp-sgd-batchnorm": "example"}, ("enas",), "pass through no BatchNorm"),
    ({"alpha-order": "second"}, ("enas", "smash"), "has no alpha gradient"),
    ({"dp-sgd": True}, ("smash",), "no alpha step for 'dp-sgd'"),
    ({"strategy": "fedprox"}, ("pdarts", "enas", "smash"), "no proximal term"),
]
CASES = [(setting, name, why) for setting, names, why in IGNORED for name in names]


@pytest.mark.parametrize(("setting", "paradigm", "why"), CASES,
                         ids=[f"{p}-{'-'.join(map(str, s.values()))}-{next(iter(s))}" for s, p, _ in CASES])
def test_a_setting_the_paradigm_ignores_is_refused_with_the_reason(setting, paradigm, why):
    with pytest.raises(ConfigError) as err:
        parse_config({"paradigm": paradigm, **setting})
    message = str(err.value)
    key = next(k for k in setting if k != "dp-sgd") if len(setting) > 1 else next(iter(setting))
    assert f"'{key}'" in message and repr(paradigm) in message and why in message


# Paradigms that read a setting but refuse it for a reason of their own.
OTHER_REASONS = {"dp-sgd-batchnorm": ("pdarts", "smash")}


@pytest.mark.parametrize(("setting", "ignored_by"), [(s, names) for s, names, _ in IGNORED])
def test_the_same_setting_is_accepted_by_every_paradigm_that_reads_it(setting, ignored_by):
    other = {p for k in setting for p in OTHER_REASONS.get(k, ())}
    readers = [p for p in PARADIGMS if p not in ignored_by and p not in other]
    assert "darts" in readers  # every refused setting is one the darts round reads
    for name in readers:
        parse_config({"paradigm": name, **setting})


def test_the_issue_example_names_key_paradigm_and_reason():
    with pytest.raises(ConfigError, match=r"'alpha-warmup-rounds' = 3 is ignored by 'paradigm' = 'enas': .*warm-up"):
        parse_config({"paradigm": "enas", "alpha-warmup-rounds": 3})


def test_dp_sgd_batchnorm_is_only_refused_when_dp_sgd_reads_it():
    parse_config({"paradigm": "enas", "dp-sgd-batchnorm": "example"})  # DP-SGD off: the key is inert everywhere


def test_pooled_statistics_outside_dp_concern_only_the_darts_round():
    dp_theta = {"dp-update": True, "dp-update-theta": True}
    with pytest.raises(ConfigError, match="'bn-statistics' = \"pooled\" sends statistics"):
        parse_config(dp_theta)
    parse_config({"paradigm": "pdarts", **dp_theta})  # no pooling pass there: nothing leaves outside DP
