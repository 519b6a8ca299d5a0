"""How the dummy images are parametrised, and the image priors of strong mode.

``Pixels``: the images themselves, kept in the [0, 1] box by projection after every step
(the box prior). ``PCA``: images as the mean plus a combination of the principal
components of the attacker's auxiliary pool (a learned prior: the dummy can only be
digit-like), clamped to the box. Total variation penalises pixel noise.
"""

from __future__ import annotations

import numpy as np
import torch


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of neighbouring pixels, per leading index: x (N, ..., H, W) -> (N,)."""
    dh = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
    dw = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1)
    return dh + dw


class Pixels:
    """Dummy images as free pixels, projected into [0, 1] after every step."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = self.param_shape = shape

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return images.clone()

    def images(self, params: torch.Tensor) -> torch.Tensor:
        return params

    @torch.no_grad()
    def project(self, params: torch.Tensor) -> None:
        params.clamp_(0.0, 1.0)


class PCA:
    """Dummy images as aux-pool mean + Σ c_i σ_i v_i (clamped to [0, 1])."""

    def __init__(self, shape: tuple[int, ...], aux_images: np.ndarray, components: int,
                 device: torch.device | str = "cpu") -> None:
        flat = np.asarray(aux_images, np.float64).reshape(len(aux_images), -1)
        if flat.shape[1] != int(np.prod(shape[-3:])):
            raise ValueError(f"aux images of size {flat.shape[1]} do not fit the input shape {shape[-3:]}")
        k = min(components, flat.shape[0] - 1, flat.shape[1])
        if k < 1:
            raise ValueError("the pca prior needs at least two aux images")
        mean = flat.mean(0)
        _, s, vt = np.linalg.svd(flat - mean, full_matrices=False)
        scale = s[:k] / np.sqrt(max(len(flat) - 1, 1))
        self.shape, self.k = shape, k
        self.param_shape = (*shape[:-3], k)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device)
        self.basis = torch.tensor(vt[:k] * scale[:, None], dtype=torch.float32, device=device)  # (k, D)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Least-squares coefficients of images (..., C, H, W) in the basis."""
        flat = images.reshape(*images.shape[:-3], -1) - self.mean
        coef = torch.linalg.lstsq(self.basis.T, flat.reshape(-1, flat.shape[-1]).T).solution.T
        return coef.reshape(*flat.shape[:-1], self.k)

    def offsets(self, params: torch.Tensor) -> torch.Tensor:
        """Σ c_i σ_i v_i as images (no mean, no clamp): moves away from a given image."""
        return (params @ self.basis).reshape(*params.shape[:-1], *self.shape[-3:])

    def images(self, params: torch.Tensor) -> torch.Tensor:
        flat = self.mean + params @ self.basis
        return flat.reshape(*params.shape[:-1], *self.shape[-3:]).clamp(0.0, 1.0)

    def project(self, params: torch.Tensor) -> None:
        return None
