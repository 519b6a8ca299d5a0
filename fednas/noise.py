"""Gaussian noise on training inputs: the paper's "DP" defense against AMIA.

Li et al. (section 5) add noise drawn from N(0, 0.01) to every training sample. Read as
N(mean, variance), that is a standard deviation of 0.1 on pixels in [0, 1]. Two readings
of "added to every sample" are offered:

``fixed``
    every sample is perturbed once and for all: its noise is drawn from a generator seeded
    by (seed, sample id), so the model only ever sees that one noisy copy (the paper's
    wording: the training *set* is perturbed).
``fresh``
    new noise each time a sample is drawn (Gaussian data augmentation).

No clipping to [0, 1]: the noise is what it says. This is a heuristic defense, with no
(ε, δ) guarantee attached.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

NOISE_MODES = ("fixed", "fresh")


@dataclass(frozen=True)
class InputNoise:
    """Adds N(0, std²) noise to a batch of training inputs.

    Parameters
    ----------
    std : float
        Standard deviation (> 0).
    mode : str
        ``fixed`` (one draw per sample id) or ``fresh`` (a new draw at every use).
    seed : int
        Seed of the ``fixed`` draws (the run's seed).
    """

    std: float
    mode: str = "fixed"
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.std > 0:
            raise ValueError(f"input noise std must be > 0, got {self.std}")
        if self.mode not in NOISE_MODES:
            raise ValueError(f"unknown input-noise-mode {self.mode!r}; choose one of: {', '.join(NOISE_MODES)}")

    def __call__(self, x: torch.Tensor, ids: Sequence[int], rng: np.random.Generator) -> torch.Tensor:
        """Return ``x`` plus noise; ``ids`` name the samples (global indices), ``rng``
        feeds the ``fresh`` mode."""
        if len(ids) != len(x):
            raise ValueError(f"{len(ids)} sample ids for a batch of {len(x)}")
        if len(x) == 0:  # an empty (Poisson-sampled) batch
            return x
        if self.mode == "fresh":
            noise = torch.from_numpy(rng.standard_normal(tuple(x.shape)).astype(np.float32))
        else:
            noise = torch.stack([self.fixed_noise(int(i), tuple(x.shape[1:])) for i in ids])
        return x + self.std * noise.to(device=x.device, dtype=x.dtype)

    def fixed_noise(self, sample_id: int, shape: tuple[int, ...]) -> torch.Tensor:
        """The unit-variance noise of one sample in ``fixed`` mode (same id, same draw)."""
        seed = int(np.random.SeedSequence([self.seed, 0x6E6F, sample_id & 0xFFFFFFFF, sample_id >> 32]).generate_state(1)[0])
        return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def input_noise_from_config(cfg: Any) -> InputNoise | None:
    """The run's input noise (``defense`` group), or None when ``input-noise-std`` is 0."""
    d = cfg.defense
    return InputNoise(d.input_noise_std, d.input_noise_mode, cfg.run.seed) if d.input_noise_std > 0 else None
