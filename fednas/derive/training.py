"""Training a derived network from scratch: FedAvg over the run's clients, or centrally.

Real FedAvg, in one process (no Flower needed: the clients' partitions are deterministic
from the run's config): every round each client starts from the global weights, makes
``derive-local-epochs`` passes over its data with SGD (momentum 0.9, weight decay 3e-4,
gradient clip 5, a fresh momentum buffer per round), and the server averages the weights
by sample count. The learning rate follows DARTS's cosine schedule over the rounds;
drop-path rises linearly to ``derive-drop-path``; the auxiliary head's loss is added with
``derive-auxiliary-weight``. After every aggregation the BatchNorm statistics are pooled
from the clients' recalibration passes under the new global weights (as the search's
``bn-statistics = "pooled"``), so eval-mode accuracy describes the averaged network.
``central`` trains one network on the union of the clients' data, ``derive-rounds`` epochs.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fednas.batchnorm import calibration_batches, pool_statistics, recalibrate, statistics_state
from fednas.config import Config
from fednas.data import ImageSet, batches, make_pools, partition_clients
from fednas.search import evaluate
from fednas.stats import weighted_mean
from fednas.spaces.derived import DerivedNetwork

MOMENTUM, WEIGHT_DECAY, GRAD_CLIP = 0.9, 3e-4, 5.0


@dataclass(frozen=True)
class Task:
    """What a derived network is trained and judged on: each client's training indices
    (from the run's own partition) and the server's test pool."""

    dataset: ImageSet
    clients: list[np.ndarray]
    test: np.ndarray


def task_from_config(cfg: Config, dataset: ImageSet, num_clients: int) -> Task:
    """The clients' D^θ (and D^α with ``derive-data = "all"``) and the test pool, as the run cut them."""
    splits = partition_clients(dataset, cfg.data, cfg.run.seed, num_clients)
    take = (lambda s: s.theta) if cfg.derive.derive_data == "theta" else (lambda s: np.concatenate([s.theta, s.alpha]))
    return Task(dataset, [np.sort(take(s)) for s in splits], make_pools(len(dataset), cfg.data, cfg.run.seed).test)


def cosine_lr(base: float, step: int, total: int) -> float:
    """DARTS's cosine annealing from ``base`` towards 0 over ``total`` steps."""
    return 0.5 * base * (1.0 + math.cos(math.pi * step / total))


def train_epochs(model: DerivedNetwork, data: ImageSet, indices: np.ndarray, epochs: int, settings: Any, lr: float,
                 seed: Sequence[int], device: torch.device | str) -> None:
    """``epochs`` passes over ``indices`` (shuffled, seeded), in place, with the auxiliary loss."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    rng = np.random.default_rng(list(seed))
    steps = epochs * max(1, len(indices) // settings.derive_batch_size)
    model.train()
    for _, idx in zip(range(steps), batches(indices, settings.derive_batch_size, rng)):
        x, y = data.x[idx].to(device), data.y[idx].to(device)
        logits, aux = model.forward_with_aux(x)
        loss = F.cross_entropy(logits, y)
        if aux is not None and settings.derive_auxiliary_weight > 0:
            loss = loss + settings.derive_auxiliary_weight * F.cross_entropy(aux, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        opt.step()


def _average(states: Sequence[dict[str, torch.Tensor]], weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """FedAvg: the weighted mean of every floating-point entry (step counters from the first)."""
    out = {}
    for name, first in states[0].items():
        if not first.is_floating_point():
            out[name] = first.clone()
            continue
        out[name] = weighted_mean([s[name].double() for s in states], weights).to(first.dtype)
    return out


def pool_client_statistics(model: DerivedNetwork, task: Task, batch_size: int, device: torch.device | str) -> None:
    """Give ``model`` the BatchNorm statistics pooled from every client's pass under it."""
    parts = []
    for indices in task.clients:
        local = copy.deepcopy(model)
        n = recalibrate(local, calibration_batches(task.dataset, indices, batch_size, device=device))
        parts.append((statistics_state(local), n))
    if any(n for _, n in parts):
        with torch.no_grad():
            state = model.state_dict()
            for name, value in pool_statistics(parts).items():
                state[name].copy_(value)


def train_network(model: DerivedNetwork, task: Task, settings: Any, seed: int,
                  device: torch.device | str = "cpu") -> list[float]:
    """Train ``model`` in place (``settings``: the ``derive`` config section); test accuracy after every round."""
    model.to(device)
    curve = []
    rounds = settings.derive_rounds
    union = np.sort(np.concatenate(task.clients))
    for r in range(rounds):
        lr = cosine_lr(settings.derive_lr, r, rounds)
        model.drop_prob = settings.derive_drop_path * r / rounds
        if settings.derive_mode == "central":
            train_epochs(model, task.dataset, union, 1, settings, lr, [seed, r], device)
        else:
            states, sizes = [], []
            for k, indices in enumerate(task.clients):
                local = copy.deepcopy(model)
                train_epochs(local, task.dataset, indices, settings.derive_local_epochs, settings, lr, [seed, r, k], device)
                states.append(local.state_dict())
                sizes.append(len(indices))
            model.load_state_dict(_average(states, sizes))
        pool_client_statistics(model, task, settings.derive_batch_size, device)
        curve.append(evaluate(model, task.dataset.x[task.test], task.dataset.y[task.test], device)["acc"])
    model.drop_prob = 0.0
    return curve
