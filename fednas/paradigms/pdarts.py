"""P-DARTS, federated: the server runs the stages, the clients search within one.

The reference (chenxin061/pdarts, ``train_search.py``) searches in stages: stage s builds
a fresh, deeper network whose edges keep only the ops that survived (8, then 5, then 3;
``pdarts-keep`` says how many survive each stage), holds α back for the first 10 of its
25 epochs (``pdarts-arch-warmup``) while skip connections are dropped out at a rate that
decays through the stage (``pdarts-dropout``), then drops the weakest ops of every edge
by softmax(α) (the ``none`` op first at the last stage). After the last stage, one op per
edge, two inputs per node, at most two skip connections in the normal cell.

Here rounds play epochs. The server (:meth:`PDarts.server_configure`) maps round r to
stage ⌊(r−1)·S/R⌋ of S, and when the stage changes it prunes with the *averaged* α of the
last round, builds the new stage's network (seeded: fresh θ and α, as the reference
rebuilds its model) and tells the clients through the server state:
``paradigm.stage``, ``paradigm.switches`` (edges × 8, 1 = kept; ``_normal``/``_reduce``
in the darts space), ``paradigm.train-alpha`` (0 in a warm-up round) and
``paradigm.skip-dropout``. α's shape is (edges, kept): it changes with the stage, and
every consumer (eavesdropper, ADRA, AMIA) rebuilds the network from that state.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from fednas.config import number_list
from fednas.data import ClientSplit
from fednas.ops import PRIMITIVES
from fednas.paradigms.base import STATE_PREFIX, Arrays, as_numpy, spec_of, split_state, state_value
from fednas.paradigms.darts import Darts
from fednas.paradigms.pdarts_net import NONE, PdartsDag, PdartsDarts
from fednas.spaces import InputSpec, Supernet, init_weights
from fednas.spaces.dag import dag_edges

DROPOUT_DECAY = 0.2  # the reference's scale_factor: p·exp(−0.2·epochs since α started)


# --------------------------------------------------------------------------- the schedule


def stage_of(server_round: int, num_rounds: int, stages: int) -> int:
    """Stage of round ``server_round`` (1-based): the rounds split evenly over the stages."""
    return min(stages - 1, (server_round - 1) * stages // max(num_rounds, 1))


def stage_rounds(stage: int, num_rounds: int, stages: int) -> list[int]:
    return [r for r in range(1, num_rounds + 1) if stage_of(r, num_rounds, stages) == stage]


def round_knobs(server_round: int, num_rounds: int, stages: int, warmup: float, dropout: float) -> tuple[bool, float]:
    """(α trains this round, skip dropout rate) as the reference sets them per epoch."""
    rounds = stage_rounds(stage_of(server_round, num_rounds, stages), num_rounds, stages)
    epochs, epoch = len(rounds), rounds.index(server_round)
    held = math.floor(warmup * epochs)
    if epoch < held:
        return False, dropout * (epochs - epoch - 1) / epochs
    return True, dropout * math.exp(-(epoch - held) * DROPOUT_DECAY)


def prune(switches: np.ndarray, probs: np.ndarray, keep: int, last: bool) -> np.ndarray:
    """Drop the weakest kept ops of every edge until ``keep`` remain (``get_min_k``).

    ``probs`` (edges, kept) are softmax(α) over the kept ops in PRIMITIVES order. At the
    ``last`` stage the ``none`` op is dropped first (``get_min_k_no_zero``).
    """
    out = np.array(switches, dtype=np.float32, copy=True)
    for e, row in enumerate(out):
        kept = np.flatnonzero(row > 0.5)
        if len(kept) != probs.shape[1]:
            raise ValueError(f"edge {e} keeps {len(kept)} ops but alpha has {probs.shape[1]} columns")
        n_drop = len(kept) - keep
        if n_drop <= 0:
            continue
        order = list(np.argsort(probs[e], kind="stable"))
        if last and NONE in kept:
            z = int(np.flatnonzero(kept == NONE)[0])
            order = [z] + [i for i in order if i != z]
        out[e, kept[order[:n_drop]]] = 0.0
    return out


# --------------------------------------------------------------------------- the paradigm


def _settings(cfg: Any) -> dict[str, list]:
    p = cfg.paradigm
    return {"keep": number_list(p.pdarts_keep), "add": number_list(p.pdarts_add_layers),
            "cells": number_list(p.pdarts_dag_cells), "dropout": number_list(p.pdarts_dropout, float)}


class HeldBack:
    """α-gradient rule of a warm-up round: zero gradients (α does not move; the reference
    does not even read D^α then), loss and accuracy for the round's metrics."""

    def __call__(self, model: Supernet, batch: tuple[torch.Tensor, torch.Tensor], ctx: Any):
        x, y = batch
        with torch.no_grad():
            logits = model(x)
        grads = [torch.zeros_like(p) for p in model.arch_parameters()]
        return grads, float(torch.nn.functional.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean())


class PDarts(Darts):
    """Progressive DARTS (module docstring)."""

    name = "pdarts"
    server_state = True
    supernet_search = False  # a stage's own network: pruned α, more cells than the configured supernet
    recalibrates_statistics = False  # replies the θ steps' moving averages (the config refuses bn-statistics = client)

    def kinds(self, cfg: Any) -> tuple[str, ...]:
        return ("dag",) if cfg.space.space == "dag" else ("normal", "reduce")

    def switch_key(self, kind: str) -> str:
        return STATE_PREFIX + ("switches" if kind == "dag" else f"switches_{kind}")

    def full_switches(self, cfg: Any) -> dict[str, np.ndarray]:
        s = cfg.space
        n = len(dag_edges(s.dag_nodes)) if s.space == "dag" else sum(2 + i for i in range(s.cell_nodes))
        return {kind: np.ones((n, len(PRIMITIVES)), np.float32) for kind in self.kinds(cfg)}

    def network(self, cfg: Any, spec: InputSpec, state: Arrays) -> Supernet:
        """The stage's search network, seeded by (seed, stage) like a fresh reference model."""
        s, opts = cfg.space, _settings(cfg)
        stage = int(round(float(state_value(state, "stage").reshape(-1)[0]))) if state else 0
        switches = {kind: state_value(state, self.switch_key(kind)[len(STATE_PREFIX):]) for kind in self.kinds(cfg)} \
            if state else self.full_switches(cfg)
        seed = cfg.run.seed + 7919 * stage
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if s.space == "dag":
                model = PdartsDag(spec, s.dag_nodes, s.channels, s.activation, s.head, switches["dag"],
                                  opts["cells"][stage], cfg.paradigm.pdarts_max_skip)
            else:
                model = PdartsDarts(spec, s.layers + opts["add"][stage], s.cell_nodes, s.channels, s.activation, s.head,
                                    switches, cfg.paradigm.pdarts_max_skip)
        init_weights(model, s.theta_init, s.theta_init_bound, s.alpha_init_scale, torch.Generator().manual_seed(seed + 1))
        return model

    def stage_state(self, cfg: Any, server_round: int, stage: int, switches: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        opts = _settings(cfg)
        train, p = round_knobs(max(server_round, 1), cfg.fed.num_server_rounds, len(opts["keep"]),
                               cfg.paradigm.pdarts_arch_warmup, opts["dropout"][stage])
        state = {STATE_PREFIX + "stage": np.array([stage], np.float32),
                 STATE_PREFIX + "train-alpha": np.array([float(train)], np.float32),
                 STATE_PREFIX + "skip-dropout": np.array([p], np.float32)}
        state.update({self.switch_key(k): np.asarray(v, np.float32) for k, v in switches.items()})
        return state

    def initial_arrays(self, cfg: Any, spec: InputSpec) -> dict[str, Any]:
        state = self.stage_state(cfg, 1, 0, self.full_switches(cfg))
        model = self.network(cfg, spec, state)
        return {**model.arch_state(), **(model.weight_state() if cfg.search.share_weights else {}), **state}

    def server_configure(self, cfg: Any, server_round: int, arrays: Arrays) -> tuple[dict[str, Any], dict[str, Any]]:
        """Prune and rebuild when round ``server_round`` starts a new stage; set the round's knobs."""
        model_arrays, state = split_state(as_numpy(arrays))
        opts = _settings(cfg)
        stages = len(opts["keep"])
        current = int(round(float(state_value(state, "stage").reshape(-1)[0])))
        target = stage_of(server_round, cfg.fed.num_server_rounds, stages)
        switches = {k: state_value(state, self.switch_key(k)[len(STATE_PREFIX):]) for k in self.kinds(cfg)}
        for stage in range(current, target):  # normally one step; more when rounds were too few for a stage
            for kind in self.kinds(cfg):
                alpha = model_arrays["alpha" if kind == "dag" else f"alpha_{kind}"]
                probs = torch.softmax(torch.as_tensor(alpha, dtype=torch.float64), -1).numpy()
                switches[kind] = prune(switches[kind], probs, opts["keep"][stage], stage == stages - 1)
            fresh = self.network(cfg, spec_of(cfg), self.stage_state(cfg, server_round, stage + 1, switches))
            model_arrays = {**as_numpy(fresh.arch_state()),
                            **(as_numpy(fresh.weight_state()) if cfg.search.share_weights else {})}
        return model_arrays, self.stage_state(cfg, server_round, target, switches)

    def prepare(self, model: Supernet, state: Arrays) -> None:
        if state:
            model.set_skip_dropout(float(state_value(state, "skip-dropout").reshape(-1)[0]))

    def round_rule(self, cfg: Any, state: Arrays, alpha_gradient: Any, split: ClientSplit, settings: Any):
        if not state or float(state_value(state, "train-alpha").reshape(-1)[0]) > 0.5:
            return alpha_gradient, settings
        if alpha_gradient is not None and hasattr(alpha_gradient, "sampler"):
            # The DP-SGD mod accounts what the private rule reports: zero steps at the rate
            # it would have sampled (an event of zero steps costs nothing).
            alpha_gradient.sampler.population = len(split.alpha)
            alpha_gradient.sampler.sample_rate = min(1.0, settings.alpha_batch_size / max(len(split.alpha), 1))
        # no weight decay either: Adam then leaves α exactly where it is
        return HeldBack(), replace(settings, alpha_weight_decay=0.0)
