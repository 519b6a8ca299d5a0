"""What the attacker knows about θ, and the θ it attacks with (the threat model's θ column).

ADRA needs the client's weights θ at the start of its round: the architecture gradient
depends on them strongly. Where they come from, in decreasing order of knowledge:

- ``wire``: the server's θ_t1, on the wire whenever weights are shared (FedNAS), with
  ``knows-weights = true``. Exact.
- ``init`` (``theta-prior = "init"``): the θ_0 the server itself initialised from the run's
  seed. Clients start from it, so it is exact in round 1 even when weights are never
  shared afterwards; in later rounds the client's θ has moved by its own local training,
  and θ_0 is a prior.
- ``shadow`` (``theta-prior = "shadow"``): θ_0 moved by simulating the client's earlier
  rounds of θ training (the known optimizer, learning rate, momentum, weight decay,
  clipping, local steps) on the attacker's own aux data, in the spirit of shadow models
  (Shokri et al. 2017) and of simulating the client's unknown local trajectory in FedAvg
  inversion (Dimitrov et al. 2022). ``surrogate-draws`` > 1 draws several trajectories
  (different aux batch orders) and averages the match over them.
- ``surrogate`` (``theta-prior = "surrogate"``, the paper's assumption): fresh draws from
  U(−bound, bound), knowing nothing but the init distribution; ``surrogate-draws`` of
  them, the match averaged over the draws (an expectation over θ).

The text of :attr:`ThetaChoice.knowledge` goes into every row of the leakage report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fednas.paradigms import get_paradigm
from fednas.spaces import Supernet, build_supernet

ThetaDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class ThetaChoice:
    """The θ draws an attack uses, and what they are, in words (the report's column)."""

    thetas: list[ThetaDict]
    knowledge: str
    exact: bool


def surrogate_theta(model: Supernet | None, bound: float, draws: int, seed: int,
                    weights: Sequence[tuple[str, torch.Tensor]] | None = None) -> list[ThetaDict]:
    """``draws`` surrogate θ from U(−bound, bound) (the paper's assumption), seeded.

    ``weights``: θ's named parameters (default the supernet's; another app's model gives its own).
    """
    gen = torch.Generator().manual_seed(seed)
    named = list(model.named_weight_parameters() if weights is None else weights)
    out = []
    for _ in range(draws):
        out.append({n: torch.empty_like(p).uniform_(-bound, bound, generator=gen) for n, p in named})
    return out


def server_init_theta(config: Any, spec: Any) -> ThetaDict:
    """The θ_0 the server initialised (the run's seed and space: public to the server)."""
    model = build_supernet(config.space, spec, config.run.seed)
    return {n: p.detach().clone() for n, p in model.named_weight_parameters()}


def shadow_theta(config: Any, spec: Any, search: Any, alpha: dict[str, torch.Tensor], rounds: int,
                 aux_x: torch.Tensor, aux_y: torch.Tensor, seed: int) -> ThetaDict:
    """θ_0 after ``rounds`` simulated rounds of the client's θ training on aux batches.

    Each round restarts the optimizer (as clients do) and takes ``local-steps`` steps of SGD
    with momentum, weight decay and gradient clipping; α is held at ``alpha`` (it moves by
    ~lr_α per step, far less than θ).
    """
    model = build_supernet(config.space, spec, config.run.seed)
    model.load_arrays(alpha)
    model.train()
    weights = model.weight_parameters()
    rng = np.random.default_rng(seed)
    steps = max(1, int(search.local_steps))
    size = min(int(search.batch_size), len(aux_x))
    for _ in range(rounds):
        opt = torch.optim.SGD(weights, lr=search.theta_lr, momentum=search.theta_momentum,
                              weight_decay=search.theta_weight_decay)
        for _ in range(steps):
            idx = torch.as_tensor(rng.choice(len(aux_x), size, replace=False))
            loss = F.cross_entropy(model(aux_x[idx]), aux_y[idx])
            for p, g in zip(weights, torch.autograd.grad(loss, weights)):
                p.grad = g
            if search.theta_grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(weights, search.theta_grad_clip)
            opt.step()
    return {n: p.detach().clone() for n, p in model.named_weight_parameters()}


def _walk(config: Any, spec: Any, search: Any, alpha: dict[str, torch.Tensor], theta: ThetaDict, steps: int,
          gradient: Callable[[torch.nn.Module, list[torch.Tensor]], Sequence[torch.Tensor]]) -> list[ThetaDict]:
    """θ at each of ``steps`` α steps: ``theta``, then moved by the client's θ optimizer (SGD with
    momentum, weight decay, clipping) on ``gradient(model, weights)`` before each further step."""
    model = build_supernet(config.space, spec, config.run.seed)
    model.load_arrays(alpha)
    named = model.named_weight_parameters()
    with torch.no_grad():
        for n, p in named:
            p.copy_(torch.as_tensor(theta[n], dtype=p.dtype))
    model.train()
    weights = [p for _, p in named]
    opt = torch.optim.SGD(weights, lr=search.theta_lr, momentum=search.theta_momentum,
                          weight_decay=search.theta_weight_decay)
    path = [{n: p.detach().clone() for n, p in named}]
    for _ in range(steps - 1):
        for p, g in zip(weights, gradient(model, weights)):
            p.grad = g
        if search.theta_grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(weights, search.theta_grad_clip)
        opt.step()
        path.append({n: p.detach().clone() for n, p in named})
    return path


def theta_path(config: Any, spec: Any, search: Any, alpha: dict[str, torch.Tensor], theta: ThetaDict, steps: int,
               aux_x: torch.Tensor, aux_y: torch.Tensor, seed: int) -> list[ThetaDict]:
    """θ at each of the client's ``steps`` α steps: ``theta`` first, then moved by the client's θ
    optimizer (SGD with momentum, weight decay, clipping) on the aux pool's mean gradient.

    The client's θ step between two α steps uses a D^θ batch the attacker never sees; the
    aux pool's mean gradient over batches of the client's size (the BatchNorm statistics of
    its batches) is the expected step on such a batch: a population estimate, from up to
    ``PATH_IMAGES`` seeded aux images. α is held at ``alpha``.
    """
    if len(aux_x) > PATH_IMAGES:
        keep = torch.randperm(len(aux_x), generator=torch.Generator().manual_seed(seed))[:PATH_IMAGES]
        aux_x, aux_y = aux_x[keep], aux_y[keep]
    size = max(1, int(search.batch_size))

    def mean_gradient(model: torch.nn.Module, weights: list[torch.Tensor]) -> list[torch.Tensor]:
        total = [torch.zeros_like(p) for p in weights]
        for i in range(0, len(aux_x), size):  # batches of the client's size: its BatchNorm statistics
            loss = F.cross_entropy(model(aux_x[i : i + size]), aux_y[i : i + size], reduction="sum") / len(aux_x)
            total = [t + g for t, g in zip(total, torch.autograd.grad(loss, weights))]
        return total

    return _walk(config, spec, search, alpha, theta, steps, mean_gradient)


def sampled_theta_paths(config: Any, spec: Any, search: Any, alpha: dict[str, torch.Tensor], theta: ThetaDict,
                        steps: int, aux_x: torch.Tensor, aux_y: torch.Tensor, seed: int,
                        draws: int) -> list[list[ThetaDict]]:
    """``draws`` paths of θ over the client's ``steps`` α steps, each moved as the client moves
    it: one θ step on a random aux batch of the client's ``batch-size`` between two α steps.

    Where :func:`theta_path` takes the expected step, these paths draw the batch, so the
    spread of the client's own path (its D^θ batches are unknown) is in them: an inverse
    trained across them learns what survives not knowing the batches. α is held at ``alpha``.
    """
    gen = torch.Generator().manual_seed(seed)
    size = min(max(1, int(search.batch_size)), len(aux_x))

    def batch_gradient(model: torch.nn.Module, weights: list[torch.Tensor]) -> Sequence[torch.Tensor]:
        idx = torch.randperm(len(aux_x), generator=gen)[:size]
        return torch.autograd.grad(F.cross_entropy(model(aux_x[idx]), aux_y[idx]), weights)

    return [_walk(config, spec, search, alpha, theta, steps, batch_gradient) for _ in range(draws)]


PATH_IMAGES = 256  # aux images whose mean gradient moves θ between α steps


THETA_PRIORS: dict[str, Callable[..., tuple[list[ThetaDict], str, bool]]] = {}


def _prior(name: str):
    def register(fn):
        THETA_PRIORS[name] = fn
        return fn
    return register


@_prior("surrogate")
def _surrogate(ctx: dict[str, Any]) -> tuple[list[ThetaDict], str, bool]:
    s = ctx["settings"]
    thetas = surrogate_theta(None, ctx["config"].space.theta_init_bound, s.surrogate_draws, ctx["seed"],
                             ctx["weights"])
    return thetas, f"surrogate U(±b) ×{s.surrogate_draws}", False


@_prior("init")
def _init(ctx: dict[str, Any]) -> tuple[list[ThetaDict], str, bool]:
    r = ctx["round"]
    exact = r == 1
    return [server_init_theta(ctx["config"], ctx["spec"])], (
        "server θ_0 (exact: round 1)" if exact else f"server θ_0 (prior: round {r})"), exact


@_prior("shadow")
def _shadow(ctx: dict[str, Any]) -> tuple[list[ThetaDict], str, bool]:
    r, s = ctx["round"], ctx["settings"]
    if r == 1:
        return [server_init_theta(ctx["config"], ctx["spec"])], "server θ_0 (exact: round 1)", True
    if ctx["aux_x"] is None:
        raise ValueError("theta-prior = 'shadow' needs the attacker's aux pool (Knowledge.aux_images)")
    thetas = [shadow_theta(ctx["config"], ctx["spec"], ctx["search"], ctx["alpha"], r - 1, ctx["aux_x"], ctx["aux_y"],
                           ctx["seed"] + d) for d in range(s.surrogate_draws)]
    return thetas, f"shadow θ ({r - 1} rounds on aux) ×{s.surrogate_draws}", False


def paradigm_of(config: Any) -> str:
    """The NAS paradigm a run's config names (``darts`` where it names none)."""
    return getattr(getattr(config, "paradigm", None), "paradigm", "darts")


def searches_supernet(config: Any) -> bool:
    """Whether the run's paradigm searches the configured supernet itself, so that its θ_0 and a
    shadow trajectory of θ can be rebuilt from the config and seed."""
    return get_paradigm(paradigm_of(config)).supernet_search


def attacker_theta(capture: Any, knowledge: Any, settings: Any, search: Any,
                   weights: Sequence[tuple[str, torch.Tensor]], seed: int) -> ThetaChoice:
    """The θ the attack uses for ``capture`` (see the module docstring).

    ``weights``: the replica's named θ parameters (their names and shapes).
    """
    if settings.knows_weights and capture.theta_t1:
        return ThetaChoice([{k: torch.as_tensor(v) for k, v in capture.theta_t1.items()}], "wire θ_t1", True)
    try:
        prior = THETA_PRIORS[settings.theta_prior]
    except KeyError:
        raise ValueError(f"unknown theta-prior {settings.theta_prior!r}; "
                         f"choose one of: {', '.join(THETA_PRIORS)}") from None
    if not searches_supernet(knowledge.config) and settings.theta_prior != "surrogate":
        raise ValueError(f"theta-prior = {settings.theta_prior!r} rebuilds the darts supernet's θ_0; paradigm "
                         f"{paradigm_of(knowledge.config)!r} takes theta-prior = 'surrogate'")
    if knowledge.target is not None and settings.theta_prior != "surrogate":
        # θ_0 and its shadow trajectory are rebuilt from this project's supernet and seed
        raise ValueError(f"theta-prior = {settings.theta_prior!r} needs this project's supernet; another app's "
                         "captures take theta-prior = 'surrogate'")
    aux_x = None if knowledge.aux_images is None else torch.as_tensor(knowledge.aux_images)
    aux_y = None if knowledge.aux_labels is None else torch.as_tensor(knowledge.aux_labels)
    ctx = {"settings": settings, "config": knowledge.config, "spec": knowledge.spec, "weights": weights, "seed": seed,
           "round": int(capture.round), "search": search, "aux_x": aux_x, "aux_y": aux_y,
           "alpha": {k: torch.as_tensor(v) for k, v in capture.alpha_t1.items()}}
    thetas, words, exact = prior(ctx)
    return ThetaChoice(thetas, words, exact)
