"""One client round and the server's helpers, as plain functions over ``{name: tensor}``.

The Flower apps in ``clients/`` and ``server/`` only unpack records, call these and pack
the results; everything here runs without Flower (tests and benchmarks call it directly).
Each function loads the client's data (or the server's pools) and hands the paradigm the
config names (:func:`fednas.paradigms.paradigm_of`) the work: the DARTS round itself is
:class:`fednas.paradigms.darts.Darts`, like every other paradigm's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch

from fednas.batchnorm import recalibrate_on_theta, recalibrates_reply, statistics_state
from fednas.config import Config
from fednas.data import client_data, dataset_from_config, make_pools
from fednas.noise import input_noise_from_config
from fednas.paradigms import paradigm_of
from fednas.paradigms.base import ClientRound, as_tensors
from fednas.search import AlphaGradient, evaluate
from fednas.spaces import Genotype, Supernet, build_supernet

log = logging.getLogger(__name__)

Arrays = Mapping[str, torch.Tensor]

__all__ = ["ClientRound", "central_evaluate", "client_evaluate", "client_statistics", "client_train", "genotype_of",
           "initial_arrays", "model_for", "pick_device", "recalibrate_on_theta", "recalibrates_reply", "round_seed"]


def pick_device(name: str) -> torch.device:
    """``auto``: CUDA when this process can see a GPU, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device = 'cuda' but this process sees no GPU (give clients GPUs with --gpus-per-client)")
    return torch.device(name)


def round_seed(cfg: Config, server_round: int, partition_id: int) -> list[int]:
    """The seed of one client's round: batch order depends on nothing else."""
    return [cfg.run.seed, server_round, partition_id]


def model_for(cfg: Config, spec: Any, device: torch.device) -> Supernet:
    """The run's configured supernet at its seeded initial state, on ``device``."""
    return build_supernet(cfg.space, spec, cfg.run.seed).to(device)


def initial_arrays(cfg: Config) -> dict[str, torch.Tensor]:
    """What the server sends in round 1: architecture state, θ when weights are shared, server state."""
    return as_tensors(paradigm_of(cfg).initial_arrays(cfg, dataset_from_config(cfg.data, cfg.run.seed).spec))


def client_train(cfg: Config, settings: Any, arrays: Arrays, *, partition_id: int, num_clients: int,
                 server_round: int, local_theta: Arrays | None = None,
                 alpha_gradient: AlphaGradient | None = None, proximal_mu: float | None = None) -> ClientRound:
    """Run one client's round of the configured paradigm from the server's arrays.

    Parameters
    ----------
    cfg : Config
        The run configuration (data, space, seed, paradigm).
    settings : SearchConfig
        The local-search settings the server sent for this round.
    arrays : mapping
        The architecture state, θ when the server shares weights, the server state.
    local_theta : mapping, optional
        This client's own θ from earlier rounds (used when the server sent none).
    alpha_gradient : callable, optional
        A replacement α-gradient rule (the private one of the DP-SGD mod).
    proximal_mu : float, optional
        FedProx's μ as the strategy sent it (``proximal-mu``): the proximal term around the
        received θ (when it was sent) and, with ``proximal-alpha``, around the received α.
    """
    dataset, split = client_data(cfg.data, cfg.run.seed, partition_id, num_clients)
    return paradigm_of(cfg).client_round(
        cfg, settings, arrays, dataset, split, seed=round_seed(cfg, server_round, partition_id),
        device=pick_device(cfg.run.device), local_theta=local_theta, alpha_gradient=alpha_gradient,
        input_noise=input_noise_from_config(cfg), partition_id=partition_id, server_round=server_round,
        proximal_mu=proximal_mu)


def client_statistics(cfg: Config, settings: Any, arrays: Arrays, *, partition_id: int,
                      num_clients: int, server_round: int = 0) -> tuple[dict[str, torch.Tensor], int]:
    """The BatchNorm statistics of the global model in ``arrays`` on this client's D^θ.

    What a client answers to the server's ``bn-statistics`` query (``bn-statistics =
    "pooled"``, which the server asks of paradigms that search the configured supernet
    and recalibrate): running means and variances after a recalibration pass, and the number
    of samples they cover (the server pools them with :func:`fednas.batchnorm.pool_statistics`).
    """
    device = pick_device(cfg.run.device)
    dataset, split = client_data(cfg.data, cfg.run.seed, partition_id, num_clients)
    model = model_for(cfg, dataset.spec, device)
    model.load_arrays(arrays)
    n = recalibrate_on_theta(model, dataset, split, settings, device, input_noise_from_config(cfg),
                             round_seed(cfg, server_round, partition_id))
    return statistics_state(model), n


def client_evaluate(cfg: Config, arrays: Arrays, *, partition_id: int, num_clients: int,
                    local_theta: Arrays | None = None) -> dict[str, float]:
    """Evaluate the global architecture (with the shared or the client's own θ) on the client's
    test split (its D^α when it has none); see :meth:`fednas.paradigms.base.Paradigm.evaluation_model`."""
    device = pick_device(cfg.run.device)
    dataset, split = client_data(cfg.data, cfg.run.seed, partition_id, num_clients)
    model = paradigm_of(cfg).evaluation_model(cfg, dataset, split, arrays, local_theta, device,
                                              round_seed(cfg, 0, partition_id))
    idx = split.test if len(split.test) else split.alpha
    res = evaluate(model, dataset.x[idx], dataset.y[idx], device)
    return {"eval-loss": res["loss"], "eval-acc": res["acc"], "num-examples": int(res["n"])}


def central_evaluate(cfg: Config, arrays: Arrays) -> dict[str, float]:
    """Evaluate the global model on the server's test pool."""
    device = pick_device(cfg.run.device)
    dataset = dataset_from_config(cfg.data, cfg.run.seed)
    test = make_pools(len(dataset), cfg.data, cfg.run.seed).test
    model = paradigm_of(cfg).model(cfg, dataset.spec, arrays).to(device)
    res = evaluate(model, dataset.x[test], dataset.y[test], device)
    return {"central-loss": res["loss"], "central-acc": res["acc"]}


def genotype_of(cfg: Config, arrays: Arrays) -> Genotype:
    """The genotype the architecture state in ``arrays`` derives."""
    return paradigm_of(cfg).genotype(cfg, dataset_from_config(cfg.data, cfg.run.seed).spec, arrays)
