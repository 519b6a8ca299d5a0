"""What every NAS paradigm provides, and the arrays it puts on the wire.

A paradigm decides what a client searches and what it sends. Everything travels as
``{name: tensor}`` arrays, in three families the rest of the pipeline tells apart by name:

- **architecture state**, names starting with ``alpha`` (what the eavesdropper records as
  α, what ADRA attacks, what the update-level DP mod clips and noises): DARTS's and
  P-DARTS's α, ENAS's controller, its reward baseline and ranking scores, SMASH's
  ranking scores;
- **weights** θ, every other model array (sent when ``share-weights``);
- **server state**, names starting with ``paradigm.`` (:data:`STATE_PREFIX`): what the
  server decides and tells the clients (P-DARTS's stage, kept ops and skip dropout;
  the candidate architectures ENAS and SMASH rank). Clients read it and never send it
  back: the server strategy wrapper adds it to every message and to the aggregate, so
  FedAvg, its wrappers and the DP mods never see it.

The server side is plain functions over those arrays (:meth:`Paradigm.server_configure`),
the client side one round on given data (:meth:`Paradigm.client_round`), so the same
code runs under Flower, in the in-process loop of the tests and in the attacker's
searched shadows.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from fednas.data import ClientSplit, ImageSet
from fednas.spaces import Genotype, InputSpec

STATE_PREFIX = "paradigm."
ALPHA_PREFIX = "alpha"

Arrays = Mapping[str, Any]  # name -> torch tensor or numpy array


def split_state(arrays: Arrays) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model arrays, server state) of a message's arrays."""
    model = {k: v for k, v in arrays.items() if not k.startswith(STATE_PREFIX)}
    state = {k: v for k, v in arrays.items() if k.startswith(STATE_PREFIX)}
    return model, state


def as_tensors(arrays: Arrays) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(np.asarray(v)) if not isinstance(v, torch.Tensor) else v for k, v in arrays.items()}


def as_numpy(arrays: Arrays) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v) for k, v in arrays.items()}


def state_value(state: Arrays, name: str) -> np.ndarray:
    """One server-state array (``paradigm.<name>``); a clear error when the server did not send it."""
    key = STATE_PREFIX + name
    if key not in state:
        raise KeyError(f"the arrays lack the server state {key!r} (sent by the paradigm's server wrapper)")
    value = state[key]
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def spec_of(cfg: Any) -> InputSpec:
    """The input spec of the run's dataset (what the server needs to build a network)."""
    from fednas.data import dataset_from_config

    return dataset_from_config(cfg.data, cfg.run.seed).spec


class Paradigm(abc.ABC):
    """One NAS paradigm (see the module docstring); stateless, every method takes the config."""

    name: str = ""

    @abc.abstractmethod
    def initial_arrays(self, cfg: Any, spec: InputSpec) -> dict[str, torch.Tensor]:
        """What the server sends in round 1: architecture state, θ when shared, server state."""

    def server_configure(self, cfg: Any, server_round: int, arrays: Arrays) -> tuple[dict[str, Any], dict[str, Any]]:
        """Before round ``server_round`` is sent: (model arrays, server state) to send.

        ``arrays`` are the global arrays (the last aggregate, with the server state the
        wrapper kept). Default: nothing changes.
        """
        return split_state(arrays)

    @abc.abstractmethod
    def client_round(self, cfg: Any, settings: Any, arrays: Arrays, dataset: ImageSet, split: ClientSplit, *,
                     seed: Any, device: torch.device | str = "cpu", local_theta: Arrays | None = None,
                     alpha_gradient: Any = None, input_noise: Any = None, partition_id: int = 0,
                     server_round: int = 0) -> Any:
        """One client's round on ``split`` of ``dataset``: a :class:`fednas.federated.ClientRound`."""

    @abc.abstractmethod
    def model(self, cfg: Any, spec: InputSpec, arrays: Arrays) -> nn.Module:
        """The network the arrays describe, as served (eval-ready; ``forward(x)`` gives logits)."""

    @abc.abstractmethod
    def genotype(self, cfg: Any, spec: InputSpec, arrays: Arrays) -> Genotype:
        """The architecture the arrays select now (the final one after the last round)."""
