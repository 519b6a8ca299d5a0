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
import torch.nn.functional as F

from fednas.data import ClientSplit, ImageSet, batches
from fednas.paradigms.arch import arch_genotype, random_arch
from fednas.paradigms.base import ALPHA_PREFIX, Arrays, Paradigm, as_tensors, split_state
from fednas.paradigms.darts import load_matching
from fednas.paradigms.hypernet import SmashDag
from fednas.paradigms.ranking import SCORES, best_candidate, candidates_of, candidates_state, rank_metrics, score_candidates
from fednas.search import num_local_steps
from fednas.spaces import Genotype, InputSpec, init_weights

BETAS, EPS, WEIGHT_DECAY = (0.5, 0.999), 1e-4, 1e-4  # the reference's Adam
CANDIDATE_TAG = 0x5A5


def build_smash(cfg: Any, spec: InputSpec) -> SmashDag:
    s = cfg.space
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.run.seed)
        model = SmashDag(spec, s.nodes, s.channels, s.activation, s.head, cfg.paradigm.smash_hyper_channels)
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


class Smash(Paradigm):
    """SMASH in the dag space (module docstring)."""

    name = "smash"

    def candidates(self, cfg: Any) -> list:
        rng = np.random.default_rng([cfg.run.seed, CANDIDATE_TAG])
        return [random_arch(cfg.space.nodes, cfg.fed.genotype_k, rng) for _ in range(cfg.paradigm.smash_candidates)]

    def initial_arrays(self, cfg: Any, spec: InputSpec) -> dict[str, Any]:
        model = build_smash(cfg, spec)
        arrays = {SCORES: torch.zeros(cfg.paradigm.smash_candidates)}
        if cfg.search.share_weights:
            arrays.update(model.weight_state())
        return {**arrays, **candidates_state(self.candidates(cfg), cfg.fed.genotype_k)}

    def _load(self, cfg: Any, spec: InputSpec, arrays: Arrays, local_theta: Arrays | None = None):
        model_arrays, state = split_state(arrays)
        model = build_smash(cfg, spec)
        load_matching(model, local_theta)
        model.load_arrays(as_tensors({k: v for k, v in model_arrays.items() if k != SCORES}))
        return model, state

    def client_round(self, cfg: Any, settings: Any, arrays: Arrays, dataset: ImageSet, split: ClientSplit, *,
                     seed: Any, device: torch.device | str = "cpu", local_theta: Arrays | None = None,
                     alpha_gradient: Any = None, input_noise: Any = None, partition_id: int = 0,
                     server_round: int = 0) -> Any:
        from fednas.federated import ClientRound

        t0 = time.perf_counter()
        model, state = self._load(cfg, dataset.spec, arrays, local_theta)
        model = model.to(device).train()
        rng = np.random.default_rng(seed)
        opt = smash_optimizer(model, cfg.paradigm.smash_lr)
        steps = num_local_steps(settings, len(split.theta))
        it = batches(split.theta, settings.batch_size, rng)
        loss_sum = acc_sum = 0.0
        for _ in range(steps):
            idx = next(it)
            x = dataset.x[idx]
            if input_noise is not None:
                x = input_noise(x, idx, rng)
            x, y = x.to(device), dataset.y[idx].to(device)
            logits = model(x, random_arch(cfg.space.nodes, cfg.fed.genotype_k, rng))
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if settings.theta_grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), settings.theta_grad_clip)
            opt.step()
            loss_sum += loss.item()
            acc_sum += (logits.argmax(1) == y).float().mean().item()
        archs = candidates_of(state, cfg.space.nodes, cfg.fed.genotype_k)
        scores = score_candidates(model, model, archs, dataset.x[split.alpha].to(device),
                                  dataset.y[split.alpha].to(device))
        sent_theta = any(not k.startswith(ALPHA_PREFIX) for k in split_state(arrays)[0])
        theta = dict(model.weight_state())
        reply = {SCORES: torch.as_tensor(scores, dtype=torch.float32), **(theta if sent_theta else {})}
        metrics = {"theta-loss": loss_sum / max(steps, 1), "theta-acc": acc_sum / max(steps, 1),
                   **rank_metrics(scores), "num-examples": int(len(split.theta) + len(split.alpha)),
                   "local-steps": steps, "train-seconds": time.perf_counter() - t0}
        audit = {"partition-id": partition_id, "server-round": server_round, "alpha-steps": 1,
                 "alpha-batch-size": int(len(split.alpha)), "alpha-indices": [int(i) for i in split.alpha],
                 "alpha-step-sizes": [int(len(split.alpha))], "ranked-on": "all of D^alpha"}
        return ClientRound(reply, metrics, audit, {} if sent_theta else theta)

    def model(self, cfg: Any, spec: InputSpec, arrays: Arrays) -> SmashDag:
        model, _ = self._load(cfg, spec, arrays)
        model.arch = best_candidate(arrays, cfg.space.nodes, cfg.fed.genotype_k)[0]
        return model.eval()

    def genotype(self, cfg: Any, spec: InputSpec, arrays: Arrays) -> Genotype:
        return arch_genotype(best_candidate(arrays, cfg.space.nodes, cfg.fed.genotype_k)[0])
