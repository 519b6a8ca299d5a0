"""The MD defense: DMP-style distillation of the protected model into the served student.

Distillation for Membership Privacy (Shejwalkar & Houmansadr, AAAI 2021), as the paper's
Appendix D describes it: the unprotected teacher (the model the federation produced)
labels an unlabeled reference set with its soft predictions; the reference samples on
which the teacher is most confident (lowest prediction entropy) are kept; a student
trained only on those soft labels is what the API serves. The student never sees the
private data, so what it can memorise of it is only what the teacher's outputs on other
samples carry. (The LR and DP defenses act during training: ``alpha-l2`` in the α loss,
``fednas.noise`` on the inputs.)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from attacks.amia.training import Recipe, predict_proba, train_classifier


@dataclass(frozen=True)
class Distillation:
    """MD settings: share of the reference set kept, teacher temperature, student epochs."""

    keep: float = 0.5
    temperature: float = 1.0
    epochs: int = 30

    def __post_init__(self) -> None:
        if not 0.0 < self.keep <= 1.0:
            raise ValueError(f"md-keep must be in (0, 1], got {self.keep}")
        if not self.temperature > 0 or self.epochs < 1:
            raise ValueError("md-temperature must be > 0 and md-epochs >= 1")


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row."""
    p = np.clip(probs, 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=1)


def low_entropy_indices(probs: np.ndarray, keep: float) -> np.ndarray:
    """Rows of the ``keep`` share with the lowest entropy (at least one), sorted."""
    n = max(1, math.ceil(keep * len(probs)))
    return np.sort(np.argsort(entropy(probs), kind="stable")[:n])


def distill(teacher: nn.Module, make_student: Callable[[], nn.Module], reference_x: torch.Tensor,
            settings: Distillation, recipe: Recipe, seed: int,
            device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, float]]:
    """Train a student on the teacher's soft labels of the low-entropy reference samples.

    ``recipe`` gives the optimiser settings; its steps are replaced by ``settings.epochs``
    passes over the kept samples, and it never adds input noise.
    Returns the student (eval mode) and what was done (kept samples, mean entropies).
    """
    if len(reference_x) == 0:
        raise ValueError("MD needs a non-empty reference set (the server's test pool: raise test-fraction)")
    soft = predict_proba(teacher, reference_x, device, temperature=settings.temperature)
    kept = low_entropy_indices(soft, settings.keep)
    student = make_student()
    steps = Recipe(1, recipe.batch_size, recipe.lr, recipe.momentum, recipe.weight_decay, recipe.grad_clip)
    steps = steps.epochs_to_steps(settings.epochs, len(kept))
    fit = train_classifier(student, reference_x[kept], torch.from_numpy(soft[kept]).float(), steps, seed,
                           device=device)
    ent = entropy(soft)
    info = {"reference": int(len(reference_x)), "kept": int(len(kept)), "steps": steps.steps,
            "entropy-kept": float(ent[kept].mean()), "entropy-all": float(ent.mean()),
            "student-fit-loss": fit["loss"]}
    return student.eval(), info
