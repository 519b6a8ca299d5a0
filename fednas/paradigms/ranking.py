"""Ranking candidate architectures on the clients' validation data (ENAS's and SMASH's last step).

ENAS keeps the best of a few architectures sampled from its trained controller, SMASH the
best of many random ones, both by accuracy on validation data. Federated, the server
puts the candidates in its state (``paradigm.candidates``: one encoded architecture per
row), every client scores each on its D^α and replies the accuracies as ``alpha_scores``
(architecture-level state: the eavesdropper records it, the update-level DP mod noises
it), and FedAvg's example-weighted mean of the scores ranks them. The best candidate of
the last round is the final architecture.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from fednas.paradigms.arch import Arch, decode, encode
from fednas.paradigms.base import STATE_PREFIX, Arrays, state_value
from fednas.search import frozen_running_statistics

SCORES = "alpha_scores"
CANDIDATES = STATE_PREFIX + "candidates"


def candidates_state(archs: Sequence[Arch], k: int) -> dict[str, np.ndarray]:
    return {CANDIDATES: np.stack([encode(a, k) for a in archs]).astype(np.float32)}


def candidates_of(state: Arrays, nodes: int, k: int) -> list[Arch]:
    return [decode(row, nodes, k) for row in state_value(state, "candidates")]


def best_candidate(arrays: Arrays, nodes: int, k: int) -> tuple[Arch, int]:
    """The candidate with the highest mean score (the first on a tie) and its row."""
    archs = candidates_of(arrays, nodes, k)
    scores = arrays.get(SCORES)
    if scores is None:
        return archs[0], 0
    scores = np.asarray(scores.detach().cpu() if isinstance(scores, torch.Tensor) else scores, dtype=np.float64)
    if scores.shape != (len(archs),):
        raise ValueError(f"{SCORES} has shape {scores.shape}, the server state holds {len(archs)} candidates")
    row = int(np.argmax(np.nan_to_num(scores, nan=-np.inf)))
    return archs[row], row


@torch.no_grad()
def score_candidates(forward: Callable[[torch.Tensor, Arch], torch.Tensor], model: torch.nn.Module,
                     archs: Sequence[Arch], x: torch.Tensor, y: torch.Tensor, chunk: int = 512) -> np.ndarray:
    """Accuracy of every candidate on (x, y).

    BatchNorm normalises with the statistics of the scored set (train mode, as the
    reference's reward), in chunks of ``chunk`` samples; running statistics stay as
    they were (they are weights, and must not learn from D^α).
    """
    was_training = model.training
    model.train()
    out = np.zeros(len(archs))
    try:
        with frozen_running_statistics(model):
            for n, arch in enumerate(archs):
                parts = max(1, -(-len(y) // chunk))  # equal parts
                correct = sum(int((forward(xb, arch).argmax(1) == yb).sum())
                              for xb, yb in zip(x.tensor_split(parts), y.tensor_split(parts)))
                out[n] = correct / max(len(y), 1)
    finally:
        model.train(was_training)
    return out


def rank_metrics(scores: np.ndarray) -> dict[str, Any]:
    return {"rank-best": float(np.max(scores)) if len(scores) else float("nan"),
            "rank-mean": float(np.mean(scores)) if len(scores) else float("nan")}
