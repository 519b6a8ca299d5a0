"""Input noise (the DP defense of AMIA) reaches every training input of the local search."""

import numpy as np
import pytest
import torch

from fednas.data import ClientSplit, ImageSet, client_data
from fednas.federated import client_train, initial_arrays, model_for
from fednas.noise import InputNoise
from fednas.search import local_search



def test_fixed_noise_is_one_draw_per_sample_and_fresh_noise_is_not():
    x = torch.zeros(3, 1, 8, 8)
    rng = np.random.default_rng(0)
    fixed = InputNoise(0.1, "fixed", seed=4)
    a, b = fixed(x, [5, 6, 7], rng), fixed(x, [7, 5, 6], rng)
    torch.testing.assert_close(a[0], b[1])  # sample 5 gets the same noise wherever it appears
    assert not torch.equal(a[0], a[1])
    assert not torch.equal(fixed(x, [5, 6, 7], rng), InputNoise(0.1, "fixed", seed=5)(x, [5, 6, 7], rng))
    fresh = InputNoise(0.1, "fresh")
    assert not torch.equal(fresh(x, [5, 6, 7], rng), fresh(x, [5, 6, 7], rng))
    big = InputNoise(0.1, "fixed")(torch.zeros(400, 1, 8, 8), list(range(400)), rng)
    assert big.std().item() == pytest.approx(0.1, rel=0.05) and abs(big.mean().item()) < 0.01


def test_an_empty_batch_passes_through():
    empty = torch.zeros(0, 1, 8, 8)
    for mode in ("fixed", "fresh"):
        assert InputNoise(0.1, mode)(empty, [], np.random.default_rng(0)).shape == (0, 1, 8, 8)


def test_bad_noise_settings_are_refused():
    with pytest.raises(ValueError, match="std must be > 0"):
        InputNoise(0.0)
    with pytest.raises(ValueError, match="input-noise-mode"):
        InputNoise(0.1, "sometimes")


def test_the_search_sees_only_noisy_inputs(tiny_cfg):
    """On an all-zero dataset every input the model sees is the noise itself."""
    dataset, split = client_data(tiny_cfg.data, 0, 0, 2)
    zeros = ImageSet("zeros", torch.zeros_like(dataset.x), dataset.y, dataset.num_classes)
    seen = []
    model = model_for(tiny_cfg, dataset.spec, "cpu")
    model.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach().clone()))
    noise = InputNoise(0.1, "fixed", seed=3)
    result = local_search(model, zeros, split, tiny_cfg.search, [0, 1, 0], input_noise=noise)
    assert len(seen) == 2 * result.steps  # first order: one α and one θ forward per step
    for x in seen:
        assert 0.07 < x.std().item() < 0.13
    for step, ids in enumerate(result.alpha_batches):  # α batches carry their samples' own fixed noise
        expected = 0.1 * torch.stack([noise.fixed_noise(i, (1, 8, 8)) for i in ids])
        torch.testing.assert_close(seen[2 * step], expected)
    clean_seen = []
    clean = model_for(tiny_cfg, dataset.spec, "cpu")
    clean.register_forward_pre_hook(lambda mod, args: clean_seen.append(args[0].abs().max().item()))
    local_search(clean, zeros, split, tiny_cfg.search, [0, 1, 0])
    assert len(clean_seen) == len(seen) and max(clean_seen) == 0.0  # without noise: the clean zeros


def test_client_train_applies_the_configs_noise(tiny_cfg):
    arrays = initial_arrays(tiny_cfg)
    kw = dict(partition_id=0, num_clients=2, server_round=1)
    base = client_train(tiny_cfg, tiny_cfg.search, arrays, **kw)
    again = client_train(tiny_cfg.replace(input_noise_std=0.0), tiny_cfg.search, arrays, **kw)
    noisy_cfg = tiny_cfg.replace(input_noise_std=0.1)
    noisy = client_train(noisy_cfg, noisy_cfg.search, arrays, **kw)
    for k in base.arrays:
        torch.testing.assert_close(base.arrays[k], again.arrays[k])
    assert any(not torch.equal(base.arrays[k], noisy.arrays[k]) for k in base.arrays)
    assert base.audit["alpha-indices"] == noisy.audit["alpha-indices"]  # the noise leaves the batch order alone


def test_fresh_noise_on_a_hand_made_split():
    # a ClientSplit built by hand, as the attacker's searched shadow makes one
    data = ImageSet("t", torch.rand(20, 1, 8, 8), torch.arange(20) % 10, 10)
    split = ClientSplit(0, np.arange(10), np.arange(10, 20), np.zeros(0, dtype=np.int64))
    from fednas.config import parse_config

    cfg = parse_config({"dag-nodes": 3, "channels": 4, "local-steps": 1, "batch-size": 4, "alpha-batch-size": 4})
    res = local_search(model_for(cfg, data.spec, "cpu"), data, split, cfg.search, 0,
                       input_noise=InputNoise(0.1, "fresh"))
    assert res.steps == 1
