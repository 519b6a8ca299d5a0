"""DARTS as a paradigm: α by gradient on D^α, θ on D^θ (the project's own search).

The one DARTS round: what a client runs under Flower (:mod:`fednas.federated` dispatches
here), in the in-process loop and in the attacker's searched shadows. Around
:func:`fednas.search.local_search` it adds FedProx's proximal term (``proximal-mu`` from
the strategy, ``proximal-alpha``), the α warm-up rounds (``alpha-warmup-rounds``) and the
BatchNorm recalibration of the reply (``bn-statistics``). It is the base of P-DARTS, which
changes the network a round builds and whether α may move (the config refuses the
settings above for P-DARTS, whose round holds α back by its own schedule).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from fednas.batchnorm import recalibrate_on_theta, recalibrates_reply
from fednas.data import ClientSplit, ImageSet
from fednas.noise import input_noise_from_config
from fednas.paradigms.base import ALPHA_PREFIX, Arrays, ClientRound, Paradigm, as_tensors, split_state
from fednas.search import Proximal, SearchResult, local_search
from fednas.spaces import Genotype, InputSpec, Supernet, build_supernet


def load_matching(model: torch.nn.Module, arrays: Arrays | None) -> list[str]:
    """Load the arrays whose name and shape the model has; return the names left out.

    For a client's own θ kept between rounds, which a P-DARTS stage change makes stale.
    """
    if not arrays:
        return []
    state = model.state_dict()
    fits = {k: v for k, v in as_tensors(arrays).items() if k in state and tuple(v.shape) == tuple(state[k].shape)}
    if fits:
        model.load_arrays(fits) if isinstance(model, Supernet) else model.load_state_dict(fits, strict=False)
    return sorted(set(arrays) - set(fits))


def audit_record(result: SearchResult, settings: Any, partition_id: int, server_round: int) -> dict[str, Any]:
    """The reply's ``audit`` record: which D^α samples each architecture step used."""
    return {
        "partition-id": partition_id,
        "server-round": server_round,
        "alpha-batch-size": int(settings.alpha_batch_size),
        "alpha-steps": len(result.alpha_batches),  # 0 in a warm-up round
        # flat, step after step; each step holds alpha-batch-size indices (or all of a
        # smaller D^α): global indices into the loaded dataset
        "alpha-indices": [i for batch in result.alpha_batches for i in batch],
        "alpha-batch-sizes": [len(b) for b in result.alpha_batches],
    }


def search_reply(model: Supernet, result: SearchResult, split: ClientSplit, settings: Any, sent_theta: bool,
                 partition_id: int, server_round: int, extra_metrics: Mapping[str, float] | None = None) -> ClientRound:
    """The reply of a finished local search: α, and θ when the server sent θ (else θ stays local)."""
    reply = dict(model.arch_state())
    theta = dict(model.weight_state())
    if sent_theta:
        reply.update(theta)
    metrics = {**result.metrics, "num-examples": int(len(split.theta) + len(split.alpha)),
               "local-steps": result.steps, "train-seconds": result.seconds, **(extra_metrics or {})}
    return ClientRound(reply, metrics, audit_record(result, settings, partition_id, server_round),
                       {} if sent_theta else theta)


class Darts(Paradigm):
    """Bilevel DARTS search on the configured supernet."""

    name = "darts"
    server_state = False
    supernet_search = True
    recalibrates_statistics = True

    def network(self, cfg: Any, spec: InputSpec, state: Arrays) -> Supernet:
        """The search network the server state describes (DARTS: the configured supernet)."""
        return build_supernet(cfg.space, spec, cfg.run.seed)

    def initial_arrays(self, cfg: Any, spec: InputSpec) -> dict[str, torch.Tensor]:
        model = self.network(cfg, spec, {})
        return {**model.arch_state(), **(model.weight_state() if cfg.search.share_weights else {})}

    def round_rule(self, cfg: Any, state: Arrays, alpha_gradient: Any, split: ClientSplit, settings: Any) -> tuple[Any, Any]:
        """(α-gradient rule, settings) of this round: DARTS uses what it was given."""
        return alpha_gradient, settings

    def prepare(self, model: Supernet, state: Arrays) -> None:
        """Set per-round knobs the server state carries (DARTS: none)."""

    def client_round(self, cfg: Any, settings: Any, arrays: Arrays, dataset: ImageSet, split: ClientSplit, *,
                     seed: Any, device: torch.device | str = "cpu", local_theta: Arrays | None = None,
                     alpha_gradient: Any = None, input_noise: Any = None, partition_id: int = 0,
                     server_round: int = 0, proximal_mu: float | None = None) -> ClientRound:
        device = torch.device(device)
        model_arrays, state = split_state(arrays)
        model = self.network(cfg, dataset.spec, state).to(device)
        load_matching(model, local_theta)
        model.load_arrays(as_tensors(model_arrays))
        self.prepare(model, state)
        rule, settings = self.round_rule(cfg, state, alpha_gradient, split, settings)
        sent_theta = any(not k.startswith(ALPHA_PREFIX) for k in model_arrays)
        # FedProx's term sits at the arrays as received (θ when it was sent, α with proximal-alpha)
        proximal = None if proximal_mu is None else Proximal.at(model, proximal_mu, sent_theta, settings.proximal_alpha)
        # a warm-up round (1..alpha-warmup-rounds) trains θ only
        train_alpha = settings.alpha_warmup_rounds == 0 or server_round > settings.alpha_warmup_rounds
        result = local_search(model, dataset, split, settings, seed, device, alpha_gradient=rule,
                              input_noise=input_noise, proximal=proximal, train_alpha=train_alpha)
        if self.recalibrates_statistics and recalibrates_reply(settings, sent_theta):
            # the statistics of the θ (and α) this client replies
            recalibrate_on_theta(model, dataset, split, settings, device, input_noise, seed)
        return search_reply(model, result, split, settings, sent_theta, partition_id, server_round,
                            {"on-cuda": float(device.type == "cuda")})  # 1: this round really ran on a GPU

    def evaluation_model(self, cfg: Any, dataset: ImageSet, split: ClientSplit, arrays: Arrays,
                         local_theta: Arrays | None, device: torch.device | str, seed: Any) -> Supernet:
        """The global arrays over the client's own θ; with its own θ, whose statistics were taken
        under the α it last trained, they are re-estimated on D^θ for the global α first (unless
        ``bn-statistics = "ema"``). With shared θ the model is evaluated as the server holds it."""
        model = self.model(cfg, dataset.spec, {**(local_theta or {}), **arrays}).to(device)
        sent_theta = any(not k.startswith(ALPHA_PREFIX) for k in split_state(arrays)[0])
        if self.recalibrates_statistics and local_theta and not sent_theta and cfg.search.bn_statistics != "ema":
            recalibrate_on_theta(model, dataset, split, cfg.search, device, input_noise_from_config(cfg), seed)
        return model

    def model(self, cfg: Any, spec: InputSpec, arrays: Arrays) -> Supernet:
        model_arrays, state = split_state(arrays)
        model = self.network(cfg, spec, state)
        alpha = {k: v for k, v in as_tensors(model_arrays).items() if k.startswith(ALPHA_PREFIX)}
        model.load_arrays(alpha)
        # θ may be a client's own from an earlier P-DARTS stage (it did not train this round)
        load_matching(model, {k: v for k, v in model_arrays.items() if k not in alpha})
        return model.eval()

    def genotype(self, cfg: Any, spec: InputSpec, arrays: Arrays) -> Genotype:
        model_arrays, state = split_state(arrays)
        model = self.network(cfg, spec, state)
        model.load_arrays({k: v for k, v in as_tensors(model_arrays).items() if k.startswith(ALPHA_PREFIX)})
        return model.genotype(cfg.space.genotype_k)
