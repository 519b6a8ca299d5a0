import numpy as np
import pytest

from fednas.updates import apply_update, update_of


def test_an_update_and_its_application_are_inverse_up_to_rounding():
    rng = np.random.default_rng(0)
    received = {"alpha": rng.standard_normal((3, 8)).astype(np.float32), "w": rng.standard_normal(5).astype(np.float32)}
    sent = {k: v + 1e-3 * rng.standard_normal(v.shape).astype(np.float32) for k, v in received.items()}
    delta = update_of(sent, received)
    assert all(d.dtype == np.float32 for d in delta.values())
    back = apply_update(received, delta)
    for k in sent:
        np.testing.assert_allclose(back[k], sent[k], rtol=0, atol=1e-6)
        np.testing.assert_array_equal(delta[k], sent[k] - received[k])


def test_an_array_that_was_not_sent_has_no_update():
    with pytest.raises(KeyError, match="new"):
        update_of({"new": np.zeros(2)}, {"alpha": np.zeros(2)})
    with pytest.raises(ValueError, match="shapes"):
        apply_update({"alpha": np.zeros(2)}, {"alpha": np.zeros(3)})
