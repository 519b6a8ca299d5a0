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
the client side one round on given data (:meth:`Paradigm.client_round`, which returns a
:class:`ClientRound`), so the same code runs under Flower (through :mod:`fednas.federated`),
in the in-process loop of the tests and in the attacker's searched shadows.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from fednas.data import ClientSplit, ImageSet
from fednas.spaces import Genotype, InputSpec

STATE_PREFIX = "paradigm."
ALPHA_PREFIX = "alpha"

Arrays = Mapping[str, Any]  # name -> torch tensor or numpy array


@dataclass
class ClientRound:
    """What a client replies after its local search."""

    arrays: dict[str, torch.Tensor]
    metrics: dict[str, float]
    audit: dict[str, Any]
    theta: dict[str, torch.Tensor] = field(default_factory=dict)  # kept locally when not shared


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
    # The server keeps state (``paradigm.*`` arrays) that its strategy wrapper adds to every
    # message and aggregate (server.paradigm_strategy).
    server_state: bool = True
    # Every round searches the run's configured supernet itself (cfg.space at cfg.run.seed):
    # α is its op weights per edge (what the server's search progress reads), the arrays keep
    # their names and shapes from round to round (replies may travel as deltas) and θ_0 can
    # be rebuilt from the config (ADRA's θ priors, the memory estimate).
    supernet_search: bool = False
    # Its round re-estimates BatchNorm statistics on D^θ as ``bn-statistics`` asks (before
    # replying, before evaluating a client's own θ, and for the server's pooled query);
    # otherwise it replies the θ steps' moving averages.
    recalibrates_statistics: bool = False

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
                     server_round: int = 0, proximal_mu: float | None = None) -> ClientRound:
        """One client's round on ``split`` of ``dataset``.

        ``alpha_gradient`` replaces the architecture-gradient rule (the DP-SGD mod's private
        one); ``proximal_mu`` is FedProx's μ as the strategy sent it (None: no FedProx).
        """

    def evaluation_model(self, cfg: Any, dataset: ImageSet, split: ClientSplit, arrays: Arrays,
                         local_theta: Arrays | None, device: torch.device | str, seed: Any) -> nn.Module:
        """The network a client evaluates: the global arrays over its own θ, on ``device``."""
        return self.model(cfg, dataset.spec, {**(local_theta or {}), **arrays}).to(device)

    @abc.abstractmethod
    def model(self, cfg: Any, spec: InputSpec, arrays: Arrays) -> nn.Module:
        """The network the arrays describe, as served (eval-ready; ``forward(x)`` gives logits)."""

    @abc.abstractmethod
    def genotype(self, cfg: Any, spec: InputSpec, arrays: Arrays) -> Genotype:
        """The architecture the arrays select now (the final one after the last round)."""


def refuse_proximal(paradigm: Paradigm, proximal_mu: float | None) -> None:
    """A clear error when FedProx's μ reaches a paradigm whose round has no proximal term
    (the config refuses ``strategy = "fedprox"`` for it; this guards direct callers)."""
    if proximal_mu is not None:
        raise ValueError(f"paradigm {paradigm.name!r} has no proximal term: FedProx (proximal-mu) is the darts round's")
