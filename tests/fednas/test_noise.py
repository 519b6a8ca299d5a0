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


def _unit_noise(seed: int, sample_id: int, shape: tuple[int, ...]) -> torch.Tensor:
    """A sample's fixed noise as fednas/noise.py documents it, drawn here: torch's normal
    generator seeded from the run's seed, the tag 0x6E6F and the sample id (its two 32-bit halves)."""
    entropy = [seed, 0x6E6F, sample_id & 0xFFFFFFFF, sample_id >> 32]
    state = int(np.random.SeedSequence(entropy).generate_state(1)[0])
    return torch.randn(shape, generator=torch.Generator().manual_seed(state))


def test_the_search_sees_only_noisy_inputs(tiny_cfg):
    """Every input the model sees is its sample plus that sample's own fixed noise, θ's and α's alike."""
    dataset, split = client_data(tiny_cfg.data, 0, 0, 2)
    # each image a constant that names its sample: the id is read back from what the model saw
    scale = 0.25  # ≫ the noise's mean over 64 pixels (std 0.1 / 8)
    ids = torch.arange(len(dataset.y), dtype=torch.float32)
    named = ImageSet("ids", (ids * scale).view(-1, 1, 1, 1).expand_as(dataset.x).contiguous(), dataset.y,
                     dataset.num_classes)
    seen = []
    model = model_for(tiny_cfg, dataset.spec, "cpu")
    model.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach().clone()))
    result = local_search(model, named, split, tiny_cfg.search, [0, 1, 0], input_noise=InputNoise(0.1, "fixed", seed=3))
    assert len(seen) == 2 * result.steps  # first order: one α and one θ forward per step
    noises: dict[int, torch.Tensor] = {}
    for n, x in enumerate(seen):
        batch = [int(i) for i in torch.round(x.mean(dim=(1, 2, 3)) / scale)]
        pool = split.alpha if n % 2 == 0 else split.theta  # α's batch first, then θ's
        assert set(batch) <= set(pool.tolist())
        if n % 2 == 0:
            assert batch == result.alpha_batches[n // 2]
        expected = torch.stack([named.x[i] + 0.1 * _unit_noise(3, i, (1, 8, 8)) for i in batch])
        torch.testing.assert_close(x, expected)
        for i, row in zip(batch, x):
            noises[i] = row - named.x[i]
    drawn = torch.stack(list(noises.values()))
    assert 0.08 < drawn.std().item() < 0.12 and len(noises) >= 2 * tiny_cfg.search.batch_size
    clean_seen = []
    clean = model_for(tiny_cfg, dataset.spec, "cpu")
    clean.register_forward_pre_hook(lambda mod, args: clean_seen.append(args[0].detach().clone()))
    local_search(clean, named, split, tiny_cfg.search, [0, 1, 0])
    assert len(clean_seen) == len(seen)
    for x, noisy in zip(clean_seen, seen):  # without noise: the clean samples, in the same batch order
        torch.testing.assert_close(x, torch.round(noisy.mean(dim=(1, 2, 3)) / scale).mul(scale)
                                   .view(-1, 1, 1, 1).expand_as(x))


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
