"""The prediction API: a trained model behind an endpoint that returns probabilities only.

What an MLaaS client sees: for a batch of images, one probability vector each (``probs``),
only the k largest of them (``top-k``, the rest reported as 0) or only the predicted
label (``label``, as a one-hot vector). Never logits, weights, gradients or the model
object; the model is put in eval mode once and never trained through the API.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from fednas.spaces import InputSpec

OUTPUTS = ("probs", "top-k", "label")


class QueryError(ValueError):
    """A query the API cannot answer (wrong shape or type)."""


def restrict(probs: np.ndarray, output: str, k: int = 1) -> np.ndarray:
    """Reduce full probability vectors (N, C) to what an API of kind ``output`` reveals."""
    if output == "probs":
        return probs
    n, c = probs.shape
    if output == "top-k":
        keep = np.argsort(-probs, axis=1, kind="stable")[:, : min(k, c)]
        out = np.zeros_like(probs)
        np.put_along_axis(out, keep, np.take_along_axis(probs, keep, axis=1), axis=1)
        return out
    if output == "label":
        out = np.zeros_like(probs)
        out[np.arange(n), probs.argmax(axis=1)] = 1.0
        return out
    raise ValueError(f"unknown API output {output!r}; choose one of: {', '.join(OUTPUTS)}")


def _forward_fn(model: nn.Module, device: torch.device | str, batch_size: int) -> Callable[[torch.Tensor], np.ndarray]:
    # The model lives only inside this closure: the API object holds no reference to it.
    model = model.to(device).eval()

    @torch.no_grad()
    def forward(x: torch.Tensor) -> np.ndarray:
        out = [torch.softmax(model(x[i : i + batch_size].to(device)).double(), dim=1).cpu()
               for i in range(0, len(x), batch_size)]
        return torch.cat(out).numpy()

    return forward


class PredictionAPI:
    """Black-box access to a classifier: :meth:`query` returns probability vectors only.

    Parameters
    ----------
    model : nn.Module
        The served model (logits out). It is switched to eval mode for good.
    spec : InputSpec
        The input it takes (channels, image size, classes): queries are checked against it.
    output : str
        ``probs``, ``top-k`` or ``label``.
    top_k : int
        k for ``top-k``.
    """

    __slots__ = ("_forward", "spec", "output", "top_k", "queries")

    def __init__(self, model: nn.Module, spec: InputSpec, output: str = "probs", top_k: int = 3,
                 device: torch.device | str = "cpu", batch_size: int = 512) -> None:
        if output not in OUTPUTS:
            raise ValueError(f"unknown API output {output!r}; choose one of: {', '.join(OUTPUTS)}")
        if output == "top-k" and top_k < 1:
            raise ValueError(f"top-k needs k >= 1, got {top_k}")
        self._forward = _forward_fn(model, device, batch_size)
        self.spec, self.output, self.top_k = spec, output, int(top_k)
        self.queries = 0

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    def query(self, x: torch.Tensor | np.ndarray) -> np.ndarray:
        """Probability vectors (N, classes), float64, rows summing to at most 1."""
        x = self._validate(x)
        self.queries += len(x)
        if len(x) == 0:
            return np.zeros((0, self.num_classes))
        return restrict(self._forward(x), self.output, self.top_k)

    def _validate(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise QueryError(f"queries must be a float tensor or array of images, got {type(x).__name__}"
                             + (f" of {x.dtype}" if isinstance(x, torch.Tensor) else ""))
        want = (self.spec.channels, self.spec.image_size, self.spec.image_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != want:
            raise QueryError(f"query set has shape {tuple(x.shape)}; this API takes (N, {want[0]}, {want[1]}, {want[2]}) "
                             "images")
        return x.float()

    def __repr__(self) -> str:
        return f"PredictionAPI(output={self.output!r}, classes={self.num_classes}, queries={self.queries})"
