"""attacks.report's pairing of reconstructions with true samples, against a brute-force reference."""

import itertools

import numpy as np

from attacks.report import pairs_by_step


def _brute(images: np.ndarray, truth: np.ndarray) -> dict[int, int]:
    """The least-total-MSE one-to-one pairing, by trying every permutation."""
    best, best_cost = {}, np.inf
    for perm in itertools.permutations(range(len(images))):
        cost = sum(((images[r] - truth[t]) ** 2).mean() for t, r in enumerate(perm))
        if cost < best_cost:
            best, best_cost = dict(enumerate(perm)), cost
    return best


def test_pairs_stay_within_their_step_and_are_optimal_there():
    rng = np.random.default_rng(0)
    truth = rng.random((4, 1, 3, 3))  # two steps of B = 2
    images = truth[[1, 0, 3, 2]] + 0.01 * rng.standard_normal((4, 1, 3, 3))
    pairs = pairs_by_step(images, np.array([0, 0, 1, 1]), [0, 0, 1, 1], truth)
    assert pairs == {0: 1, 1: 0, 2: 3, 3: 2}
    # an image of step 1 that looks like a step-0 sample is still paired within step 1
    images[2] = truth[0]
    assert all(pairs_by_step(images, np.array([0, 0, 1, 1]), [0, 0, 1, 1], truth)[t] in (2, 3) for t in (2, 3))


def test_unknown_steps_pair_everything_together_like_the_brute_force_reference():
    rng = np.random.default_rng(1)
    truth, images = rng.random((4, 1, 2, 2)), rng.random((4, 1, 2, 2))
    assert pairs_by_step(images, np.full(4, -1), [0, 0, 1, 1], truth) == _brute(images, truth)
