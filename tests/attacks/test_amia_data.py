"""Members, non-members and the attacker's data come from the right, disjoint places."""

import numpy as np
import pytest
import torch

from attacks.amia.data import AMIAInputError, attacker_data, membership_sets, photo_patches
from fednas.config import parse_config
from fednas.data import DatasetMissing, make_pools, partition_clients, load_dataset
from fednas.spaces import InputSpec


@pytest.fixture(scope="module")
def setting():
    cfg = parse_config({"max-samples": 600})
    return cfg, load_dataset("digits", max_samples=600)


def test_members_are_dalpha_nonmembers_are_held_out_and_nothing_overlaps(setting):
    cfg, ds = setting
    sets = membership_sets(ds, cfg, num_clients=3)
    splits = partition_clients(ds, cfg.data, cfg.run.seed, 3)
    alpha = np.concatenate([s.alpha for s in splits])
    theta = np.concatenate([s.theta for s in splits])
    pools = make_pools(len(ds), cfg.data, cfg.run.seed)
    assert np.isin(sets.alpha, alpha).all() and np.isin(sets.theta, theta).all()
    assert np.isin(sets.nonmembers, pools.holdout).all()
    assert len(sets.alpha) == len(sets.nonmembers) == min(len(alpha), len(pools.holdout))
    for a, b in ((sets.alpha, sets.theta), (sets.alpha, sets.nonmembers), (sets.theta, sets.nonmembers)):
        assert not np.intersect1d(a, b).size
    assert sets.available == {"alpha": len(alpha), "theta": len(theta), "holdout": len(pools.holdout)}


def test_asking_for_more_members_than_exist_names_the_counts(setting):
    cfg, ds = setting
    with pytest.raises(AMIAInputError) as info:
        membership_sets(ds, cfg, num_clients=3, n=10_000)
    assert "'amia-members' = 10000" in str(info.value) and "held-out non-members" in str(info.value)


@pytest.mark.parametrize("eta", [1.0, 0.5, 0.0])
def test_the_attacker_keeps_a_share_eta_of_aux_and_fills_the_rest_from_the_photos(setting, eta):
    cfg, ds = setting
    data = attacker_data(ds, cfg, eta, "patches")
    aux = make_pools(len(ds), cfg.data, cfg.run.seed).aux
    assert len(data) == len(aux) and data.from_target.sum() == round(eta * len(aux))
    assert np.isin(data.ids[data.from_target], aux).all()
    assert (data.ids[~data.from_target] >= len(ds)).all() and len(set(data.ids)) == len(data)
    assert data.x.shape[1:] == ds.x.shape[1:] and 0 <= data.x.min() and data.x.max() <= 1
    assert set(data.y.tolist()) <= set(range(10))


def test_photo_patches_take_the_targets_shape_and_are_labelled_into_its_classes():
    x, y = photo_patches(40, InputSpec(3, 32, 10), seed=0)
    assert x.shape == (40, 3, 32, 32) and x.dtype == torch.float32
    assert len(set(y.tolist())) == 10
    x1, _ = photo_patches(40, InputSpec(1, 8, 10), seed=0)
    assert x1.shape == (40, 1, 8, 8)
    torch.testing.assert_close(photo_patches(5, InputSpec(1, 8, 10), seed=3)[0],
                               photo_patches(5, InputSpec(1, 8, 10), seed=3)[0])


def test_fashion_mnist_without_a_local_copy_says_where_it_looked(setting, tmp_path, monkeypatch):
    monkeypatch.setattr("fednas.data.FASHION_MNIST_SYSTEM_DIRS", ())  # as on a machine without the package
    cfg, ds = setting
    cfg = cfg.replace(data_root=str(tmp_path))
    with pytest.raises(DatasetMissing, match="FashionMNIST"):
        attacker_data(ds, cfg, 0.5, "fashion-mnist")
