"""What every supernet shares: alpha as named parameters, theta as the rest, init, genotype."""

from __future__ import annotations

import abc
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from fednas.spaces.genotype import Genotype

# BatchNorm's step counters are integers that FedAvg would turn into floats and that
# nothing reads (momentum is fixed): they never leave the client.
_LOCAL_BUFFERS = ("num_batches_tracked",)


@dataclass(frozen=True)
class InputSpec:
    """What the dataset tells the supernet: input channels, image size, classes."""

    channels: int
    image_size: int
    num_classes: int


class Supernet(nn.Module, abc.ABC):
    """Base class: α are the parameters whose names start with ``alpha``; θ is the rest."""

    alpha_prefix = "alpha"

    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture parameters α, in a fixed order."""
        return [p for _, p in self.named_arch_parameters()]

    def named_arch_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """α by name, in ``named_parameters`` order, without walking every submodule.

        A name starts with the prefix only if it is this module's own parameter or lies
        under a child whose name does; a supernet has thousands of other modules, and
        walking them cost ~0.3 s per call at P = 32 (called every α step).
        """
        out = [(n, p) for n, p in self._parameters.items() if p is not None and n.startswith(self.alpha_prefix)]
        for name, child in self._modules.items():
            if child is not None and name.startswith(self.alpha_prefix):
                out += [(f"{name}.{n}", p) for n, p in child.named_parameters()]
        return out

    def weight_parameters(self) -> list[nn.Parameter]:
        """The ordinary weights θ."""
        return [p for n, p in self.named_parameters() if not n.startswith(self.alpha_prefix)]

    def named_weight_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.named_parameters() if not n.startswith(self.alpha_prefix)]

    def arch_state(self) -> OrderedDict[str, torch.Tensor]:
        """α as a detached CPU ``{name: tensor}`` (what a client sends)."""
        return OrderedDict((n, p.detach().cpu().clone()) for n, p in self.named_arch_parameters())

    def weight_state(self) -> OrderedDict[str, torch.Tensor]:
        """θ and BatchNorm running statistics, detached on CPU (what FedNAS shares)."""
        return OrderedDict(
            (n, t.detach().cpu().clone())
            for n, t in self.state_dict().items()
            if not n.startswith(self.alpha_prefix) and not n.endswith(_LOCAL_BUFFERS)
        )

    def load_arrays(self, arrays: Mapping[str, torch.Tensor]) -> None:
        """Copy α and/or θ from a ``{name: tensor}`` mapping; unknown names are an error."""
        state = self.state_dict()
        unknown = [k for k in arrays if k not in state]
        if unknown:
            raise KeyError(f"arrays hold names this supernet does not have: {unknown[:5]}")
        with torch.no_grad():
            for name, value in arrays.items():
                target = state[name]
                if tuple(value.shape) != tuple(target.shape):
                    raise ValueError(
                        f"array {name!r} has shape {tuple(value.shape)}, the supernet expects {tuple(target.shape)}"
                    )
                target.copy_(torch.as_tensor(value, dtype=target.dtype))

    def stop_tracking_running_stats(self) -> None:
        """See :func:`stop_tracking_running_stats`."""
        stop_tracking_running_stats(self)

    @abc.abstractmethod
    def genotype(self, k: int = 2) -> Genotype:
        """Derive the discrete architecture, keeping ``k`` inputs per node."""


def stop_tracking_running_stats(module: nn.Module) -> None:
    """BatchNorm: normalise by batch statistics in train mode and never update the running
    ones (eval mode still reads them). For replicas that only differentiate train-mode
    passes, e.g. an attacker's: the updates cost time and change no output."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.track_running_stats = False


def init_weights(model: Supernet, scheme: str, bound: float, alpha_scale: float, generator: torch.Generator) -> None:
    """Initialise θ (``uniform`` in [-bound, bound] or torch's ``default``) and α (scale·N(0,1))."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(model.alpha_prefix):
                p.copy_(alpha_scale * torch.randn(p.shape, generator=generator))
            elif scheme == "uniform":
                p.uniform_(-bound, bound, generator=generator)
