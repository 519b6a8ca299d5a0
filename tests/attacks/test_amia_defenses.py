"""Each AMIA defense changes what it should: LR shrinks α, MD serves a different student;
and a shadow applies a defense exactly when the attacker knows it."""

import numpy as np
import pytest
import torch

from attacks.amia.data import AttackerData
from attacks.amia.defenses import Distillation, distill, entropy, low_entropy_indices
from attacks.amia.models import SmallCNN
from attacks.amia.shadows import Mimicry, train_shadows
from attacks.amia.target import make_student
from attacks.amia.training import Recipe, predict_proba, train_classifier
from fednas.config import parse_config
from fednas.data import client_data, load_dataset
from fednas.federated import model_for
from fednas.search import local_search


def _alpha_norm(model):
    return float(torch.sqrt(sum((a.detach() ** 2).sum() for a in model.arch_parameters())))


def test_lr_shrinks_alpha_in_the_local_search():
    cfg = parse_config({"dag-nodes": 3, "channels": 4, "local-steps": 15, "batch-size": 8, "alpha-batch-size": 8,
                        "alpha-init-scale": 0.5, "alpha-lr": 0.01, "max-samples": 300})
    dataset, split = client_data(cfg.data, 0, 0, 2)
    norms = {}
    for lam in (0.0, 1.0):
        model = model_for(cfg, dataset.spec, "cpu")
        start = _alpha_norm(model)
        local_search(model, dataset, split, cfg.replace(alpha_l2=lam).search, [0, 1, 0])
        norms[lam] = _alpha_norm(model)
    assert norms[1.0] < start and norms[1.0] < norms[0.0] - 0.01


def test_low_entropy_selection_by_hand():
    probs = np.array([[0.5, 0.5], [0.99, 0.01], [0.8, 0.2], [1.0, 0.0]])
    assert entropy(probs)[3] == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_array_equal(low_entropy_indices(probs, 0.5), [1, 3])
    np.testing.assert_array_equal(low_entropy_indices(probs, 0.01), [3])  # at least one
    with pytest.raises(ValueError, match="md-keep"):
        Distillation(keep=0.0)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_md_serves_a_student_trained_on_the_teachers_soft_labels_only(digits):
    x, y = digits.x, digits.y
    torch.manual_seed(0)
    teacher = SmallCNN(digits.spec)
    train_classifier(teacher, x[:200], y[:200], Recipe(150, 32, 0.05), 0)
    teacher_state = {k: v.clone() for k, v in teacher.state_dict().items()}
    reference = x[300:500]
    student, info = distill(teacher, lambda: SmallCNN(digits.spec), reference, Distillation(0.5, 1.0, 100),
                            Recipe(1, 32, 0.05), seed=1)
    assert student is not teacher and info["kept"] == 100 and info["reference"] == 200
    assert info["entropy-kept"] < info["entropy-all"]
    for k, v in teacher.state_dict().items():  # the teacher is left as it was
        assert torch.equal(v, teacher_state[k])
    t_probs, s_probs = predict_proba(teacher, x[600:800]), predict_proba(student, x[600:800])
    assert np.abs(t_probs - s_probs).max() > 0.05  # a different model...
    assert (t_probs.argmax(1) == s_probs.argmax(1)).mean() > 0.6  # ...that learned the teacher's labels


def test_md_student_of_a_supernet_keeps_its_frozen_alpha_and_fresh_weights(tiny_cfg):
    dataset, _ = client_data(tiny_cfg.data, 0, 0, 2)
    teacher = model_for(tiny_cfg, dataset.spec, "cpu")
    with torch.no_grad():
        teacher.alpha.normal_()
    student = make_student(tiny_cfg, teacher, dataset.spec, seed=9)
    torch.testing.assert_close(student.alpha, teacher.alpha)
    assert not student.alpha.requires_grad
    assert any(not torch.equal(a, b) for a, b in zip(student.weight_parameters(), teacher.weight_parameters()))
    cnn = make_student(tiny_cfg.replace(md_student="cnn"), teacher, dataset.spec, seed=9)
    assert isinstance(cnn, SmallCNN)


def test_searched_shadows_apply_lr_only_when_the_attacker_knows_it():
    cfg = parse_config({"dag-nodes": 3, "channels": 4, "batch-size": 8, "alpha-batch-size": 8, "alpha-init-scale": 0.5,
                        "alpha-lr": 0.01, "alpha-l2": 1.0, "max-samples": 300})
    dataset = load_dataset("digits", max_samples=300)
    data = AttackerData(dataset.x[:40], dataset.y[:40], np.arange(40), np.ones(40, bool))
    norms = {}
    for known in (False, True):
        mim = Mimicry(cfg, "supernet", 1.0, Recipe(1, 8, 0.025), alpha_l2=cfg.search.alpha_l2 if known else 0.0,
                      steps=10)
        bank = train_shadows("searched", data, dataset.spec, mim, 1, "probs", 3, seed=0)
        norms[known] = _alpha_norm(bank.models[0])
    assert norms[True] < norms[False] - 0.01
