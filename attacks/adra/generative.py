"""A generative image prior: a small VAE trained on the aux pool, and a latent search on Δα.

Matching Δα pixel by pixel has local minima right around the sample (the replica's ReLU
and max-pool kinks). The gradient-inversion field's answer is to search the latent space
of a generator trained on images like the client's (GIAS, GGL): every candidate is then
image-like, and a gradient-free search there (CMA-ES, as GGL does) does not care about
the kinks. Here the generator is a VAE's decoder trained on the attacker's aux pool
(augmented as the inverse's pairs are); ``adra-method = "generative"`` reads a capture as

1. the learned inverse's reading (``attacks.adra.inverse``): an image and a label;
2. batched Adam on the latent, from the inverse's image encoded and from random latents,
   under the inverse's labels;
3. CMA-ES on the latent from the best of those (``cma``);
4. a short free-pixel Levenberg–Marquardt polish of the decoded image;

and returns whichever of these candidates (the inverse's image among them) matches Δα
best: the attacker can compute every candidate's match, never its distance to the truth.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from attacks.adra.inverse import (InverseCache, default_cache_dir, exclusive_lock, invert, polish, save_atomic,
                                  settings_of)
from attacks.adra.pairs import Augment, digest

log = logging.getLogger(__name__)

VERSION = 1  # bump when the prior's training changes meaning: old cache entries are then never read


@dataclass(frozen=True)
class PriorSettings:
    """How the generative prior is made and searched (``adra-generative-*`` keys)."""

    latent: int = 16
    hidden: int = 512
    epochs: int = 300
    beta: float = 1.0  # the KL term's weight
    augment: bool = True
    restarts: int = 8  # latent starts beside the inverse's (random draws from the prior)
    steps: int = 60  # Adam steps on the latent
    lr: float = 0.05
    generations: int = 30  # CMA-ES generations (0: none)
    sigma: float = 0.3  # CMA-ES's initial step, in units of the prior's N(0, 1)
    seed: int = 0

    def training(self) -> dict[str, Any]:
        """What determines the trained VAE (its cache key)."""
        return {k: v for k, v in asdict(self).items() if k in ("latent", "hidden", "epochs", "beta", "augment", "seed")}


class ImageVAE(nn.Module):
    """An MLP VAE over images (C, H, W) in [0, 1]: any image size, a few seconds an epoch on a CPU."""

    def __init__(self, image_shape: tuple[int, int, int], latent: int = 16, hidden: int = 512) -> None:
        super().__init__()
        self.image_shape, self.latent = tuple(image_shape), latent
        pixels = math.prod(image_shape)
        self.encoder = nn.Sequential(nn.Linear(pixels, hidden), nn.GELU(), nn.Linear(hidden, hidden // 2), nn.GELU(),
                                     nn.Linear(hidden // 2, 2 * latent))
        self.decoder = nn.Sequential(nn.Linear(latent, hidden // 2), nn.GELU(), nn.Linear(hidden // 2, hidden),
                                     nn.GELU(), nn.Linear(hidden, pixels))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance (N, latent) of images (N, C, H, W)."""
        mu, logvar = self.encoder(x.flatten(1)).chunk(2, -1)
        return mu, logvar.clamp(-12.0, 8.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) in [0, 1] of latents (N, latent)."""
        return torch.sigmoid(self.decoder(z)).view(len(z), *self.image_shape)

    def loss(self, x: torch.Tensor, generator: torch.Generator, beta: float) -> torch.Tensor:
        """The negative ELBO per image, averaged: Bernoulli reconstruction plus β × KL."""
        mu, logvar = self.encode(x)
        z = mu + torch.randn(mu.shape, generator=generator) * (0.5 * logvar).exp()
        logits = self.decoder(z)
        rec = F.binary_cross_entropy_with_logits(logits, x.flatten(1), reduction="none").sum(1)
        kl = 0.5 * (mu**2 + logvar.exp() - 1.0 - logvar).sum(1)
        return (rec + beta * kl).mean()


def train_prior(aux_x: torch.Tensor, settings: PriorSettings) -> tuple[ImageVAE, dict[str, float]]:
    """Fit an ``ImageVAE`` on the aux images (N, C, H, W), each epoch freshly moved by ``Augment``."""
    gen = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)  # the layers' initial weights
    vae = ImageVAE(tuple(aux_x.shape[1:]), settings.latent, settings.hidden)
    opt = torch.optim.Adam(vae.parameters(), lr=1e-3)
    augment = Augment() if settings.augment else None
    t0, c0, loss = time.perf_counter(), time.process_time(), math.nan
    for _ in range(settings.epochs):
        x = augment.apply(aux_x, gen) if augment is not None else aux_x
        for rows in torch.randperm(len(x), generator=gen).split(128):
            loss_t = vae.loss(x[rows], gen, settings.beta)
            opt.zero_grad(set_to_none=True)
            loss_t.backward()
            opt.step()
            loss = float(loss_t.detach())
    return vae.eval(), {"loss": loss, "train-seconds": time.perf_counter() - t0,
                        "train-cpu-seconds": time.process_time() - c0}


def cached_prior(aux_x: torch.Tensor, settings: PriorSettings, root: str | Path | None = None) -> tuple[ImageVAE, dict]:
    """The VAE for these aux images and settings: from the cache (``$FEDNAS_CACHE``), else trained and stored."""
    key = digest(VERSION, aux_x, settings.training())
    path = (Path(root) if root else default_cache_dir()) / f"prior-{key[:24]}.pt"
    with exclusive_lock(path.with_suffix(".lock")):
        if path.exists():
            saved = torch.load(path, weights_only=True)
            vae = ImageVAE(tuple(aux_x.shape[1:]), settings.latent, settings.hidden)
            vae.load_state_dict(saved["state"])
            return vae.eval(), {**saved["figures"], "cached": 1.0}
        vae, figures = train_prior(aux_x, settings)
        save_atomic({"state": vae.state_dict(), "figures": figures}, path)
        log.info("generative prior trained (%d aux images, %.0f s): %s", len(aux_x), figures["train-seconds"], path)
        return vae, {**figures, "cached": 0.0}


def _decode(vae: ImageVAE, z: torch.Tensor, problem) -> torch.Tensor:
    """Latents (H, K·B·latent) -> images (H, K, B, C, h, w) on the victim's device."""
    h, kb = len(z), problem.steps * problem.batch
    x = vae.decode(z.reshape(h * kb, vae.latent))
    return x.view(h, problem.steps, problem.batch, *problem.image_shape).to(problem.victim.device)


def latent_adam(problem, vae: ImageVAE, z0: torch.Tensor, y: torch.Tensor, settings: PriorSettings,
                temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Adam on latents z0 (H, K·B·latent) under one-hot labels y (K, B, classes), all starts
    in one batch; the best latent each start met and its match (H,)."""
    from attacks.adra.solver import _match

    z = z0.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=settings.lr)
    ys = y[None].expand(len(z0), *y.shape)
    best_z, best = z0.clone(), torch.full((len(z0),), math.inf)
    for _ in range(settings.steps):
        dist = _match(problem, _decode(vae, z, problem), ys, problem.distance, temperature).cpu()
        better = torch.nan_to_num(dist.detach(), nan=math.inf) < best
        best_z[better], best[better] = z.detach()[better], dist.detach()[better]
        opt.zero_grad(set_to_none=True)
        dist.sum().backward()
        opt.step()
    return best_z, best


@torch.no_grad()
def latent_cma(problem, vae: ImageVAE, z0: torch.Tensor, y: torch.Tensor, settings: PriorSettings,
               temperature: float, seed: int) -> tuple[torch.Tensor, float, int]:
    """CMA-ES (``cma``) on the latent from z0 (K·B·latent,): the best latent, its match and
    how many candidates were scored (each generation one batched match)."""
    import cma

    from attacks.adra.solver import _match

    es = cma.CMAEvolutionStrategy(z0.double().tolist(), settings.sigma,
                                  {"seed": seed % (2**31 - 1) + 1, "verbose": -9, "maxiter": settings.generations})
    best_z, best, scored = z0.clone(), math.inf, 0
    while not es.stop():
        cands = es.ask()
        z = torch.tensor(cands, dtype=torch.float32)
        dist = _match(problem, _decode(vae, z, problem), y[None].expand(len(z), *y.shape), problem.distance,
                      temperature).cpu()
        dist = torch.nan_to_num(dist, nan=math.inf)
        es.tell(cands, dist.double().tolist())
        scored += len(z)
        i = int(dist.argmin())
        if float(dist[i]) < best:
            best_z, best = z[i].clone(), float(dist[i])
    return best_z, best, scored


def generative_settings(s, seed: int = 0) -> PriorSettings:
    """The prior's settings from the ``attack`` config section."""
    return PriorSettings(latent=s.adra_generative_latent, epochs=s.adra_generative_epochs,
                         restarts=s.adra_generative_restarts, steps=s.adra_generative_steps,
                         generations=s.adra_generative_generations, seed=seed)


def solve_generative(problem, s, aux_images, aux_labels, progress=None, seed: int = 0):
    """``adra-method = "generative"``: the inverse's reading, then a latent search of the
    generative prior (Adam restarts, CMA-ES) and a free-pixel polish; the candidate that
    matches Δα best. Returns the ``solver.Solution`` and figures (each stage's match, seconds)."""
    from attacks.adra.solver import ADAM_TEMPERATURE_LM, Solution, match_at

    report = progress or (lambda *a: None)
    settings = generative_settings(s, seed)
    aux_x, aux_y = torch.as_tensor(aux_images).float(), torch.as_tensor(aux_labels).long()
    net, figures = InverseCache(s.adra_cache_dir or None).inverse(problem, aux_x, aux_y, settings_of(s, seed))
    vae, prior_figures = cached_prior(aux_x, settings, s.adra_cache_dir or None)
    figures.update({f"prior-{k}": v for k, v in prior_figures.items()})
    t0, c0 = time.perf_counter(), time.process_time()
    report("inverse", 0, 1, None)
    images, logits = invert(net, problem)  # (K, B, C, H, W), (K, B, classes)
    labels = logits.argmax(-1)
    candidates = [("inverse", images, match_at(problem, images, labels))]
    report("inverse", 1, 1, candidates[0][2])
    temp = ADAM_TEMPERATURE_LM if problem.proc.optimizer == "adam" else 0.0
    y = F.one_hot(labels, problem.classes).float().to(problem.victim.device)
    gen = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():
        z_inverse = vae.encode(images.reshape(-1, *problem.image_shape))[0].reshape(1, -1)
    z0 = torch.cat([z_inverse, torch.randn((settings.restarts, z_inverse.shape[1]), generator=gen)])
    report("latent", 0, settings.steps, None)
    z_best, dist = latent_adam(problem, vae, z0, y, settings, temp)
    i = int(torch.argmin(dist))
    z, match = z_best[i], float(dist[i])
    figures["latent-match"] = match
    if settings.generations > 0:
        report("cma", 0, settings.generations, match)
        z_cma, m_cma, scored = latent_cma(problem, vae, z, y, settings, temp, seed)
        figures.update({"cma-match": m_cma, "cma-candidates": float(scored)})
        if m_cma < match:
            z, match = z_cma, m_cma
    with torch.no_grad():
        decoded = _decode(vae, z[None], problem)[0].cpu()
    candidates.append(("generative", decoded, match))
    if s.adra_inverse_polish > 0:
        sol = polish(problem, s, torch.stack([images, decoded]), labels, aux_images, report)
        candidates.append(("polish", sol.images, sol.match))
        figures["polish-match"] = sol.match
    name, best_images, best = min(candidates, key=lambda c: c[2] if math.isfinite(c[2]) else math.inf)
    figures.update({"inverse-match": candidates[0][2], "chosen": float([c[0] for c in candidates].index(name)),
                    "search-seconds": time.perf_counter() - t0, "search-cpu-seconds": time.process_time() - c0})
    sol_labels = labels if name != "polish" else sol.labels
    return Solution(best_images.cpu(), sol_labels.cpu(), best, len(candidates), settings.steps), figures
