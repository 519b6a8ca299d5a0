"""The attacks find members of a deliberately overfit model and find nothing in a model
that never saw them; their features read top-k and label-only outputs sensibly."""

import numpy as np
import pytest

from attacks.amia.api import PredictionAPI
from attacks.amia.attacks import (MIA_VARIANTS, LiRAOffline, LossAttack, MLPAttack, logit_confidence, sorted_probs,
                                  true_class_confidence)
from attacks.amia.data import AttackerData
from attacks.amia.models import fixed_architecture
from attacks.amia.runner import score_attacks
from attacks.amia.shadows import SHADOW_KINDS, Mimicry, balanced_masks, train_shadows
from attacks.amia.training import Recipe, train_classifier
from fednas.config import AMIA_ATTACKS, AMIA_SHADOW_KINDS
from fednas.data import load_dataset

PASSES = 100
RECIPE = Recipe(0, 32, 0.05, momentum=0.9, weight_decay=0.0, grad_clip=0.0)


def test_the_config_knows_exactly_the_registered_names():
    assert set(MIA_VARIANTS) == set(AMIA_ATTACKS)
    assert set(SHADOW_KINDS) == set(AMIA_SHADOW_KINDS)


def test_true_class_confidence_reads_hidden_entries_as_their_share_of_the_hidden_mass():
    top2 = np.array([[0.0, 0.7, 0.2, 0.0]])  # 0.1 hidden over two classes
    p_y, others = true_class_confidence(top2, np.array([1]))
    assert p_y[0] == pytest.approx(0.7) and others[0] == pytest.approx(0.3)
    p_y, others = true_class_confidence(top2, np.array([0]))
    assert p_y[0] == pytest.approx(0.05) and others[0] == pytest.approx(0.95)
    label = np.array([[0.0, 1.0, 0.0]])
    assert logit_confidence(label, np.array([1]))[0] > 50 > -50 > logit_confidence(label, np.array([0]))[0]
    almost_sure = np.array([[1.0 - 1e-12, 1e-12]])  # log(p/(1-p)) stays exact near 1
    assert logit_confidence(almost_sure, np.array([0]))[0] == pytest.approx(np.log((1 - 1e-12) / 1e-12), rel=1e-6)
    np.testing.assert_allclose(sorted_probs(np.array([[0.2, 0.5, 0.3]])), [[0.5, 0.3, 0.2]])


@pytest.mark.parametrize("n, k", [(10, 1), (11, 2), (40, 4), (21, 3)])
def test_balanced_masks_put_each_sample_in_half_the_shadows(n, k):
    m = balanced_masks(n, k, seed=0)
    assert m.shape == (k, n)
    per_sample = m.sum(0)
    if k == 1:
        assert per_sample.sum() == n // 2
    else:
        assert set(per_sample) <= {k // 2, (k + 1) // 2}
        assert abs(m.sum(1) - n / 2).max() <= n / 4 + 1


@pytest.fixture(scope="module")
def world():
    """Digits: 100 members, 100 non-members, 200 attacker samples, 100 unrelated; 4 CNN shadows."""
    ds = load_dataset("digits")
    perm = np.random.default_rng(0).permutation(len(ds))
    idx = {"members": perm[:100], "nonmembers": perm[100:200], "aux": perm[200:400], "other": perm[400:500]}
    attacker = AttackerData(ds.x[idx["aux"]], ds.y[idx["aux"]], idx["aux"], np.ones(200, bool))
    bank = train_shadows("cnn", attacker, ds.spec, Mimicry(None, "supernet", PASSES, RECIPE), 4, "probs", 3, seed=5)
    return ds, idx, bank


def _attack(world, train_on):
    ds, idx, bank = world
    target = fixed_architecture("cnn", ds.spec, seed=1)
    fit = train_classifier(target, ds.x[train_on], ds.y[train_on], RECIPE.epochs_to_steps(PASSES, len(train_on)), 0)
    api = PredictionAPI(target, ds.spec)
    q = {k: idx[k] for k in ("members", "nonmembers")}
    outputs = {k: api.query(ds.x[i]) for k, i in q.items()}
    ys = {k: ds.y[i].numpy() for k, i in q.items()}
    shadow_q = {k: bank.outputs_on(ds.x[i], "probs", 3) for k, i in q.items()}
    attacks = [MLPAttack(100, 0.05).fit(bank), LiRAOffline().fit(bank), LossAttack().fit(bank)]
    rows, _ = score_attacks(attacks, outputs, ys, shadow_q)
    return fit, {r["attack"]: r for r in rows}


def test_on_a_deliberately_overfit_target_every_attack_is_clearly_above_chance(world):
    fit, rows = _attack(world, world[1]["members"])
    assert fit["acc"] == 1.0 and fit["loss"] < 0.01  # memorised
    for name, r in rows.items():
        assert r["auc"] > 0.62, (name, r)  # chance: 0.5 ± 0.04 with 100 + 100 samples
        assert r["attack-acc"] > 0.15, (name, r)


def test_on_a_model_that_never_saw_the_members_every_attack_is_near_chance(world):
    fit, rows = _attack(world, world[1]["other"])
    assert fit["acc"] == 1.0
    for name, r in rows.items():
        assert abs(r["auc"] - 0.5) < 0.1, (name, r)
        assert abs(r["attack-acc"]) < 0.2, (name, r)  # chance: 0 ± 0.07
