"""The null reconstructions: from the attacker's aux pool and the sample's class only."""

import inspect

import numpy as np
import pytest

from attacks.nulls import NULL_KINDS, null_reconstruction


def test_the_nulls_are_built_from_the_aux_pool_and_the_class_only():
    rng = np.random.default_rng(7)
    aux_x = rng.random((30, 1, 4, 4)).astype(np.float32)
    aux_y = np.repeat(np.arange(3), 10)
    samples, labels = [(0, 0, 101), (0, 1, 57), (1, 0, 3)], [2, 0, 2]
    rec = null_reconstruction("aux-random", "c", samples, labels, aux_x, aux_y, np.random.default_rng(0))
    assert rec.status == "ok" and list(rec.labels) == labels and list(rec.steps) == [0, 0, 1]
    for img, label in zip(rec.images, labels):  # each an aux image of the sample's own class
        assert any(np.array_equal(img, a) for a in aux_x[aux_y == label])
    rec = null_reconstruction("aux-mean", "c", samples, labels, aux_x, aux_y, np.random.default_rng(0))
    assert np.allclose(rec.images[0], aux_x[20:].mean(axis=0)) and np.allclose(rec.images[1], aux_x[:10].mean(axis=0))
    missing = null_reconstruction("aux-mean", "c", [(0, 0, 1)], [7], aux_x, aux_y, np.random.default_rng(0))
    assert missing.status == "failed" and "class 7" in missing.reason


def test_the_nulls_take_no_client_data_and_no_update():
    # what a null may read: the capture's id, which samples (for their positions), their
    # classes, the attacker's aux pool and a seed; no dataset, no capture, no Δα
    assert list(inspect.signature(null_reconstruction).parameters) == [
        "kind", "capture_id", "samples", "labels", "aux_x", "aux_y", "rng"]
    aux_x = np.zeros((4, 1, 2, 2), np.float32)
    aux_x[2:] = 1.0
    aux_y = np.array([0, 0, 1, 1])
    # the sample's own image (index 0 of some dataset) is never looked at: only its class is
    rec = null_reconstruction("aux-mean", "c", [(0, 0, 0)], [1], aux_x, aux_y, np.random.default_rng(0))
    assert np.array_equal(rec.images[0], np.ones((1, 2, 2), np.float32))
    assert set(NULL_KINDS) == {"aux-random", "aux-mean"}
    with pytest.raises(ValueError, match="unknown null"):
        null_reconstruction("truth", "c", [], [], aux_x, aux_y, np.random.default_rng(0))
