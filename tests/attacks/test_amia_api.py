"""The prediction API returns probabilities only, in the format asked, and checks queries."""

import numpy as np
import pytest
import torch
from torch import nn

from attacks.amia.api import PredictionAPI, QueryError, restrict
from attacks.amia.models import SmallCNN
from fednas.spaces import InputSpec

SPEC = InputSpec(1, 8, 10)


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = SmallCNN(SPEC)
    m.train()  # the API must switch it to eval mode itself
    return m


def test_outputs_are_the_models_softmax_and_never_its_logits(model):
    x = torch.rand(16, 1, 8, 8)
    api = PredictionAPI(model, SPEC)
    probs = api.query(x)
    with torch.no_grad():
        logits = model.eval()(x).double()
    np.testing.assert_allclose(probs, torch.softmax(logits, 1).numpy(), rtol=1e-6, atol=1e-9)
    assert probs.shape == (16, 10) and (probs >= 0).all() and np.allclose(probs.sum(1), 1.0)
    assert not np.allclose(probs, logits.numpy(), atol=1e-3)
    assert api.queries == 16


def test_the_api_object_holds_no_model_weights_or_tensors(model):
    api = PredictionAPI(model, SPEC)
    visible = {name: getattr(api, name) for name in dir(api) if not name.startswith("__")}
    for name, value in visible.items():
        assert not isinstance(value, (nn.Module, torch.Tensor, nn.Parameter)), name
    for attr in ("parameters", "state_dict", "named_parameters", "forward", "model", "logits"):
        assert not hasattr(api, attr), attr
    with pytest.raises(AttributeError):
        api.model = model  # __slots__: nothing can be hung on it either


def test_queries_do_not_train_or_change_the_model(model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    api = PredictionAPI(model, SPEC)
    api.query(torch.rand(8, 1, 8, 8))
    assert not model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_top_k_and_label_outputs_reveal_only_what_they_say(model):
    x = torch.rand(12, 1, 8, 8)
    full = PredictionAPI(model, SPEC).query(x)
    top3 = PredictionAPI(model, SPEC, output="top-k", top_k=3).query(x)
    label = PredictionAPI(model, SPEC, output="label").query(x)
    assert ((top3 > 0).sum(1) == 3).all()
    kept = top3 > 0
    np.testing.assert_allclose(top3[kept], full[kept])
    assert (np.sort(full, 1)[:, -3:].min(1) >= np.where(kept, 0, full).max(1)).all()  # the 3 largest were kept
    assert ((label == 0) | (label == 1)).all() and (label.sum(1) == 1).all()
    np.testing.assert_array_equal(label.argmax(1), full.argmax(1))


def test_restrict_by_hand():
    p = np.array([[0.1, 0.6, 0.3]])
    np.testing.assert_allclose(restrict(p, "top-k", 2), [[0.0, 0.6, 0.3]])
    np.testing.assert_allclose(restrict(p, "label"), [[0.0, 1.0, 0.0]])
    with pytest.raises(ValueError, match="unknown API output"):
        restrict(p, "logits")


@pytest.mark.parametrize("bad, words", [
    (torch.rand(4, 1, 28, 28), "(4, 1, 28, 28)"),
    (torch.rand(4, 3, 8, 8), "(N, 1, 8, 8)"),
    (torch.rand(8, 8), "(8, 8)"),
    (torch.zeros(4, 1, 8, 8, dtype=torch.long), "float"),
])
def test_a_query_set_with_the_wrong_shape_is_refused_by_name(model, bad, words):
    api = PredictionAPI(model, SPEC)
    with pytest.raises(QueryError) as info:
        api.query(bad)
    assert words in str(info.value)
    assert api.queries == 0
