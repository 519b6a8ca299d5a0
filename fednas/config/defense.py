"""Defenses against membership inference: noisy training inputs, and MD (distillation) at serving
(``cfg.defense``). The LR defense is the search's ``alpha-l2``.
"""

from __future__ import annotations

from fednas.config.schema import Key, in_unit, keys_of, non_negative, positive

_k = keys_of("defense")

# fmt: off
KEYS: tuple[Key, ...] = (
    _k("input-noise-std", 0.0,
       "The DP defense of AMIA: std of Gaussian noise added to every training input (clients' D^theta and "
       "D^alpha, and a retrained target). The paper's N(0, 0.01) is std 0.1. 0: off.",
       check=non_negative, rule=">= 0"),
    _k("input-noise-mode", "fixed",
       "fixed: each sample perturbed once (seeded by its index), as the paper perturbs the training set; fresh: "
       "new noise at every use.",
       choices=("fixed", "fresh")),
    _k("md", False,
       "The MD defense (DMP-style distillation): the API serves a student trained on the target's soft labels of "
       "a reference set (the server's test pool)."),
    _k("md-student", "same",
       "Student architecture: same (the served architecture, fresh weights) or cnn (a small CNN).",
       choices=("same", "cnn")),
    _k("md-keep", 0.5,
       "Share of the reference set kept for the student: its lowest-entropy samples (DMP).",
       check=in_unit, rule="in (0, 1]"),
    _k("md-temperature", 1.0,
       "Softmax temperature of the teacher's soft labels.",
       check=positive, rule="> 0"),
    _k("md-epochs", 100,
       "Epochs of the student's training on the kept reference samples.",
       check=positive, rule="> 0"),
)
# fmt: on

# The MD keys act when the final model is served (python -m attacks.amia), not in training:
# an offline AMIA run may change them, as it may change the amia keys.
MD_KEYS = frozenset(k.name for k in KEYS if k.name == "md" or k.name.startswith("md-"))
