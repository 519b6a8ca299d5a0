"""One client round and the server's helpers, as plain functions over ``{name: tensor}``.

The Flower apps in ``clients/`` and ``server/`` only unpack records, call these and pack
the results; everything here runs without Flower (tests and benchmarks call it directly).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from fednas.batchnorm import calibration_batches, recalibrate, statistics_state
from fednas.config import Config
from fednas.data import ClientSplit, ImageSet, client_data, dataset_from_config, make_pools
from fednas.noise import input_noise_from_config
from fednas.search import AlphaGradient, Proximal, evaluate, local_search
from fednas.spaces import Supernet, build_supernet

log = logging.getLogger(__name__)

Arrays = Mapping[str, torch.Tensor]


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
    """The run's supernet at its seeded initial state, on ``device``."""
    return build_supernet(cfg.space, spec, cfg.run.seed).to(device)


def initial_arrays(cfg: Config) -> dict[str, torch.Tensor]:
    """What the server sends in round 1: α, and θ when weights are shared."""
    if cfg.paradigm.paradigm != "darts":  # the other paradigms: fednas.paradigms
        return _paradigms().initial_arrays(cfg)
    dataset = dataset_from_config(cfg.data, cfg.run.seed)
    model = build_supernet(cfg.space, dataset.spec, cfg.run.seed)
    arrays = dict(model.arch_state())
    if cfg.search.share_weights:
        arrays.update(model.weight_state())
    return arrays


@dataclass
class ClientRound:
    """What a client replies after its local search."""

    arrays: dict[str, torch.Tensor]
    metrics: dict[str, float]
    audit: dict[str, Any]
    theta: dict[str, torch.Tensor] = field(default_factory=dict)  # kept locally when not shared


def client_train(cfg: Config, settings: Any, arrays: Arrays, *, partition_id: int, num_clients: int,
                 server_round: int, local_theta: Arrays | None = None,
                 alpha_gradient: AlphaGradient | None = None, proximal_mu: float | None = None) -> ClientRound:
    """Run one client's local search from the server's arrays.

    Parameters
    ----------
    cfg : Config
        The run configuration (data, space, seed).
    settings : SearchConfig
        The local-search settings the server sent for this round.
    arrays : mapping
        α, and θ when the server shares weights.
    local_theta : mapping, optional
        This client's own θ from earlier rounds (used when the server sent none).
    alpha_gradient : callable, optional
        A replacement α-gradient rule (the private one of the DP-SGD mod).
    proximal_mu : float, optional
        FedProx's μ as the strategy sent it (``proximal-mu``): the proximal term around the
        received θ (when it was sent) and, with ``proximal-alpha``, around the received α.
    """
    if cfg.paradigm.paradigm != "darts":
        return _paradigms().client_train(cfg, settings, arrays, partition_id=partition_id, num_clients=num_clients,
                                         server_round=server_round, local_theta=local_theta,
                                         alpha_gradient=alpha_gradient)
    device = pick_device(cfg.run.device)
    dataset, split = client_data(cfg.data, cfg.run.seed, partition_id, num_clients)
    model = model_for(cfg, dataset.spec, device)
    if local_theta:
        model.load_arrays(local_theta)
    model.load_arrays(arrays)
    seed = round_seed(cfg, server_round, partition_id)
    noise = input_noise_from_config(cfg)
    sent_theta = any(not k.startswith(model.alpha_prefix) for k in arrays)
    proximal = None if proximal_mu is None else Proximal.at(model, proximal_mu, sent_theta, settings.proximal_alpha)
    result = local_search(model, dataset, split, settings, seed, device, alpha_gradient=alpha_gradient,
                          input_noise=noise, proximal=proximal,
                          train_alpha=server_round > settings.alpha_warmup_rounds)
    if recalibrates_reply(settings, sent_theta):  # statistics of the θ (and α) this client replies
        recalibrate_on_theta(model, dataset, split, settings, device, noise, seed)
    reply = dict(model.arch_state())
    theta = dict(model.weight_state())
    if sent_theta:
        reply.update(theta)
    metrics = {**result.metrics, "num-examples": int(len(split.theta) + len(split.alpha)),
               "local-steps": result.steps, "train-seconds": result.seconds,
               "on-cuda": float(device.type == "cuda")}  # 1: this round really ran on a GPU
    audit = {
        "partition-id": partition_id,
        "server-round": server_round,
        "alpha-batch-size": int(settings.alpha_batch_size),
        "alpha-steps": len(result.alpha_batches),  # 0 in a warm-up round
        # flat, step after step; each step holds alpha-batch-size indices (or all of a
        # smaller D^α): global indices into the loaded dataset
        "alpha-indices": [i for batch in result.alpha_batches for i in batch],
        "alpha-batch-sizes": [len(b) for b in result.alpha_batches],
    }
    return ClientRound(reply, metrics, audit, {} if sent_theta else theta)


def recalibrates_reply(settings: Any, shared: bool) -> bool:
    """Whether a client re-estimates BatchNorm statistics before replying: ``client``, and
    ``pooled`` with local θ (there is no global θ to pool statistics for)."""
    return settings.bn_statistics == "client" or (settings.bn_statistics == "pooled" and not shared)


def recalibrate_on_theta(model: Supernet, dataset: ImageSet, split: ClientSplit, settings: Any,
                         device: torch.device | str, noise: Any = None, seed: Any = 0) -> int:
    """Re-estimate the model's BatchNorm statistics on this client's D^θ (never D^α)."""
    return recalibrate(model, calibration_batches(dataset, split.theta, settings.batch_size,
                                                  settings.bn_statistics_batches, device, noise, seed))


def client_statistics(cfg: Config, settings: Any, arrays: Arrays, *, partition_id: int,
                      num_clients: int, server_round: int = 0) -> tuple[dict[str, torch.Tensor], int]:
    """The BatchNorm statistics of the global model in ``arrays`` on this client's D^θ.

    What a client answers to the server's ``bn-statistics`` query (``bn-statistics =
    "pooled"``): running means and variances after a recalibration pass, and the number
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
    """Evaluate the global α (with the shared or the client's own θ) on the client's test split.

    With shared θ the global model is evaluated as the server holds it (its statistics are
    the clients' average). With the client's own θ, whose statistics were taken under the
    α it last trained, they are re-estimated on D^θ for the global α first (unless
    ``bn-statistics = "ema"``).
    """
    if cfg.paradigm.paradigm != "darts":
        return _paradigms().client_evaluate(cfg, arrays, partition_id=partition_id, num_clients=num_clients,
                                            local_theta=local_theta)
    device = pick_device(cfg.run.device)
    dataset, split = client_data(cfg.data, cfg.run.seed, partition_id, num_clients)
    model = model_for(cfg, dataset.spec, device)
    if local_theta:
        model.load_arrays(local_theta)
    model.load_arrays(arrays)
    sent_theta = any(not k.startswith(model.alpha_prefix) for k in arrays)
    if local_theta and not sent_theta and cfg.search.bn_statistics != "ema":
        recalibrate_on_theta(model, dataset, split, cfg.search, device, input_noise_from_config(cfg),
                             [cfg.run.seed, 0, partition_id])
    idx = split.test if len(split.test) else split.alpha
    res = evaluate(model, dataset.x[idx], dataset.y[idx], device)
    return {"eval-loss": res["loss"], "eval-acc": res["acc"], "num-examples": int(res["n"])}


def central_evaluate(cfg: Config, arrays: Arrays) -> dict[str, float]:
    """Evaluate the global model on the server's test pool."""
    if cfg.paradigm.paradigm != "darts":
        return _paradigms().central_evaluate(cfg, arrays)
    device = pick_device(cfg.run.device)
    dataset = dataset_from_config(cfg.data, cfg.run.seed)
    pools = make_pools(len(dataset), cfg.data, cfg.run.seed)
    model = model_for(cfg, dataset.spec, device)
    model.load_arrays(arrays)
    res = evaluate(model, dataset.x[pools.test], dataset.y[pools.test], device)
    return {"central-loss": res["loss"], "central-acc": res["acc"]}


def genotype_of(cfg: Config, arrays: Arrays) -> Any:
    """The genotype the α in ``arrays`` derives."""
    if cfg.paradigm.paradigm != "darts":
        return _paradigms().genotype_of(cfg, arrays)
    dataset = dataset_from_config(cfg.data, cfg.run.seed)
    model = build_supernet(cfg.space, dataset.spec, cfg.run.seed)
    model.load_arrays({k: v for k, v in arrays.items() if k.startswith(model.alpha_prefix)})
    return model.genotype(cfg.space.genotype_k)


def _paradigms() -> Any:
    """The paradigm-generic steps (imported late: they build on this module)."""
    from fednas.paradigms import federation

    return federation
