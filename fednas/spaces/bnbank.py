"""Many BatchNorm2d modules updated as one: their buffers packed as views of one tensor.

A fused supernet normalises thousands of per-edge BatchNorms with one set of batch
statistics per node, but each module keeps its own ``running_mean``, ``running_var`` and
``num_batches_tracked`` (the state_dict names must not change). Updating them one by one
costs a dispatch each (tens of milliseconds per forward at P = 32). Here each kind of buffer
of all the modules is one tensor, and each module's buffer is a view of one of its rows, so
one in-place operation updates them all and the modules still see their own values.

Whoever replaces a module's buffer (``load_state_dict(assign=True)``, ``functional_call``,
``.to(device)``) breaks the packing; then the bank works on whatever tensors the modules
hold now, one by one (correct, slower) until :meth:`BatchNormBank.pack` is called again.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

_NAMES = ("running_mean", "running_var", "num_batches_tracked")


class BatchNormBank:
    """The buffers of ``modules`` (BatchNorm2d, affine=False, fixed momentum), packed."""

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        self.modules = list(modules)
        if not self.modules:
            raise ValueError("a BatchNormBank needs at least one module")
        first = self.modules[0]
        if first.momentum is None:
            raise ValueError("fused BatchNorms need a fixed momentum (cumulative averaging is not supported)")
        for bn in self.modules:
            if (bn.eps, bn.momentum, bn.affine, bn.track_running_stats) != (first.eps, first.momentum, False, True):
                raise ValueError("fused BatchNorms must share eps and momentum, without affine, tracking statistics")
        self.eps = float(first.eps)
        self._packed: dict[str, tuple[torch.Tensor, tuple[torch.Tensor, ...]]] = {}
        self.pack()

    @property
    def momentum(self) -> float:
        """The modules' momentum now: read at every update, so that a recalibration pass
        (:func:`fednas.batchnorm.recalibrate`) can set it batch by batch on the modules."""
        momentum = self.modules[0].momentum
        if momentum is None:
            raise ValueError("fused BatchNorms need a fixed momentum (cumulative averaging is not supported)")
        return float(momentum)

    @torch.no_grad()
    def pack(self) -> None:
        """Make every module's buffers views of one tensor per buffer name (values unchanged)."""
        for name in _NAMES:
            base = torch.stack([m._buffers[name] for m in self.modules])
            views = base.unbind(0)
            for m, v in zip(self.modules, views):
                m._buffers[name] = v
            self._packed[name] = (base, views)

    def _base(self, name: str) -> torch.Tensor | None:
        """The packed tensor of ``name`` if every module still holds its view, else None."""
        base, views = self._packed[name]
        if all(m._buffers[name] is v for m, v in zip(self.modules, views)):
            return base
        return None

    def _current(self, name: str) -> list[torch.Tensor]:
        return [m._buffers[name] for m in self.modules]

    def running(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Running means and variances, one row per module: [N, C] each."""
        out = []
        for name in ("running_mean", "running_var"):
            base = self._base(name)
            out.append(base if base is not None else torch.stack(self._current(name)))
        return out[0], out[1]

    @torch.no_grad()
    def update(self, mean: torch.Tensor, var: torch.Tensor) -> None:
        """Fold batch means and unbiased variances ([N, C], one row per module) in, as BatchNorm2d does."""
        momentum = self.momentum
        keep = 1.0 - momentum
        for name, batch in (("running_mean", mean), ("running_var", var)):
            base = self._base(name)
            if base is not None:
                base.mul_(keep).add_(batch, alpha=momentum)
            elif _transformed(batch):  # foreach ops have no vmap batching rule: one module at a time
                for r, b in zip(self._current(name), batch.unbind(0)):
                    r.mul_(keep).add_(b, alpha=momentum)
            else:
                running = self._current(name)
                torch._foreach_mul_(running, keep)
                torch._foreach_add_(running, list(batch.unbind(0)), alpha=momentum)
        base = self._base("num_batches_tracked")
        if base is not None:
            base.add_(1)
        elif _transformed(batch):
            for t in self._current("num_batches_tracked"):
                t.add_(1)
        else:
            torch._foreach_add_(self._current("num_batches_tracked"), 1)


def _transformed(t: torch.Tensor) -> bool:
    """Whether ``t`` is wrapped by a torch.func transform (vmap, grad), where foreach ops fail."""
    return torch._C._functorch.is_functorch_wrapped_tensor(t)
