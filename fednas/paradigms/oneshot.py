"""What ENAS and SMASH share: one network whose weights serve every sampled architecture.

Both train shared weights on D^θ with a freshly sampled architecture at every step
(:func:`train_shared`), rank the server's candidates on D^α
(:mod:`fednas.paradigms.ranking`) and serve the best one (:class:`OneShot`). They differ in
how an architecture is drawn (ENAS's controller, SMASH's uniform draw), in the optimizer
(ENAS's SGD with the θ settings, SMASH's Adam) and in what else they send.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fednas.data import ClientSplit, ImageSet, batches
from fednas.paradigms.arch import Arch, arch_genotype
from fednas.paradigms.base import ALPHA_PREFIX, Arrays, ClientRound, Paradigm, as_tensors, split_state
from fednas.paradigms.darts import load_matching
from fednas.paradigms.ranking import SCORES, best_candidate, candidates_of, rank_metrics, score_candidates
from fednas.spaces import Genotype, InputSpec, Supernet


def train_shared(model: Supernet, dataset: ImageSet, split: ClientSplit, settings: Any, steps: int,
                 rng: np.random.Generator, device: Any, input_noise: Any, optimizer: torch.optim.Optimizer,
                 draw: Callable[[], Arch], params: list[torch.nn.Parameter]) -> dict[str, float]:
    """``steps`` steps on D^θ batches, each with the architecture ``draw()`` returns; ``params``
    get the gradients (clipped to ``theta-grad-clip``), ``optimizer`` steps them."""
    it = batches(split.theta, settings.batch_size, rng)
    loss_sum = acc_sum = 0.0
    for _ in range(steps):
        idx = next(it)
        x = dataset.x[idx]
        if input_noise is not None:
            x = input_noise(x, idx, rng)
        x, y = x.to(device), dataset.y[idx].to(device)
        logits = model(x, draw())
        loss = F.cross_entropy(logits, y)
        for p, g in zip(params, torch.autograd.grad(loss, params, allow_unused=True)):
            p.grad = g if g is not None else torch.zeros_like(p)  # ops the architecture skipped
        if settings.theta_grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, settings.theta_grad_clip)
        optimizer.step()
        loss_sum += loss.item()
        acc_sum += (logits.argmax(1) == y).float().mean().item()
    return {"theta-loss": loss_sum / max(steps, 1), "theta-acc": acc_sum / max(steps, 1)}


class OneShot(Paradigm):
    """A paradigm whose final architecture is the best-scored candidate of the server state."""

    @abc.abstractmethod
    def build(self, cfg: Any, spec: InputSpec) -> Supernet:
        """The run's seeded network (its ``forward(x, arch)`` runs one architecture)."""

    def load(self, cfg: Any, spec: InputSpec, arrays: Arrays, local_theta: Arrays | None = None) -> tuple[Supernet, dict]:
        """The network with the arrays (and a client's own θ) loaded, and the server state."""
        model_arrays, state = split_state(arrays)
        model = self.build(cfg, spec)
        load_matching(model, local_theta)
        model.load_arrays(as_tensors({k: v for k, v in model_arrays.items() if k != SCORES}))
        return model, state

    def ranked_reply(self, cfg: Any, model: Supernet, arrays: Arrays, dataset: ImageSet, split: ClientSplit,
                     device: Any, metrics: dict[str, Any], audit: dict[str, Any], t0: float,
                     extra: Mapping[str, torch.Tensor] | None = None) -> ClientRound:
        """Score the candidates on D^α and build the reply: architecture state, scores, θ when shared."""
        archs = candidates_of(split_state(arrays)[1], cfg.space.dag_nodes, cfg.space.genotype_k)
        scores = score_candidates(model, model, archs, dataset.x[split.alpha].to(device),
                                  dataset.y[split.alpha].to(device))
        sent_theta = any(not k.startswith(ALPHA_PREFIX) for k in split_state(arrays)[0])
        theta = dict(model.weight_state())
        reply = {**model.arch_state(), **(extra or {}), SCORES: torch.as_tensor(scores, dtype=torch.float32),
                 **(theta if sent_theta else {})}
        metrics = {**metrics, **rank_metrics(scores), "num-examples": int(len(split.theta) + len(split.alpha)),
                   "train-seconds": time.perf_counter() - t0}
        return ClientRound(reply, metrics, {**audit, "ranked-on": "all of D^alpha"}, {} if sent_theta else theta)

    def model(self, cfg: Any, spec: InputSpec, arrays: Arrays) -> Supernet:
        model, _ = self.load(cfg, spec, arrays)
        model.arch = best_candidate(arrays, cfg.space.dag_nodes, cfg.space.genotype_k)[0]
        return model.eval()

    def genotype(self, cfg: Any, spec: InputSpec, arrays: Arrays) -> Genotype:
        return arch_genotype(best_candidate(arrays, cfg.space.dag_nodes, cfg.space.genotype_k)[0])
