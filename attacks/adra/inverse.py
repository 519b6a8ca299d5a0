"""A learned inverse: a network from a capture's Δα to the client's images and labels.

Matching Δα by local search has minima right around the sample (the replica's ReLU and
max-pool kinks); the gradient-inversion field went to learned inversion instead. Here the
attacker makes (Δα, x) pairs from its own images exactly as the capture was made
(``attacks.adra.pairs``: the round's α_t1, θ as it believes it, the client's procedure),
trains a small network on them, and reads the capture through it: one forward pass.

The network is an MLP (the unit data part of Δα and its log-norm in; K × B images and
label logits out). With B > 1 a step's images are exchangeable, so its loss takes the best
assignment of outputs to targets within each step. Pairs and weights are cached on disk
under a key of everything that determines them (``InverseSettings.cache_key``), so the
captures of one round, the tables and repeated runs train once.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

try:  # POSIX: one process trains a round's inverse while the others wait for it
    import fcntl
except ImportError:  # pragma: no cover - elsewhere each process may train its own copy
    fcntl = None

from attacks.adra.pairs import Augment, Pairs, digest, features, free_update, make_pairs, problem_key
from fednas.rundir import atomic_write_bytes

log = logging.getLogger(__name__)

VERSION = 2  # bump when pairs or training change meaning: old cache entries are then never read
MAX_PERMUTED_BATCH = 4  # B up to this: the loss takes the best of all B! assignments within a step


@dataclass(frozen=True)
class InverseSettings:
    """How the inverse is made (``adra-inverse-*`` keys)."""

    pairs: int = 4096
    epochs: int = 60
    hidden: int = 1024
    augment: bool = True
    seed: int = 0
    label_weight: float = 0.1  # cross-entropy beside the pixels' mean squared error

    def augmentation(self) -> Augment | None:
        return Augment() if self.augment else None


def default_cache_dir() -> Path:
    """``$FEDNAS_CACHE``, else ``$XDG_CACHE_HOME/fednas-privacy``, else ``~/.cache/fednas-privacy``; then ``adra/``."""
    xdg = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    root = os.environ.get("FEDNAS_CACHE") or xdg / "fednas-privacy"
    return Path(root) / "adra"


class InverseNet(nn.Module):
    """Features (N, n_alpha + 1) -> images (N, K, B, C, H, W) in [0, 1] and logits (N, K, B, classes).

    The features are standardised with the training pairs' mean and spread (buffers, saved
    with the weights).
    """

    def __init__(self, n_features: int, steps: int, batch: int, image_shape: tuple[int, int, int], classes: int,
                 hidden: int = 1024) -> None:
        super().__init__()
        self.steps, self.batch, self.image_shape, self.classes = steps, batch, tuple(image_shape), classes
        self.pixels = math.prod(image_shape)
        out = steps * batch * (self.pixels + classes)
        self.body = nn.Sequential(nn.Linear(n_features, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                  nn.Linear(hidden, out))
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("scale", torch.ones(n_features))

    def forward(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.body((f - self.mean) / self.scale).view(len(f), self.steps, self.batch, -1)
        images = torch.sigmoid(out[..., : self.pixels]).view(len(f), self.steps, self.batch, *self.image_shape)
        return images, out[..., self.pixels :]


def set_loss(images: torch.Tensor, logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
             label_weight: float) -> torch.Tensor:
    """Mean squared pixel error plus ``label_weight`` × cross-entropy, per pair (N,), with the
    best assignment of outputs to targets within each step (B! assignments; B = 1: the plain loss)."""
    n, k, b = y.shape
    best = None
    for perm in itertools.permutations(range(b)):
        p = list(perm)
        mse = ((images[:, :, p] - x) ** 2).flatten(3).mean(-1)  # (N, K, B)
        ce = F.cross_entropy(logits[:, :, p].reshape(-1, logits.shape[-1]), y.reshape(-1).long(),
                             reduction="none").view(n, k, b)
        per_step = (mse + label_weight * ce).mean(-1)  # (N, K)
        best = per_step if best is None else torch.minimum(best, per_step)
    return best.mean(-1)


def label_agreement(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per read (N,): the share of its K x B labels right, each step's B labels as a set (a
    step's reads have no order: the labels matched as a multiset, plain accuracy at B = 1)."""
    classes = logits.shape[-1]
    pred = F.one_hot(logits.argmax(-1), classes).sum(-2)  # (N, K, classes): label counts per step
    true = F.one_hot(y.long(), classes).sum(-2)
    return torch.minimum(pred, true).sum((-2, -1)).float() / (y.shape[-1] * y.shape[-2])


def train_inverse(pairs: Pairs, steps: int, batch: int, image_shape: tuple[int, int, int], classes: int,
                  settings: InverseSettings) -> tuple[InverseNet, dict[str, float]]:
    """Fit an ``InverseNet`` on ``pairs`` (a tenth held out; the epoch with the lowest held-out
    loss is kept). Returns the network and its held-out figures."""
    if batch > MAX_PERMUTED_BATCH:
        raise ValueError(f"the learned inverse handles B <= {MAX_PERMUTED_BATCH} (B! assignments); "
                         f"this capture has B = {batch}")
    gen = torch.Generator().manual_seed(settings.seed)
    order = torch.randperm(len(pairs), generator=gen)
    n_val = max(1, len(pairs) // 10)
    val, tr = order[:n_val], order[n_val:]
    f, x, y = pairs.features, pairs.images, pairs.labels
    net = InverseNet(f.shape[1], steps, batch, image_shape, classes, settings.hidden)
    net.mean.copy_(f[tr].mean(0))
    net.scale.copy_(f[tr].std(0).clamp_min(1e-8))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    total = settings.epochs * math.ceil(len(tr) / 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=total)
    best, best_state, t0, c0 = math.inf, None, time.perf_counter(), time.process_time()
    for _ in range(settings.epochs):
        net.train()
        for rows in tr[torch.randperm(len(tr), generator=gen)].split(128):
            loss = set_loss(*net(f[rows]), x[rows], y[rows], settings.label_weight).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        net.eval()
        with torch.no_grad():
            v = float(set_loss(*net(f[val]), x[val], y[val], settings.label_weight).mean())
        if v < best:
            best, best_state = v, {k: t.clone() for k, t in net.state_dict().items()}
    net.load_state_dict(best_state)
    with torch.no_grad():
        images, logits = net(f[val])
        acc = float(label_agreement(logits, y[val]).mean())
        mse = float(((images - x[val]) ** 2).mean()) if batch == 1 else math.nan
    return net, {"val-loss": best, "val-label-acc": acc, "val-mse": mse, "train-seconds": time.perf_counter() - t0,
                 "train-cpu-seconds": time.process_time() - c0, "pairs": len(pairs)}


def save_atomic(obj, path: Path) -> None:
    """Atomically (``fednas.rundir.atomic_write_bytes``): a reader finds the whole file or none."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


@contextlib.contextmanager
def exclusive_lock(path: Path):
    """Hold an exclusive lock on ``path`` (created): the attack's worker processes reading
    captures of one round wait for the one that trains its inverse, then read the cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)


def read_pairs(path: Path) -> Pairs:
    """A pairs file of the cache (``pairs-<key>.pt``); a clear error naming it when it is not one."""
    d = torch.load(path, weights_only=True)
    if not isinstance(d, dict) or not {"features", "images", "labels"} <= d.keys():
        raise ValueError(f"{path} is not a pairs file of the ADRA cache (needs features, images, labels)")
    return Pairs(d["features"], d["images"], d["labels"], float(d.get("seconds", 0.0)),
                 float(d.get("cpu-seconds", 0.0)))


class InverseCache:
    """Pairs and trained inverses on disk, each under the key of what determines it."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root else default_cache_dir()

    @staticmethod
    def pairs_key(problem, aux_x: torch.Tensor, aux_y: torch.Tensor, settings: InverseSettings) -> str:
        """The pairs' key: the round as modelled, the attacker's images and how pairs are drawn."""
        return digest(VERSION, problem_key(problem), aux_x, aux_y, settings.pairs, settings.augmentation(),
                      settings.seed)

    @staticmethod
    def net_key(pairs_key: str, settings: InverseSettings) -> str:
        return digest(VERSION, pairs_key, asdict(settings))

    def inverse(self, problem, aux_x: torch.Tensor, aux_y: torch.Tensor,
                settings: InverseSettings) -> tuple[InverseNet, dict[str, float]]:
        """The trained inverse for ``problem``'s round: from the cache, else made and stored."""
        pkey = self.pairs_key(problem, aux_x, aux_y, settings)
        nkey = self.net_key(pkey, settings)
        shape = (problem.steps, problem.batch, problem.image_shape, problem.classes)
        net_path = self.root / f"inverse-{nkey[:24]}.pt"
        with exclusive_lock(self.root / f"inverse-{nkey[:24]}.lock"):
            return self._inverse(problem, aux_x, aux_y, settings, pkey, net_path, shape)

    def _inverse(self, problem, aux_x, aux_y, settings: InverseSettings, pkey: str, net_path: Path,
                 shape: tuple) -> tuple[InverseNet, dict[str, float]]:
        if net_path.exists():
            saved = torch.load(net_path, weights_only=True)
            net = InverseNet(saved["n-features"], *shape, hidden=settings.hidden)
            net.load_state_dict(saved["state"])
            return net.eval(), {**saved["figures"], "cached": 1.0}
        pairs = self._pairs(problem, aux_x, aux_y, settings, pkey)
        net, figures = train_inverse(pairs, *shape, settings)
        figures = {**figures, "pair-seconds": pairs.seconds, "pair-cpu-seconds": pairs.cpu_seconds}
        save_atomic({"state": net.state_dict(), "n-features": pairs.features.shape[1], "figures": figures}, net_path)
        log.info("learned inverse trained (%d pairs in %.0f s, training %.0f s): %s", len(pairs), pairs.seconds,
                 figures["train-seconds"], net_path)
        return net.eval(), {**figures, "cached": 0.0}

    def _pairs(self, problem, aux_x, aux_y, settings: InverseSettings, key: str) -> Pairs:
        path = self.root / f"pairs-{key[:24]}.pt"
        if path.exists():
            return read_pairs(path)
        t0, c0 = time.perf_counter(), time.process_time()
        gen = torch.Generator().manual_seed(settings.seed)
        pairs = make_pairs(problem, aux_x, aux_y, settings.pairs, gen, settings.augmentation())
        pairs.seconds, pairs.cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
        save_atomic({"features": pairs.features, "images": pairs.images, "labels": pairs.labels,
                     "seconds": pairs.seconds, "cpu-seconds": pairs.cpu_seconds}, path)
        return pairs


@torch.no_grad()
def invert(net: InverseNet, problem) -> tuple[torch.Tensor, torch.Tensor]:
    """The capture read through the inverse: images (K, B, C, H, W) and label logits (K, B, classes)."""
    f = features(problem.observed[None].float().cpu(), free_update(problem).cpu())
    images, logits = net(f)
    return images[0], logits[0]


def settings_of(s, seed: int = 0) -> InverseSettings:
    """The inverse's settings from the ``attack`` config section."""
    return InverseSettings(pairs=s.adra_inverse_pairs, epochs=s.adra_inverse_epochs, hidden=s.adra_inverse_hidden,
                           augment=s.adra_inverse_augment, seed=seed)


def solve_inverse(problem, s, aux_images, aux_labels, progress=None, seed: int = 0):
    """``adra-method = "inverse"``: read the capture through the round's learned inverse, then
    (``adra-inverse-polish`` > 0) refine that image on the match by Levenberg–Marquardt,
    keeping the refinement only where it lowers the match.

    Returns the ``solver.Solution`` and the inverse's figures (held-out loss, label
    accuracy, pair and training seconds, whether it came from the cache).
    """
    from attacks.adra.solver import Solution, match_at

    if aux_images is None:
        raise ValueError("adra-method = 'inverse' needs the attacker's aux pool (Knowledge.aux_images)")
    report = progress or (lambda *a: None)
    report("inverse", 0, 1, None)
    aux_x = torch.as_tensor(aux_images).float()
    aux_y = torch.as_tensor(aux_labels).long()
    net, figures = InverseCache(s.adra_cache_dir or None).inverse(problem, aux_x, aux_y, settings_of(s, seed))
    images, logits = invert(net, problem)
    labels = logits.argmax(-1)
    match = match_at(problem, images, labels)
    report("inverse", 1, 1, match)
    best = Solution(images, labels, match, 1, 0)
    if s.adra_inverse_polish > 0:
        sol = polish(problem, s, images[None], labels, aux_images, report)
        figures["polish-match"] = sol.match
        if sol.match < match:
            best = Solution(sol.images, sol.labels, sol.match, 2, sol.iterations)
    figures["inverse-match"] = match
    return best, figures


def polish(problem, s, starts: torch.Tensor, labels: torch.Tensor, aux_images, report):
    """``adra-inverse-polish`` Levenberg–Marquardt iterations on the match from each start
    (H, K, B, C, h, w) under the reader's labels (K, B); the best polished ``solver.Solution``."""
    from attacks.adra.solver import LABEL_CONFIDENCE, _refine_lm, make_param

    dev, h = problem.victim.device, len(starts)
    one = problem.steps * problem.batch == 1
    fixed = labels.view(1, 1, 1).expand(h, 1, 1).to(dev) if one else None
    logits0 = None if one else (LABEL_CONFIDENCE * F.one_hot(labels, problem.classes).float()[None]
                                .expand(h, *labels.shape, problem.classes).to(dev))
    settings = replace(s, adra_iterations=s.adra_inverse_polish)
    return _refine_lm(problem, settings, make_param(problem, settings, aux_images), starts.to(dev), fixed, logits0,
                      report, aux_images)
