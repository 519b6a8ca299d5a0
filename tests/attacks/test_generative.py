"""The generative prior: the VAE on the aux pool, its cache, the latent searches and the reader."""

import math

import numpy as np
import torch

from attacks.adra.attack import ADRA
from attacks.adra.generative import PriorSettings, _decode, cached_prior, latent_adam, latent_cma, train_prior
from attacks.adra.solver import _match, match_at
from tests.attacks.test_adra import make_capture
from tests.attacks.test_inverse import _problem, _setup

GEN = {"adra-method": "generative", "adra-inverse-pairs": 256, "adra-inverse-epochs": 10, "adra-inverse-hidden": 64,
       "adra-generative-epochs": 20, "adra-generative-restarts": 3, "adra-generative-steps": 8,
       "adra-generative-generations": 4, "adra-inverse-polish": 2}


def test_the_vae_learns_the_aux_images_and_its_cache_key_follows_its_settings(tmp_path):
    _, _, _, knowledge = _setup()
    aux = torch.as_tensor(knowledge.aux_images).float()
    settings = PriorSettings(latent=4, hidden=64, epochs=300, beta=0.01)
    vae, fig = cached_prior(aux, settings, tmp_path)
    assert fig["cached"] == 0.0
    # it encodes each image: its reconstructions beat the pool's mean image by a wide margin
    with torch.no_grad():
        err = float(((vae.decode(vae.encode(aux)[0]) - aux) ** 2).mean())
    assert err < 0.5 * float(((aux - aux.mean(0)) ** 2).mean())
    again, fig2 = cached_prior(aux, settings, tmp_path)
    assert fig2["cached"] == 1.0
    z = torch.randn(5, 4)
    assert torch.equal(vae.decode(z), again.decode(z))
    # what changes the training is a new entry; the search's own settings are not
    cached_prior(aux, PriorSettings(latent=4, hidden=64, epochs=300, beta=0.01, steps=3, generations=1), tmp_path)
    assert len(list(tmp_path.glob("prior-*.pt"))) == 1
    cached_prior(aux, PriorSettings(latent=4, hidden=64, epochs=301, beta=0.01), tmp_path)
    assert len(list(tmp_path.glob("prior-*.pt"))) == 2


def _latent_problem(tmp_path):
    """A capture whose sample is a decoded latent z*: the latent searches can then find it exactly."""
    cfg, data, split, knowledge = _setup(**GEN)
    aux = torch.as_tensor(knowledge.aux_images).float()
    vae, _ = train_prior(aux, PriorSettings(latent=4, hidden=64, epochs=20))
    z_true = torch.randn(1, 4, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        sample = vae.decode(z_true)[0]
    _, used = make_capture(cfg, data, split)
    data.x[used[0]] = sample  # the client's one sample is now on the prior's manifold
    problem, _, used2 = _problem(cfg, data, split, knowledge)
    assert used2 == used  # the batch order depends on the seed alone
    y = torch.nn.functional.one_hot(data.y[used[0]].view(1, 1), 4).float()
    return problem, vae, z_true, y


def test_adam_and_cma_on_the_latent_lower_the_match_towards_the_decoded_truth(tmp_path):
    problem, vae, z_true, y = _latent_problem(tmp_path)
    settings = PriorSettings(latent=4, hidden=64, steps=25, lr=0.1, generations=25, sigma=0.5)
    z0 = z_true + 1.0 * torch.randn(3, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        start = _match(problem, _decode(vae, z0, problem), y[None].expand(3, *y.shape), problem.distance, 0.0)
        at_truth = float(_match(problem, _decode(vae, z_true, problem), y[None], problem.distance, 0.0)[0])
    assert at_truth < 1e-6  # the decoded truth is the client's sample: its update is the capture's
    z_adam, m_adam = latent_adam(problem, vae, z0, y, settings, 0.0)
    # each start's best is no worse than where it began, and the best is much better
    assert torch.all(m_adam <= start + 1e-12) and float(m_adam.min()) < 0.5 * float(start.min())
    i = int(m_adam.argmin())
    z_cma, m_cma, scored = latent_cma(problem, vae, z_adam[i], y, settings, 0.0, seed=0)
    assert scored > 0 and m_cma <= float(m_adam[i]) + 1e-12
    assert float((z_cma - z_true[0]).norm()) < float((z0 - z_true).norm(dim=1).max())


def test_the_generative_reader_returns_its_best_matching_candidate(tmp_path):
    cfg, data, split, knowledge = _setup(**{**GEN, "adra-cache-dir": str(tmp_path)})
    attack = ADRA(cfg.attack)
    cap, used = make_capture(cfg, data, split)
    rec = attack.reconstruct([cap], knowledge)[0]
    assert rec.status == "ok", rec.reason
    d = rec.details
    assert d["solver"] == "generative+lm2"
    stages = [d["inverse-match"], d["inverse-latent-match"], d["inverse-polish-match"]]
    if "inverse-cma-match" in d:
        stages.append(d["inverse-cma-match"])
    # the reply is the lowest match any stage reached, and it is the match at the returned image
    assert math.isclose(rec.match, min(stages), rel_tol=1e-9)
    problem, _ = attack.problem(cap, knowledge)
    images = torch.as_tensor(rec.images).view(1, 1, *rec.images.shape[1:])
    assert math.isclose(match_at(problem, images, torch.as_tensor(rec.labels).view(1, 1)), rec.match, rel_tol=1e-4)
    assert np.all((rec.images >= 0) & (rec.images <= 1))
