"""SMASH, federated: clients train the hypernetwork, their validation scores rank the candidates.

The reference (ajbrock/SMASH) trains one network whose weights a hypernetwork writes for
a random architecture drawn anew for every batch (Adam, lr 1e-3, betas (0.5, 0.999),
eps 1e-4, weight decay 1e-4 outside the hypernetwork), then samples 500 architectures,
scores each with its generated weights on validation data and trains the best.

No architecture parameter is learnt. A client's round: ``local-steps`` steps on D^θ, each
with a fresh uniform architecture (:func:`fednas.paradigms.arch.random_arch`); then the
``smash-candidates`` candidates (drawn once from the run's seed, in the server state)
scored on its D^α. It replies the scores (``alpha_scores``: the only architecture-level
state that exists) and, when shared, the hypernetwork and the freely learnt weights.
The candidate with the best mean score after the last round is the architecture.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from fednas.data import ClientSplit, ImageSet
from fednas.paradigms.arch import random_arch
from fednas.paradigms.base import Arrays, ClientRound, refuse_proximal
from fednas.paradigms.hypernet import SmashDag
from fednas.paradigms.oneshot import OneShot, train_shared
from fednas.paradigms.ranking import SCORES, candidates_state
from fednas.search import num_local_steps
from fednas.spaces import InputSpec, init_weights

BETAS, EPS, WEIGHT_DECAY = (0.5, 0.999), 1e-4, 1e-4  # the reference's Adam
CANDIDATE_TAG = 0x5A5


def build_smash(cfg: Any, spec: InputSpec) -> SmashDag:
    s = cfg.space
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.run.seed)
        model = SmashDag(spec, s.dag_nodes, s.channels, s.activation, s.head, cfg.paradigm.smash_hyper_channels)
    init_weights(model, s.theta_init, s.theta_init_bound, 0.0, torch.Generator().manual_seed(cfg.run.seed + 1))
    with torch.no_grad():  # the hypernetwork keeps torch's init: its outputs are weights, not inputs
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.run.seed + 2)
            for m in model.hyper.net:
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
            model.hyper.z.normal_()
    return model


def smash_optimizer(model: SmashDag, lr: float) -> torch.optim.Optimizer:
    hyper = set(id(p) for p in model.hyper.parameters())
    rest = [p for p in model.parameters() if id(p) not in hyper]
    return torch.optim.Adam([{"params": rest, "weight_decay": WEIGHT_DECAY},
                             {"params": list(model.hyper.parameters()), "weight_decay": 0.0}],
                            lr=lr, betas=BETAS, eps=EPS)


class Smash(OneShot):
    """SMASH in the dag space (module docstring)."""

    name = "smash"

    def build(self, cfg: Any, spec: InputSpec) -> SmashDag:
        return build_smash(cfg, spec)

    def candidates(self, cfg: Any) -> list:
        rng = np.random.default_rng([cfg.run.seed, CANDIDATE_TAG])
        return [random_arch(cfg.space.dag_nodes, cfg.space.genotype_k, rng) for _ in range(cfg.paradigm.smash_candidates)]

    def initial_arrays(self, cfg: Any, spec: InputSpec) -> dict[str, Any]:
        model = build_smash(cfg, spec)
        arrays = {SCORES: torch.zeros(cfg.paradigm.smash_candidates)}
        if cfg.search.share_weights:
            arrays.update(model.weight_state())
        return {**arrays, **candidates_state(self.candidates(cfg), cfg.space.genotype_k)}

    def client_round(self, cfg: Any, settings: Any, arrays: Arrays, dataset: ImageSet, split: ClientSplit, *,
                     seed: Any, device: torch.device | str = "cpu", local_theta: Arrays | None = None,
                     alpha_gradient: Any = None, input_noise: Any = None, partition_id: int = 0,
                     server_round: int = 0, proximal_mu: float | None = None) -> ClientRound:
        refuse_proximal(self, proximal_mu)
        t0 = time.perf_counter()
        model, _ = self.load(cfg, dataset.spec, arrays, local_theta)
        model = model.to(device).train()
        rng = np.random.default_rng(seed)
        steps = num_local_steps(settings, len(split.theta))
        metrics = train_shared(model, dataset, split, settings, steps, rng, device, input_noise,
                               smash_optimizer(model, cfg.paradigm.smash_lr),
                               lambda: random_arch(cfg.space.dag_nodes, cfg.space.genotype_k, rng), list(model.parameters()))
        audit = {"partition-id": partition_id, "server-round": server_round, "alpha-steps": 1,
                 "alpha-batch-size": int(len(split.alpha)), "alpha-indices": [int(i) for i in split.alpha],
                 "alpha-batch-sizes": [int(len(split.alpha))]}
        return self.ranked_reply(cfg, model, arrays, dataset, split, device, {**metrics, "local-steps": steps}, audit, t0)
