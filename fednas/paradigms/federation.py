"""Any paradigm's federation in one process, without Flower.

:func:`run_federation` runs the rounds :mod:`fednas.federated` runs under Flower (the
paradigm's server steps, every client's :meth:`~fednas.paradigms.base.Paradigm.client_round`,
FedAvg weighted by ``num-examples``, replies in partition order, as the server does) for
tests, and :func:`search_alone` one client's search on given data (the attacker's searched
shadow, which mimics the target's paradigm).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from torch import nn

from fednas.data import ClientSplit, ImageSet, dataset_from_config, partition_clients
from fednas.noise import input_noise_from_config
from fednas.paradigms import paradigm_of
from fednas.paradigms.base import as_numpy
from fednas.stats import weighted_mean
from fednas.spaces import Genotype


def fedavg(replies: Sequence[tuple[Mapping[str, Any], float]]) -> dict[str, np.ndarray]:
    """Example-weighted mean of the replies' arrays, as Flower's FedAvg computes it."""
    arrays = [as_numpy(a) for a, _ in replies]
    weights = [w for _, w in replies]
    return {k: weighted_mean([a[k] for a in arrays], weights) for k in arrays[0]} if arrays else {}


def run_federation(cfg: Any, num_clients: int, on_round: Callable[[int, dict, list], None] | None = None,
                   device: str = "cpu") -> dict[str, np.ndarray]:
    """Every round of the configured paradigm over ``num_clients`` clients in this process.

    ``on_round(round, global arrays, replies)`` sees each round's result. Returns the
    final global arrays (server state included).
    """
    paradigm = paradigm_of(cfg)
    dataset = dataset_from_config(cfg.data, cfg.run.seed)
    splits = partition_clients(dataset, cfg.data, cfg.run.seed, num_clients)
    arrays = as_numpy(paradigm.initial_arrays(cfg, dataset.spec))
    local: dict[int, dict] = {}
    for r in range(1, cfg.fed.num_server_rounds + 1):
        model_arrays, state = paradigm.server_configure(cfg, r, arrays)
        sent = {**model_arrays, **state}
        replies = []
        for split in splits:
            reply = paradigm.client_round(cfg, cfg.search, sent, dataset, split, seed=[cfg.run.seed, r, split.partition_id],
                                          device=device, local_theta=local.get(split.partition_id),
                                          input_noise=input_noise_from_config(cfg), partition_id=split.partition_id,
                                          server_round=r)
            if reply.theta:
                local[split.partition_id] = reply.theta
            replies.append(reply)
        arrays = {**fedavg([(rep.arrays, rep.metrics["num-examples"]) for rep in replies]), **as_numpy(state)}
        if on_round is not None:
            on_round(r, arrays, replies)
    return arrays


def search_alone(cfg: Any, dataset: ImageSet, split: ClientSplit, steps: int, seed: int, device: str = "cpu",
                 input_noise: Any = None) -> tuple[nn.Module, Genotype]:
    """One client's search of ``steps`` local steps in all, over the run's rounds (its
    paradigm's schedule included), on ``split`` of ``dataset``: (served model, genotype)."""
    paradigm = paradigm_of(cfg)
    rounds = max(1, min(cfg.fed.num_server_rounds, steps))
    run = cfg.replace(num_server_rounds=rounds, share_weights=True)
    settings = replace(run.search, local_steps=max(1, steps // rounds), local_epochs=0)
    arrays = as_numpy(paradigm.initial_arrays(run, dataset.spec))
    for r in range(1, rounds + 1):
        model_arrays, state = paradigm.server_configure(run, r, arrays)
        reply = paradigm.client_round(run, settings, {**model_arrays, **state}, dataset, split, seed=[seed, r],
                                      device=device, input_noise=input_noise, server_round=r)
        arrays = {**as_numpy(reply.arrays), **as_numpy(state)}
    return paradigm.model(run, dataset.spec, arrays).to(device), paradigm.genotype(run, dataset.spec, arrays)
