"""Differential privacy for local search: DP-SGD on α, and clipped, noised updates.

Two mechanisms, both framework-free (the Flower mods in ``clients/dp_mods.py`` only
switch them on and account what they spent):

* **DP-SGD on α** (example-level, over D^α). Every α step: Poisson-sample D^α with rate
  q = B/|D^α|; per-example gradients of the cross-entropy with respect to α only
  (``torch.func.vmap(grad(...))`` over ``functional_call``); clip each to L2 norm C;
  sum; add N(0, (zC)²) per coordinate; divide by the *expected* batch size qN = B (a
  fixed number, so the divisor leaks nothing). The data-independent L2 penalty on α
  (``alpha-l2``) is added after the noise, exactly.
* **Update clipping and noise** (client-level): Δ = sent − received over the chosen
  arrays, scaled to L2 norm ≤ C over the whole update (a zero update stays zero, no
  division by zero), plus N(0, σ²) per coordinate.

BatchNorm. The supernets normalise with batch statistics in train mode, so one example's
output depends on every other example of its batch and the per-example sensitivity
argument of DP-SGD does not hold for a batch forward (why Opacus refuses BatchNorm). In
private mode every example is forwarded *alone* under ``vmap``, with one of two
normalisations (``BATCHNORM_MODES``), both of which make the i-th clipped gradient a
function of example i only, so that adding or removing one example changes the clipped
sum by at most C (the textbook argument, exactly):

* ``running`` (default): BatchNorm normalises with its running statistics, as in eval
  mode. Those are estimated by the θ steps on D^θ only, never from D^α, so they are
  constants with respect to the protected examples. Cost: the α gradient is taken with
  the normalisation the model is evaluated with, not the batch statistics of the θ step.
* ``example``: BatchNorm normalises each example with its own statistics (instance
  statistics). Caveat measured here: behind the ``gap`` head with affine-free BatchNorm
  every op's output has zero spatial mean per example, so the logits are the same for
  every input and the α gradient vanishes (norms ~1e-8); use it with ``head = flatten``.

Either way the private α forward leaves the model's running statistics untouched, so
nothing computed from D^α leaves the client outside the noised gradient.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

# Keys the DP-SGD mod adds to the train ConfigRecord to switch local search into private mode.
RECORD_CLIP = "dp-sgd-clip"
RECORD_NOISE = "dp-sgd-noise-multiplier"
RECORD_SECURE = "dp-secure-rng"
RECORD_BATCHNORM = "dp-sgd-batchnorm"


# --------------------------------------------------------------------------- per-example maths


BATCHNORM_MODES = ("running", "example")


_MODULES: weakref.WeakKeyDictionary[torch.nn.Module, list[torch.nn.Module]] = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def _mode(model: torch.nn.Module, training: bool) -> Iterator[None]:
    """Every module in train (or eval) mode for the block, then each back to its own mode.

    The module list is walked once per model and the flag set in each module's ``__dict__``:
    ``model.train()`` on a supernet's ~20,000 modules cost ~0.9 s per call at P = 32, more
    than the private step's arithmetic (a supernet's structure never changes after building).
    """
    modules = _MODULES.get(model)
    if modules is None:
        modules = _MODULES[model] = list(model.modules())
    modes = [m.training for m in modules]
    for m in modules:
        m.__dict__["training"] = training
    try:
        yield
    finally:
        for module, flag in zip(modules, modes):
            module.__dict__["training"] = flag


def per_sample_grads(model: torch.nn.Module, names: Sequence[str], x: torch.Tensor, y: torch.Tensor,
                     batchnorm: str = "running") -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Per-example gradients of the cross-entropy with respect to the parameters ``names``.

    Each example is forwarded alone (batch of one) under ``vmap``; parameters not in
    ``names`` are constants; the model's buffers are not modified.

    Parameters
    ----------
    batchnorm : str
        ``running``: normalise with the running statistics (eval-mode BatchNorm).
        ``example``: normalise each example with its own statistics (train-mode
        BatchNorm on a batch of one). See the module docstring.

    Returns
    -------
    grads : dict
        ``{name: tensor of shape (B, *param.shape)}``.
    logits : torch.Tensor
        The per-example logits, shape (B, classes), detached.
    """
    if batchnorm not in BATCHNORM_MODES:
        raise ValueError(f"unknown batchnorm mode {batchnorm!r}; choose one of: {', '.join(BATCHNORM_MODES)}")
    try:  # by name, not by walking every parameter of the supernet
        trained = {n: model.get_parameter(n).detach() for n in names}
    except AttributeError:
        unknown = [n for n in names if not _has_parameter(model, n)]
        raise KeyError(f"per_sample_grads: the model has no parameters named {unknown}") from None
    batch = x.shape[0]
    # Only α (and, per example, BatchNorm's buffers) are swapped into the model: θ and the
    # running statistics stay the module's own tensors. functional_call over every tensor of
    # a supernet (thousands of per-edge parameters and buffers), with weight untying, cost
    # several times the step itself at P = 32 (docs/privacy.md, "Cost of DP-SGD").
    if batchnorm == "example":
        # Train-mode BatchNorm updates running statistics in place; under vmap those buffers
        # must be batched, so each example gets a throwaway copy and the model's stay as they were.
        buffers = {n: b.detach().unsqueeze(0).repeat(batch, *([1] * b.dim())) for n, b in model.named_buffers()}
        buffer_dim = 0
    else:  # eval-mode BatchNorm reads its running statistics and writes nothing: nothing to swap
        buffers, buffer_dim = {}, None

    def loss_one(p: dict[str, torch.Tensor], bufs: dict[str, torch.Tensor], xi: torch.Tensor,
                 yi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = functional_call(model, {**p, **bufs}, (xi.unsqueeze(0),), tie_weights=False)
        return F.cross_entropy(logits, yi.unsqueeze(0)), logits.squeeze(0)

    per_example = vmap(grad(loss_one, has_aux=True), in_dims=(None, buffer_dim, 0, 0))
    # no_grad: θ are constants of the α step; torch.func.grad still differentiates in α
    with _mode(model, training=batchnorm == "example"), torch.no_grad():
        grads, logits = per_example(trained, buffers, x, y)
    return grads, logits.detach()


def _has_parameter(model: torch.nn.Module, name: str) -> bool:
    try:
        model.get_parameter(name)
    except AttributeError:
        return False
    return True


def per_sample_norms(grads: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """L2 norm of each example's gradient over all tensors together, shape (B,)."""
    return torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in grads.values()))


def clip_factors(norms: torch.Tensor, clip: float) -> torch.Tensor:
    """min(1, C/‖g‖) without dividing by zero (a zero gradient keeps factor 1).

    Gradients within the bound keep a factor of exactly 1: ``C / max(‖g‖, C)`` alone can
    round to 1 + ulp when C is not representable in the norms' dtype.
    """
    return torch.where(norms <= clip, torch.ones_like(norms), clip / norms.clamp_min(clip))


def clipped_sum(grads: Mapping[str, torch.Tensor], clip: float) -> dict[str, torch.Tensor]:
    """Σ_i g_i · min(1, C/‖g_i‖): each example contributes at most C in L2 norm."""
    factors = clip_factors(per_sample_norms(grads), clip)
    return {n: torch.einsum("b,b...->...", factors, g) for n, g in grads.items()}


def add_gaussian_noise(tensors: Mapping[str, torch.Tensor], std: float,
                       generator: torch.Generator | None) -> dict[str, torch.Tensor]:
    """Each tensor plus N(0, std²) drawn independently per coordinate."""
    if std == 0:
        return dict(tensors)
    return {n: t + std * torch.randn(t.shape, generator=generator, device=t.device, dtype=t.dtype)
            for n, t in tensors.items()}


def dp_sgd_gradient(grads: Mapping[str, torch.Tensor], clip: float, noise_multiplier: float,
                    expected_batch_size: float, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
    """DP-SGD's gradient: (Σ_i clip_C(g_i) + N(0, (zC)²)) / B."""
    check_clip(clip, "clip")
    check_noise(noise_multiplier, "noise_multiplier")
    if expected_batch_size <= 0:
        raise ValueError(f"expected_batch_size must be > 0, got {expected_batch_size}")
    noisy = add_gaussian_noise(clipped_sum(grads, clip), noise_multiplier * clip, generator)
    return {n: g / expected_batch_size for n, g in noisy.items()}


# --------------------------------------------------------------------------- update level


def update_norm(update: Mapping[str, np.ndarray]) -> float:
    """L2 norm of a whole update (all arrays flattened together), in float64."""
    return math.sqrt(sum(float(np.sum(np.square(np.asarray(u, dtype=np.float64)))) for u in update.values()))


def clip_update(update: Mapping[str, np.ndarray], clip: float) -> tuple[dict[str, np.ndarray], float]:
    """Scale the update to L2 norm ≤ C; returns the clipped update and its original norm.

    A zero update is returned unchanged (factor 1): no division by zero.
    """
    check_clip(clip, "clip")
    norm = update_norm(update)
    factor = clip / max(norm, clip)
    return {k: np.asarray(u, dtype=np.float64) * factor for k, u in update.items()}, norm


def privatize_update(received: Mapping[str, np.ndarray], sent: Mapping[str, np.ndarray], keys: Sequence[str],
                     clip: float, noise_std: float, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], float]:
    """Clip Δ = sent − received over ``keys`` to norm C, add N(0, σ²), return new arrays.

    Arrays not in ``keys`` are returned as sent. Dtypes and shapes are kept. Returns the
    new arrays and the norm of Δ before clipping.
    """
    check_noise(noise_std, "noise_std")
    missing = [k for k in keys if k not in received or k not in sent]
    if missing:
        raise KeyError(f"privatize_update: arrays {missing[:5]} are missing from the received or the sent arrays")
    delta = {k: np.asarray(sent[k], dtype=np.float64) - np.asarray(received[k], dtype=np.float64) for k in keys}
    clipped, norm = clip_update(delta, clip)
    out = dict(sent)
    for k in keys:
        noisy = clipped[k] + (rng.normal(0.0, noise_std, clipped[k].shape) if noise_std > 0 else 0.0)
        value = np.asarray(received[k], dtype=np.float64) + noisy
        if k.endswith("running_var"):
            value = np.maximum(value, 0.0)  # post-processing: a variance stays a variance
        out[k] = value.astype(np.asarray(sent[k]).dtype)
    return out, norm


# --------------------------------------------------------------------------- private α rule


class PoissonSampler:
    """Poisson sampling of D^α: each example joins a step's batch with probability q.

    q = min(1, B/|D^α|); batches have random size with mean qN. This is the sampling
    the RDP/PRV analysis of the subsampled Gaussian assumes (shuffled fixed-size batches
    are not). ``rng`` replaces the caller's generator (secure mode: OS entropy).
    """

    def __init__(self, rng: np.random.Generator | None = None) -> None:
        self.rng = rng
        self.population = 0
        self.sample_rate = 0.0

    @property
    def expected_batch_size(self) -> float:
        return self.sample_rate * self.population

    def __call__(self, indices: np.ndarray, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
        indices = np.asarray(indices)
        if len(indices) == 0:
            raise ValueError("cannot sample batches from an empty set")
        self.population = len(indices)
        self.sample_rate = min(1.0, batch_size / len(indices))
        return self._draw(indices, self.rng or rng)

    def _draw(self, indices: np.ndarray, rng: np.random.Generator) -> Iterator[np.ndarray]:
        while True:
            yield indices[rng.random(len(indices)) < self.sample_rate]


class PrivateAlphaGradient:
    """DP-SGD α-gradient rule, a drop-in for ``fednas.search.ALPHA_GRADIENTS`` rules.

    Its ``sampler`` (Poisson) replaces the shuffled D^α batches of ``local_search``. After
    a search, :meth:`report` says what was spent: (z, q, steps) for the accountant.

    Parameters
    ----------
    clip : float
        C, the per-example L2 clipping norm (> 0).
    noise_multiplier : float
        z; the noise std is zC (>= 0; 0 clips without noise and gives ε = ∞).
    seed : int, optional
        Seeds the noise and the sampling (reproducible simulation). None: OS entropy
        (what a deployment must use: a seeded noise can be subtracted by whoever knows the seed).
    batchnorm : str
        How BatchNorm normalises in the private forward (``running`` or ``example``).
    """

    def __init__(self, clip: float, noise_multiplier: float, seed: int | None = None,
                 batchnorm: str = "running") -> None:
        if batchnorm not in BATCHNORM_MODES:
            raise ValueError(f"unknown batchnorm mode {batchnorm!r}; choose one of: {', '.join(BATCHNORM_MODES)}")
        self.batchnorm = batchnorm
        self.clip = check_clip(clip, "clip")
        self.noise_multiplier = check_noise(noise_multiplier, "noise_multiplier")
        self.seed = secrets.randbits(63) if seed is None else int(seed)
        self.sampler = PoissonSampler(np.random.default_rng(self.seed) if seed is None else None)
        self._generators: dict[str, torch.Generator] = {}
        self.steps = 0

    def _generator(self, device: torch.device) -> torch.Generator:
        key = str(device)
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[key]

    def __call__(self, model: Any, batch: tuple[torch.Tensor, torch.Tensor], ctx: Any) -> tuple[list[torch.Tensor], float, float]:
        x, y = batch
        named = model.named_arch_parameters()
        names = [n for n, _ in named]
        expected = self.sampler.expected_batch_size or float(ctx.settings.alpha_batch_size)
        if len(y):
            per_example, logits = per_sample_grads(model, names, x, y, self.batchnorm)
            loss = F.cross_entropy(logits, y).item()
            acc = (logits.argmax(1) == y).float().mean().item()
        else:  # an empty Poisson batch still takes a (pure noise) step
            per_example = {n: torch.zeros((0, *p.shape), device=p.device, dtype=p.dtype) for n, p in named}
            loss = acc = float("nan")
        grads = dp_sgd_gradient(per_example, self.clip, self.noise_multiplier, expected,
                                self._generator(named[0][1].device))
        l2 = getattr(ctx.settings, "alpha_l2", 0.0)
        out = [grads[n] + (2.0 * l2 * p.detach() if l2 > 0 else 0.0) for n, p in named]
        self.steps += 1
        return out, loss, acc

    def report(self) -> dict[str, float]:
        """The mechanism's parameters, as the DP-SGD mod accounts them."""
        return {
            "dp-sgd-clip": self.clip,
            "dp-sgd-noise-multiplier": self.noise_multiplier,
            "dp-sgd-sample-rate": self.sampler.sample_rate,
            "dp-sgd-expected-batch-size": self.sampler.expected_batch_size,
            "dp-sgd-steps": self.steps,
        }


def private_rule_from_record(record: Mapping[str, Any], seed: int) -> PrivateAlphaGradient | None:
    """The private rule the DP-SGD mod asked for in a train config, or None (plain search).

    ``seed`` is used unless the record asks for secure randomness (``dp-secure-rng``).
    """
    if RECORD_CLIP not in record:
        return None
    if RECORD_NOISE not in record:
        raise KeyError(f"train config has '{RECORD_CLIP}' but no '{RECORD_NOISE}'")
    secure = bool(record.get(RECORD_SECURE, False))
    return PrivateAlphaGradient(float(record[RECORD_CLIP]), float(record[RECORD_NOISE]), None if secure else seed,
                                str(record.get(RECORD_BATCHNORM, "running")))


def noise_seed(*parts: int) -> int:
    """A 63-bit seed from integers (e.g. run seed, round, partition, a tag)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


# --------------------------------------------------------------------------- checks


def check_clip(value: float, name: str) -> float:
    """A clipping norm must be a finite number > 0."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} (a clipping norm) must be a finite number > 0, got {value!r}")
    return float(value)


def check_noise(value: float, name: str) -> float:
    """A noise multiplier or standard deviation must be a finite number >= 0."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} (noise) must be a finite number >= 0, got {value!r}")
    return float(value)


def check_delta(value: float, name: str = "delta") -> float:
    """δ must lie strictly between 0 and 1."""
    if not (isinstance(value, (int, float)) and 0.0 < value < 1.0):
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    return float(value)
