"""Shadow models: the attacker's imitations of the target, trained on its own data.

Each shadow trains on a random half of the attacker's data ("in") and never sees the
other half ("out"); the halves are balanced as in LiRA: every sample is "in" for half of
the shadows. A shadow mimics the target's recipe (:class:`Mimicry`): as many passes over
its training data as the target's weights made, as many search steps as a client of the
target made (or ``amia-shadow-steps`` for both), the run's optimiser settings and, when the
attacker knows them, the defenses (input noise, α penalty, distillation).

Kinds (``SHADOW_KINDS``):

- fixed architectures (``resnet18``, ``resnet50``, ``cnn``), trained with SGD;
- ``searched`` (the paper's improved AMIA): the run's supernet, searched with
  :func:`fednas.search.local_search` on the shadow's own data split into D^θ and D^α, and,
  when the target is the retrained derived network, its own derived network retrained.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from attacks.amia.api import restrict
from attacks.amia.data import AttackerData
from attacks.amia.defenses import Distillation, distill
from attacks.amia.models import derived_network, fixed_architecture
from attacks.amia.paradigms import searched_shadow
from attacks.amia.target import make_student
from attacks.amia.training import Recipe, accuracy, predict_proba, train_classifier
from fednas.data import ClientSplit, ImageSet
from fednas.paradigms import paradigm_of
from fednas.search import local_search
from fednas.spaces import build_supernet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Mimicry:
    """What the attacker copies of the target's training.

    ``passes``: epochs the target's weights made over their data, carried over to the
    shadow's smaller set (weights train by epochs). ``search_steps``: local steps a client
    of the target searched for (α's Adam trajectory is counted in steps, whatever the data
    size, so a searched shadow searches as many). ``steps`` > 0 overrides both.
    """

    cfg: Any  # the run's Config (space, search settings, alpha-fraction)
    target: str  # "supernet" or "derived"
    passes: float
    recipe: Recipe  # optimiser settings and input noise (defense known) of the shadows
    alpha_l2: float = 0.0  # the LR defense, for searched shadows
    md: Distillation | None = None
    steps: int = 0
    device: str = "cpu"
    search_steps: int = 1

    def steps_for(self, n: int) -> int:
        """SGD steps of a shadow's weights trained on ``n`` samples."""
        if self.steps > 0:
            return self.steps
        return max(1, math.ceil(self.passes * n / self.recipe.batch_size))

    def search_steps_for(self) -> int:
        """Local steps of a searched shadow's DARTS search."""
        return self.steps if self.steps > 0 else max(1, self.search_steps)


@dataclass
class ShadowBank:
    """Shadows of one kind, and their outputs in the API's format."""

    kind: str
    in_mask: np.ndarray  # (shadows, n) bool: sample j trained shadow s
    probs: np.ndarray  # (shadows, n, classes) on the attacker's data
    labels: np.ndarray  # (n,)
    models: list[nn.Module] = field(default_factory=list, repr=False)
    info: dict[str, Any] = field(default_factory=dict)

    def outputs_on(self, x: torch.Tensor, output: str, top_k: int, device: str = "cpu") -> np.ndarray:
        """(shadows, N, classes): every shadow's API-format output on ``x``."""
        return np.stack([restrict(predict_proba(m, x, device), output, top_k) for m in self.models])


def balanced_masks(n: int, k: int, seed: int) -> np.ndarray:
    """(k, n) membership of n samples in k shadows: each sample in k/2 of them (odd k:
    alternately floor and ceil), each shadow holding about half of the samples."""
    rng = np.random.default_rng([seed, 81])
    if k == 1:
        return (rng.permutation(n) < n // 2)[None]
    ranks = np.argsort(rng.random((k, n)), axis=0).argsort(axis=0)
    count = k // 2 + (np.arange(n) % 2) * (k % 2)
    return ranks < count[None]


def _fixed(kind: str) -> Callable[..., nn.Module]:
    def train(x: torch.Tensor, y: torch.Tensor, mim: Mimicry, spec: Any, seed: int) -> nn.Module:
        model = fixed_architecture(kind, spec, seed)
        train_classifier(model, x, y, mim.recipe.with_steps(mim.steps_for(len(y))), seed, device=mim.device)
        return model

    return train


def _searched(x: torch.Tensor, y: torch.Tensor, mim: Mimicry, spec: Any, seed: int) -> nn.Module:
    cfg = mim.cfg
    perm = np.random.default_rng([seed, 82]).permutation(len(y))
    n_alpha = max(1, int(round(len(y) * cfg.data.alpha_fraction)))
    split = ClientSplit(0, np.sort(perm[n_alpha:]), np.sort(perm[:n_alpha]), np.zeros(0, dtype=np.int64))
    settings = replace(cfg.search, local_steps=mim.search_steps_for(), local_epochs=0,
                       alpha_l2=mim.alpha_l2)
    # the attacker searches as the target did (its paradigm is public): the configured supernet
    # in one local search, or the paradigm's own rounds
    if paradigm_of(cfg).supernet_search:
        model = build_supernet(cfg.space, spec, seed).to(mim.device)
        local_search(model, ImageSet("attacker", x, y, spec.num_classes), split, settings, [seed, 83],
                     mim.device, input_noise=mim.recipe.noise)
        genotype = model.genotype(cfg.space.genotype_k)
    else:
        model, genotype = searched_shadow(cfg, x, y, split, mim.search_steps_for(), spec, seed, mim.device,
                                          mim.recipe.noise)
    if mim.target == "supernet":
        return model.eval()
    derived = derived_network(genotype, cfg.space, spec, seed)
    on = split.theta if cfg.amia.amia_retrain_on == "theta" else perm
    train_classifier(derived, x[on], y[on], mim.recipe.with_steps(mim.steps_for(len(on))), seed, device=mim.device)
    return derived


SHADOW_KINDS: dict[str, Callable[..., nn.Module]] = {
    "resnet18": _fixed("resnet18"),
    "resnet50": _fixed("resnet50"),
    "cnn": _fixed("cnn"),
    "searched": _searched,
}


def train_shadows(kind: str, data: AttackerData, spec: Any, mim: Mimicry, num: int, output: str, top_k: int,
                  seed: int) -> ShadowBank:
    """Train ``num`` shadows of ``kind`` on balanced halves of the attacker's data.

    With MD known, a fifth of the attacker's data is set aside as the shadows' reference
    set: each shadow is distilled on it and the bank covers the rest.
    """
    try:
        make = SHADOW_KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown shadow kind {kind!r}; choose one of: {', '.join(SHADOW_KINDS)}") from None
    pool = np.arange(len(data))
    ref = np.zeros(0, dtype=np.int64)
    if mim.md is not None:
        perm = np.random.default_rng([seed, 84]).permutation(len(data))
        ref, pool = np.sort(perm[: len(data) // 5]), np.sort(perm[len(data) // 5 :])
    masks = balanced_masks(len(pool), num, seed)
    models, fits, outputs = [], [], []
    for s in range(num):
        s_seed = seed * 1000 + 17 * s + 1
        idx = pool[masks[s]]
        model = make(data.x[idx], data.y[idx], mim, spec, s_seed)
        if mim.md is not None:
            teacher = model
            model, _ = distill(teacher, lambda: make_student(mim.cfg, teacher, spec, s_seed + 1), data.x[ref],
                               mim.md, mim.recipe, s_seed, mim.device)
        full = predict_proba(model, data.x[pool], mim.device)
        y = data.y[pool].numpy()
        fits.append((accuracy(full[masks[s]], y[masks[s]]), accuracy(full[~masks[s]], y[~masks[s]])))
        models.append(model)
        outputs.append(restrict(full, output, top_k))
        log.info("shadow %s %d/%d: train acc %.3f, test acc %.3f", kind, s + 1, num, *fits[-1])
    probs = np.stack(outputs)
    info = {"shadows": num, "train-size": int(masks.sum(1).mean()), "train-acc": float(np.mean([f[0] for f in fits])),
            "test-acc": float(np.mean([f[1] for f in fits])), "md-reference": int(len(ref))}
    return ShadowBank(kind, masks, probs, data.y[pool].numpy(), models, info)

