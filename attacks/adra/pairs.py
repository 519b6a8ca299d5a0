"""(Δα, x) pairs from the attacker's own images, made exactly as a capture is made.

The attacker knows what the wire shows: the round's α_t1, θ as it believes it (the wire's
θ_t1, θ_0, or surrogate draws), and the client's α procedure (optimizer, learning rate,
weight decay, local steps, B). For any images of its own it can therefore compute the Δα a
client holding them would have sent (``client_model.replay`` on ``Victim.grads``), and
learn the inverse map from such pairs (``attacks.adra.inverse``).

Pairs are made from the aux pool, each image randomly moved a little (affine: shift,
rotation, scale) so that the inverse sees more than the pool's few hundred digits, never
from a client's data. A pair's feature is the data part of its update, Δα minus the update
the client's procedure makes with a zero loss gradient (weight decay alone), as a unit
vector and its log-norm: the direction carries the image, the norm the loss.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from attacks.adra.client_model import AlphaProcedure, data_free_update, replay

NORM_FLOOR = 1e-30  # a saturated sample has no loss gradient: its unit direction is undefined


@dataclass(frozen=True)
class Augment:
    """Random affine moves of the attacker's images: shift as a fraction of the image's side
    (2 px at 28×28; a fixed pixel count would move an 8×8 digit by a quarter of its frame),
    rotation in degrees, relative scale."""

    shift: float = 2 / 28
    rotate: float = 12.0
    scale: float = 0.1

    def apply(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Moved copies of images x (N, C, H, W); zero moves return x unchanged."""
        if self.shift == 0 and self.rotate == 0 and self.scale == 0:
            return x
        n = len(x)
        u = lambda: 2 * torch.rand(n, generator=generator) - 1  # noqa: E731 - one uniform draw per image
        angle = u() * math.radians(self.rotate)
        s = 1 + u() * self.scale
        tx, ty = u() * self.shift * 2, u() * self.shift * 2  # grid units: [-1, 1] spans the image
        cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
        theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
        grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, padding_mode="zeros", align_corners=False).clamp(0.0, 1.0)


@dataclass
class Pairs:
    """Features (N, n_alpha + 1), images (N, K, B, C, H, W), labels (N, K, B)."""

    features: torch.Tensor
    images: torch.Tensor
    labels: torch.Tensor
    seconds: float = 0.0  # wall seconds it took to make them
    cpu_seconds: float = 0.0  # and CPU seconds (wall alone misleads on a shared machine)

    def __len__(self) -> int:
        return len(self.features)


def features(delta: torch.Tensor, free: torch.Tensor) -> torch.Tensor:
    """Δα rows (N, n_alpha) as the inverse reads them: the unit data part and its log10-norm."""
    data = delta - free.to(delta)
    norm = data.norm(dim=-1, keepdim=True)
    return torch.cat([data / norm.clamp_min(NORM_FLOOR), norm.clamp_min(NORM_FLOOR).log10()], -1)


def free_update(problem) -> torch.Tensor:
    """The client's update with a zero loss gradient (``data_free_update``), flat, float32."""
    return data_free_update(problem.proc, problem.victim.alpha_flat.double(), problem.victim.alpha_l2).float()


@torch.no_grad()
def predicted_updates(problem, x: torch.Tensor, y: torch.Tensor, draw: torch.Tensor,
                      samples_per_call: int = 64) -> torch.Tensor:
    """Δα a client holding batches x (N, K, B, C, H, W) with labels y (N, K, B) would send,
    each under its θ draw, its K local steps replayed as ``problem.proc`` makes them.

    The batched gradient holds every sample's activations at once, so the N batches go
    through in calls of about ``samples_per_call`` samples (B = 4 at 28×28, P = 16: 64 pairs in
    one call took 9.6 GB); the result does not depend on it.
    """
    per_call = max(1, samples_per_call // problem.batch)
    if len(x) > per_call:
        return torch.cat([predicted_updates(problem, x[i:i + per_call], y[i:i + per_call], draw[i:i + per_call],
                                            samples_per_call) for i in range(0, len(x), per_call)])
    v = problem.victim
    onehot = F.one_hot(y.long(), problem.classes).float()
    alpha0 = v.alpha_flat.expand(len(x), -1)
    # Adam's first step is an exact sign here (temperature 0): pairs are made as the client makes them
    return replay(problem.proc, alpha0, lambda k, a: v.grads(x[:, k], onehot[:, k], a, draw, step=k), 0.0)


def make_pairs(problem, pool_x: torch.Tensor, pool_y: torch.Tensor, count: int, generator: torch.Generator,
               augment: Augment | None = Augment(), chunk: int = 64) -> Pairs:
    """``count`` pairs for ``problem``'s round from the pool (the attacker's images), each
    a random batch per local step, each image moved by ``augment``; the θ draws take turns by chunk.

    Parameters
    ----------
    problem : solver.Problem
        The capture's round as the attacker models it (victim at α_t1, θ belief, procedure).
    pool_x, pool_y : tensors (M, C, H, W), (M,)
        The attacker's own images and labels.
    count : int
    generator : torch.Generator
        Seeds which images, their moves and θ draws (pairs are reproducible).
    chunk : int
        Pairs a θ draw takes in turn; samples per batched gradient call (bounds memory).
    """
    k, b, v = problem.steps, problem.batch, problem.victim
    free = free_update(problem)
    feats, images, labels = [], [], []
    for start in range(0, count, chunk):
        n = min(chunk, count - start)
        idx = torch.randint(len(pool_x), (n * k * b,), generator=generator)
        x = pool_x[idx].float()
        if augment is not None:
            x = augment.apply(x, generator)
        x = x.view(n, k, b, *x.shape[1:])
        y = pool_y[idx].view(n, k, b)
        # one θ draw per chunk, in turn: the batched gradient is one pass per draw it meets, so
        # pairs of one draw together keep it one pass (and every draw gets its share of pairs)
        draw = torch.full((n,), (start // chunk) % v.draws, dtype=torch.long)
        delta = predicted_updates(problem, x.to(v.device), y.to(v.device), draw.to(v.device), chunk)
        feats.append(features(delta.float(), free).cpu())
        images.append(x)
        labels.append(y)
    return Pairs(torch.cat(feats), torch.cat(images), torch.cat(labels))


def digest(*parts) -> str:
    """A stable hex key over tensors, arrays and plain values (the cache's key)."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, torch.Tensor):
            p = p.detach().cpu().numpy()
        if isinstance(p, np.ndarray):
            h.update(str((p.dtype.str, p.shape)).encode())
            h.update(np.ascontiguousarray(p).tobytes())
        else:
            h.update(repr(p).encode())
        h.update(b"\x00")
    return h.hexdigest()


def problem_key(problem) -> str:
    """Everything of a capture's round that determines its pairs: the replica (its modules'
    description: space, activation, head), α_t1, every θ (draws and steps), the α-L2
    penalty, the procedure, K, B, classes and the image shape."""
    v = problem.victim
    thetas = [v.thetas[n] for n in sorted(v.thetas)]
    proc: AlphaProcedure = problem.proc
    return digest(v.alpha_flat, *thetas, v.alpha_l2, v.draws, v.steps, proc, problem.steps, problem.batch,
                  problem.classes, problem.image_shape, repr(v.model))


@torch.no_grad()
def theta_spread(problem, x: torch.Tensor, y: torch.Tensor, max_draws: int = 16) -> dict[str, float]:
    """How much of Δα is the images and how much the θ draw, for M sets of a round's images
    x (M, K, B, C, H, W) with labels y (M, K, B) under each of the problem's θ draws (surrogate
    draws, or the sampled θ paths of a K-step round).

    Returns
    -------
    dict
        ``across-theta``: mean squared distance of a set's unit data feature from its mean
        over the draws; ``across-images``: the same over the sets under one draw; ``ratio``:
        their quotient (near 1 or above: not knowing θ moves Δα as far as changing the images);
        ``retrieval``: the share of (set, draw, other draw) where the nearest feature under
        the other draw is the same set's, and ``chance`` = 1/M; ``retrieval-among``: the same
        among random subsets of 2, 4, ... candidates (the curve that says how fast it falls as
        the candidates grow towards a whole dataset's); ``retrieval-mean-among``: the same
        curve where each candidate is its mean feature over the other draws (as the attack's
        match averages over its draws). Draws with no loss gradient
        (a saturated softmax) are left out of neither: their unit feature is 0.
    """
    m, d = len(x), min(problem.victim.draws, max_draws)
    if tuple(x.shape[1:3]) != (problem.steps, problem.batch) or d < 2:
        raise ValueError(f"theta_spread reads sets of the round's K x B = {problem.steps} x {problem.batch} images "
                         f"(got {tuple(x.shape[1:3])}) under at least 2 θ draws (got {d})")
    free = free_update(problem)
    dev = problem.victim.device
    feats = []
    for j in range(d):
        draw = torch.full((m,), j, dtype=torch.long, device=dev)
        delta = predicted_updates(problem, x.to(dev), y.to(dev), draw)
        feats.append(features(delta.float(), free)[:, :-1].cpu())  # unit direction only
    f = torch.stack(feats, 1)  # (M, D, n)
    across_theta = float(((f - f.mean(1, keepdim=True)) ** 2).sum(-1).mean())
    across_images = float(((f - f.mean(0, keepdim=True)) ** 2).sum(-1).mean())
    # distances between every set under draw a and every set under draw b, for all a != b
    pairwise = torch.stack([torch.cdist(f[:, a], f[:, b]) for a in range(d) for b in range(d) if a != b])
    # and to every set's mean feature over the other draws (the attacker's prediction averaged over its draws)
    mean_of_others = torch.stack([torch.cdist(f[:, a], (f.sum(1) - f[:, a]) / (d - 1)) for a in range(d)])
    by_size, by_size_mean = _retrieval_curve(pairwise), _retrieval_curve(mean_of_others)
    return {"across-theta": across_theta, "across-images": across_images,
            "ratio": across_theta / max(across_images, 1e-30), "retrieval": by_size[str(m)], "chance": 1.0 / m,
            "images": m, "draws": d, "retrieval-among": by_size, "retrieval-mean-among": by_size_mean}


SUBSETS = 16  # random candidate subsets per smaller size in theta_spread's retrieval curve


def _retrieval(dist: torch.Tensor) -> float:
    """Share of queries (rows) whose nearest candidate (column) is themselves; dist (pairs, M, M)."""
    return float((dist.argmin(-1) == torch.arange(dist.shape[-1])).float().mean())


def _retrieval_curve(dist: torch.Tensor) -> dict[str, float]:
    """``_retrieval`` among random subsets of 2, 4, ... of the M candidates, and among all M."""
    m = dist.shape[-1]
    gen = torch.Generator().manual_seed(0)
    out = {}
    for size in [2**j for j in range(1, m.bit_length()) if 2**j < m] + [m]:
        picks = [torch.arange(m)] if size == m else [torch.randperm(m, generator=gen)[:size] for _ in range(SUBSETS)]
        out[str(size)] = sum(_retrieval(dist[:, p][:, :, p]) for p in picks) / len(picks)
    return out


def one_step_varied(x: torch.Tensor, y: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sets (M, K, B, ...) that share the first set's images at every local step but ``step``,
    where each keeps its own: ``theta_spread`` of these asks whether that step's images alone
    can be told apart under θ draws, the other steps' images known (an upper reference)."""
    xs, ys = x[:1].repeat_interleave(len(x), 0), y[:1].repeat_interleave(len(y), 0)
    xs[:, step], ys[:, step] = x[:, step], y[:, step]
    return xs, ys
