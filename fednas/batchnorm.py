"""BatchNorm statistics that describe the model they sit in: a recalibration pass.

The supernets' BatchNorm layers have no affine parameters; their only state is the
running mean and variance that eval mode normalises with. During local search those are
an exponential moving average (momentum 0.1) over a few θ steps, so they still hold
mostly what the client received, and FedAvg then averages statistics that each client
took under its own θ. Neither describes the averaged model: eval-mode accuracy of the
global model stays near chance for many rounds (measured here before this pass: 0.08
while the clients' training accuracy was 0.55).

The fix used by one-shot NAS (SPOS, Guo et al. 2020: "recalibrate the statistics of all
BN layers on training images before inference") and by PreciseBN (Wu & Johnson 2021),
and in federated learning by every scheme that aggregates statistics of the *current*
weights instead of stale ones: forget the running statistics and re-estimate them, with
gradients off, as the cumulative (not exponential) average of the batch statistics over
a set of training batches, exactly what ``momentum=None`` does in ``nn.BatchNorm2d``.
Here the average is weighted by batch size, so the mean is the population mean of the
batches seen. Implemented by setting every module's momentum to n_k / (n_1 + ... + n_k)
before batch k, which also drives the fused supernets' packed banks
(:class:`fednas.spaces.bnbank.BatchNormBank` reads the modules' momentum at each update).

Callers choose the data: a client passes its D^θ only, never D^α (the statistics are
weights that leave the client, see ``fednas.search.frozen_running_statistics``).

Federated, the statistics of the *averaged* θ are needed, and an average of statistics
each client took under its own θ is not that (measured on a short search, simulations/search-quick.toml: 0.31 central
accuracy in round 2 against 0.41 for the averaged model's own statistics).
:func:`pool_statistics` combines what clients measured for one and the same global model,
each on its own D^θ, into the statistics of their union (the law of total variance).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from fednas.data import ClientSplit, ImageSet
from fednas.noise import InputNoise


def batchnorm_modules(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm layer of ``model`` that tracks running statistics."""
    return [m for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recalibrate(model: nn.Module, inputs: Iterable[torch.Tensor]) -> int:
    """Replace every BatchNorm's running statistics by the size-weighted mean of the
    batch statistics of ``inputs`` under the model's current parameters.

    Parameters
    ----------
    model : nn.Module
        Its parameters are left as they are; its train/eval mode is restored afterwards.
    inputs : iterable of tensors
        Batches on the model's device. A batch needs more than one value per channel
        (train-mode BatchNorm); batch size 1 is fine for images larger than 1×1.

    Returns
    -------
    int
        Samples seen (0: nothing changed).
    """
    modules = batchnorm_modules(model)
    saved = [m.momentum for m in modules]
    was_training = model.training
    seen = 0
    model.train()
    try:
        for x in inputs:
            n = int(x.shape[0])
            if n == 0:
                continue
            seen += n
            for m in modules:
                m.momentum = n / seen  # 1 for the first batch: the old statistics are gone
            model(x)
    finally:
        for m, momentum in zip(modules, saved):
            m.momentum = momentum
        model.train(was_training)
    return seen


_STATISTICS = ("running_mean", "running_var")
# The query by which a server asks clients for the statistics of its model (a Flower
# message type "query.<action>"; the action must be a Python identifier).
QUERY_ACTION = "bn_statistics"


def is_statistic(name: str) -> bool:
    """Whether a state_dict name is a BatchNorm running mean or variance."""
    return name.endswith(_STATISTICS)


def statistics_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every running mean and variance by state_dict name, detached on the CPU."""
    return {n: b.detach().cpu().clone() for n, b in model.state_dict().items() if is_statistic(n)}


def pool_statistics(parts: Sequence[tuple[Mapping[str, torch.Tensor], float]]) -> dict[str, torch.Tensor]:
    """The statistics of the union of several sets, from each set's own.

    Parameters
    ----------
    parts : sequence of (statistics, n)
        Per set: ``{name: tensor}`` of ``running_mean``/``running_var`` buffers (as
        :func:`statistics_state` gives after :func:`recalibrate`) and its sample count.

    Returns
    -------
    dict
        Means weighted by n; each variance is the weighted mean of the sets' variances
        plus the weighted spread of their means around the pooled mean (total variance).
    """
    parts = [(stats, float(n)) for stats, n in parts if n > 0]
    if not parts:
        raise ValueError("pool_statistics needs at least one set with samples")
    total = sum(n for _, n in parts)
    names = set(parts[0][0])
    for stats, _ in parts[1:]:
        if set(stats) != names:
            raise ValueError(f"statistics name different buffers: {sorted(names ^ set(stats))[:5]}")
    out = {}
    for name in sorted(names):
        if name.endswith("running_var"):
            continue
        mean_name, var_name = name, name[: -len("running_mean")] + "running_var"
        means = torch.stack([torch.as_tensor(s[mean_name], dtype=torch.float64) for s, _ in parts])
        variances = torch.stack([torch.as_tensor(s[var_name], dtype=torch.float64) for s, _ in parts])
        w = torch.tensor([n / total for _, n in parts], dtype=torch.float64).view(-1, *([1] * (means.dim() - 1)))
        mean = (w * means).sum(0)
        out[mean_name] = mean.float()
        out[var_name] = (w * (variances + (means - mean) ** 2)).sum(0).float()
    return out


def calibration_batches(dataset: ImageSet, indices: np.ndarray, batch_size: int, max_batches: int = 0,
                        device: torch.device | str = "cpu", input_noise: InputNoise | None = None,
                        seed: object = 0) -> Iterable[torch.Tensor]:
    """The inputs of ``indices`` in their stored order, in batches of about ``batch_size``.

    Batches are near-equal (``np.array_split``), so none is left with one sample;
    ``max_batches`` > 0 stops after that many. With ``input_noise`` every input is
    perturbed as training perturbs it (the model never sees the clean data).
    """
    indices = np.asarray(indices)
    if len(indices) == 0:
        return
    parts = np.array_split(indices, max(1, int(np.ceil(len(indices) / batch_size))))
    if max_batches > 0:
        parts = parts[:max_batches]
    rng = np.random.default_rng([*np.atleast_1d(seed).tolist(), 0xB4])
    for part in parts:
        x = dataset.x[part]
        if input_noise is not None:
            x = input_noise(x, part, rng)
        yield x.to(device)


def recalibrates_reply(settings: Any, shared: bool) -> bool:
    """Whether a client re-estimates BatchNorm statistics before replying: ``client``, and
    ``pooled`` with local θ (there is no global θ to pool statistics for)."""
    return settings.bn_statistics == "client" or (settings.bn_statistics == "pooled" and not shared)


def recalibrate_on_theta(model: nn.Module, dataset: ImageSet, split: ClientSplit, settings: Any,
                         device: torch.device | str, noise: InputNoise | None = None, seed: Any = 0) -> int:
    """Re-estimate the model's BatchNorm statistics on this client's D^θ (never D^α)."""
    return recalibrate(model, calibration_batches(dataset, split.theta, settings.batch_size,
                                                  settings.bn_statistics_batches, device, noise, seed))
