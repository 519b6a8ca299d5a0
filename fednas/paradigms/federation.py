"""The federated steps of any paradigm, as plain functions (no Flower), and an in-process loop.

:mod:`fednas.federated` hands its client and server helpers over to these for every
paradigm but ``darts``; :func:`run_federation` runs the same rounds in one process (FedAvg
weighted by ``num-examples``, replies in partition order, as the server does) for tests,
and :func:`search_alone` one client's search on given data (the attacker's searched
shadow, which mimics the target's paradigm).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from fednas.data import ClientSplit, ImageSet, client_data, dataset_from_config, make_pools, partition_clients
from fednas.noise import input_noise_from_config
from fednas.paradigms import paradigm_of
from fednas.paradigms.base import Arrays, as_numpy, as_tensors
from fednas.search import evaluate
from fednas.stats import weighted_mean
from fednas.spaces import Genotype, InputSpec


def initial_arrays(cfg: Any) -> dict[str, torch.Tensor]:
    """Round 1's arrays, as torch tensors (what ``ArrayRecord`` takes)."""
    return as_tensors(paradigm_of(cfg).initial_arrays(cfg, dataset_from_config(cfg.data, cfg.run.seed).spec))


def client_train(cfg: Any, settings: Any, arrays: Arrays, *, partition_id: int, num_clients: int, server_round: int,
                 local_theta: Arrays | None = None, alpha_gradient: Any = None) -> Any:
    """One client's round of the configured paradigm on its own partition."""
    from fednas.federated import pick_device, round_seed

    dataset, split = client_data(cfg.data, cfg.run.seed, partition_id, num_clients)
    return paradigm_of(cfg).client_round(
        cfg, settings, arrays, dataset, split, seed=round_seed(cfg, server_round, partition_id),
        device=pick_device(cfg.run.device), local_theta=local_theta, alpha_gradient=alpha_gradient,
        input_noise=input_noise_from_config(cfg), partition_id=partition_id, server_round=server_round)


def _evaluate(cfg: Any, spec: InputSpec, arrays: Arrays, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    from fednas.federated import pick_device

    device = pick_device(cfg.run.device)
    return evaluate(paradigm_of(cfg).model(cfg, spec, arrays).to(device), x, y, device)


def client_evaluate(cfg: Any, arrays: Arrays, *, partition_id: int, num_clients: int,
                    local_theta: Arrays | None = None) -> dict[str, float]:
    dataset, split = client_data(cfg.data, cfg.run.seed, partition_id, num_clients)
    idx = split.test if len(split.test) else split.alpha
    res = _evaluate(cfg, dataset.spec, {**(local_theta or {}), **arrays}, dataset.x[idx], dataset.y[idx])
    return {"eval-loss": res["loss"], "eval-acc": res["acc"], "num-examples": int(res["n"])}


def central_evaluate(cfg: Any, arrays: Arrays) -> dict[str, float]:
    dataset = dataset_from_config(cfg.data, cfg.run.seed)
    test = make_pools(len(dataset), cfg.data, cfg.run.seed).test
    res = _evaluate(cfg, dataset.spec, arrays, dataset.x[test], dataset.y[test])
    return {"central-loss": res["loss"], "central-acc": res["acc"]}


def genotype_of(cfg: Any, arrays: Arrays) -> Genotype:
    return paradigm_of(cfg).genotype(cfg, dataset_from_config(cfg.data, cfg.run.seed).spec, arrays)


# --------------------------------------------------------------------------- in one process


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
