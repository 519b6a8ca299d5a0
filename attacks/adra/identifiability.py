"""An attack-free leakage indicator: how many input directions the α-gradient sees.

The numerical rank of the Jacobian ∂(∇_α L)/∂x at a batch, over the batch's input size:
1 means every pixel direction changes the architecture gradient (locally, x is determined
by it); lower values count the directions a gradient-matching attack cannot recover.
Singular values count when above ``rtol`` × the largest one and above ``atol`` (float32
round-off: with ``head = gap`` and B = 1, BatchNorm zeroes every channel mean and the
gradient is pure round-off, which a relative tolerance alone would call full rank).

:func:`identifiability_job` is this figure at a capture's true first-step batch: ADRA's
scoring job in the leakage report (``attacks.adra.report.ADRAReport``), handed the truth by
the scoring (``attacks.report.run_score_job``), its one reader.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch.func import jacfwd

from attacks.adra.victim import Victim
from fednas.captures import CaptureStore
from fednas.config import parse_config

RTOL = 1e-3
ATOL = 1e-6


def jacobian(victim: Victim, x: torch.Tensor, y: torch.Tensor, draw: int = 0) -> torch.Tensor:
    """∂(∇_α L)/∂x at one batch x (B, C, H, W), labels y (B, classes): (n_alpha, B·C·H·W)."""
    theta = {k: v[draw] for k, v in victim.thetas.items()}

    def f(xx: torch.Tensor) -> torch.Tensor:
        return victim.batch_gradient(theta, victim.alpha_flat, xx, y)

    jac = jacfwd(f)(x.float())
    return jac.reshape(jac.shape[0], -1)


def jacobian_rank(victim: Victim, x: torch.Tensor, y: torch.Tensor, rtol: float = RTOL,
                  atol: float = ATOL) -> tuple[int, int]:
    """(numerical rank, input size) of the Jacobian at the batch (see the module docstring)."""
    jac = jacobian(victim, x, y).double().cpu()
    s = torch.linalg.svdvals(jac)
    if len(s) == 0:
        return 0, int(jac.shape[1])
    tol = max(rtol * float(s[0]), atol)
    return int((s > tol).sum()), int(jac.shape[1])


# ---------------------------------------------------------------------------- the scoring job


def identifiability_job(run_dir: str, capture_id: str, flat: Mapping[str, Any], truth: Any) -> dict[str, Any]:
    """Numerical rank of ∂(∇_α L)/∂x at the true first-step batch (``truth``: the capture's
    ``fednas.truth.TruthRecord``, handed over by the scoring), over the input's size."""
    from attacks.runner import one_thread

    with one_thread():
        return _identifiability(run_dir, capture_id, flat, truth)


def _identifiability(run_dir: str, capture_id: str, flat: Mapping[str, Any], truth: Any) -> dict[str, Any]:
    from attacks.adra.attack import ADRA
    from attacks.adra.client_model import CaptureError
    from attacks.runner import knowledge_for

    knowledge = knowledge_for(flat)
    capture = CaptureStore(run_dir).load(capture_id)
    try:
        problem, _ = ADRA(knowledge.config.attack, seed=knowledge.config.run.seed).problem(capture, knowledge)
    except CaptureError as err:
        return {"error": str(err)}
    ctx_x, ctx_y = _dataset_arrays(tuple(sorted(flat.items())))
    first = [i for step, _, i in truth.samples() if step == 0]
    dev = problem.victim.device
    x = torch.as_tensor(ctx_x[first]).to(dev)
    y = torch.nn.functional.one_hot(torch.as_tensor(ctx_y[first]), knowledge.spec.num_classes).float().to(dev)
    rank, size = jacobian_rank(problem.victim, x, y)
    return {"identifiability": rank / size, "identifiability-rank": rank, "input-size": size}


@functools.lru_cache(maxsize=2)
def _dataset_arrays(flat_items: tuple) -> tuple[np.ndarray, np.ndarray]:
    from fednas.data import dataset_from_config

    cfg = parse_config(dict(flat_items))
    d = dataset_from_config(cfg.data, cfg.run.seed)
    return d.x.numpy(), d.y.numpy()
