import math

import numpy as np
import pytest

from fednas.stats import t_interval, wilson_interval


def test_wilson_matches_the_textbook_example_and_stays_in_the_unit_interval():
    # Wilson (1927) / Newcombe (1998) example: 81 of 263 -> (0.2553, 0.3662)
    low, high = wilson_interval(81, 263)
    assert low == pytest.approx(0.2553, abs=1e-4) and high == pytest.approx(0.3662, abs=1e-4)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0) and wilson_interval(0, 10)[0] == pytest.approx(0.0)
    assert 0.0 <= wilson_interval(0, 10)[0] and wilson_interval(10, 10)[1] <= 1.0
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_t_interval_covers_the_mean_as_often_as_it_says():
    rng = np.random.default_rng(0)
    hits = sum(lo <= 1.0 <= hi for lo, hi in (t_interval(rng.normal(1.0, 2.0, 5)) for _ in range(4000)))
    assert hits / 4000 == pytest.approx(0.95, abs=0.015)
    assert all(math.isnan(v) for v in t_interval([1.0]))
