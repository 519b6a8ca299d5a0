"""ADRA as an attack object: captures and public knowledge in, reconstructions out."""

from __future__ import annotations

import dataclasses
import logging
import time
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from attacks.adra.client_model import AlphaProcedure, CaptureError, data_free_update, local_alpha_steps
from attacks.adra.generative import solve_generative
from attacks.adra.inverse import MAX_PERMUTED_BATCH, solve_inverse
from attacks.adra.paper import paper_optimizer, solve_paper
from attacks.adra.solver import Problem, Report, solve_strong, strong_optimizer
from attacks.adra.surfaces import NoArchitectureGradient, attack_surface
from attacks.adra.theta import attacker_theta, sampled_theta_paths, searches_supernet, theta_path
from attacks.adra.report import ADRAReport
from attacks.base import Attack, Knowledge, Reconstruction
from fednas.captures import Capture, missing_client_settings
from fednas.config import ConfigError, search_from_record
from fednas.federated import pick_device

log = logging.getLogger(__name__)


DATA_FREE_RTOL = 1e-3  # |Δα − the data-free update| below this share of |Δα|: no information in the capture


def _check_arrays(what: str, arrays: dict[str, np.ndarray], names: list[str], shapes: list[tuple[int, ...]]) -> None:
    missing = [n for n in names if n not in arrays]
    if missing:
        raise CaptureError(f"{what} lacks {missing} (has {sorted(arrays)[:5]})")
    for n, shape in zip(names, shapes):
        a = arrays[n]
        if tuple(a.shape) != tuple(shape):
            raise CaptureError(f"{what} {n!r} has shape {tuple(a.shape)}, the search space has {tuple(shape)}")
        if not np.all(np.isfinite(a)):
            raise CaptureError(f"{what} {n!r} holds NaN or Inf")


# What an app that does not say otherwise is taken to use (torch's defaults; no penalty).
FOREIGN_DEFAULTS = {"alpha-weight-decay": 0.0, "alpha-beta1": 0.9, "alpha-l2": 0.0}


def client_procedure(capture: Capture, foreign: bool = False) -> tuple[Any, dict[str, Any]]:
    """The client's local-search settings (``SearchConfig``) and reply metrics, as the capture shows them.

    This project's captures carry the whole train config; another app's carry only the
    ``client-settings`` its manifest resolved, which must name at least the optimizer, its
    learning rate, B and the local steps.
    """
    settings = dict(capture.meta.get("client-settings") or {})
    metrics = dict(capture.metrics)
    if foreign:
        missing = missing_client_settings(settings)
        if missing:
            raise CaptureError(f"the wire does not show the client's {', '.join(missing)}: declare them with "
                               "eavesdrop(..., client_settings={...}) or map them with wire_keys={...}")
        record = {**FOREIGN_DEFAULTS, **settings}
        metrics["local-steps"] = settings["local-steps"]
    else:
        record = {**capture.train_config, **settings}
    try:
        return search_from_record(record), metrics
    except ConfigError as err:
        raise CaptureError(f"the client's settings (train config) cannot be read: {err}") from None


class ADRA(Attack):
    """The architectural dataset reconstruction attack, in ``paper`` or ``strong`` mode.

    Parameters
    ----------
    settings : AttackConfig
        The ``attack`` section of the config (``adra-*``, ``knows-weights``, ...).
    seed : int
        Seeds dummies, restarts and surrogate θ (with each capture's id).
    """

    name = "adra"
    report = ADRAReport()

    def __init__(self, settings: Any, seed: int = 0, device: torch.device | str | None = None) -> None:
        super().__init__(settings, seed)
        if settings.adra_mode not in ("paper", "strong"):
            raise ValueError(f"unknown adra-mode {settings.adra_mode!r}; choose paper or strong")
        if settings.adra_mode == "strong":
            strong_optimizer(settings)  # an optimizer strong mode does not have fails here, before any work
        self.s, self.seed = settings, seed
        self.device = device  # None: the run's ``device`` key (auto: CUDA when this process sees a GPU)
        self.progress: Report | None = None  # (stage, iteration, iterations, best match)

    @classmethod
    def wants_aux(cls, config: Any) -> bool:
        """The aux pool is read by the learned prior, aux-screened starts and the shadow θ."""
        a = config.attack
        return a.adra_prior != "none" or a.adra_init == "aux" or a.theta_prior == "shadow"

    def reconstruct(self, captures: Sequence[Capture], knowledge: Knowledge) -> list[Reconstruction]:
        """One reconstruction per capture; a capture it cannot use comes back ``failed``."""
        out = []
        for capture in captures:
            t0 = time.perf_counter()
            try:
                out.append(self._one(capture, knowledge, t0))
            except CaptureError as err:
                out.append(Reconstruction.failed(capture.id, str(err), time.perf_counter() - t0))
            except (RuntimeError, ValueError, KeyError) as err:  # a numerical or shape problem deep inside
                log.exception("ADRA failed on capture %s", capture.id)
                out.append(Reconstruction.failed(capture.id, f"attack error: {type(err).__name__}: {err}",
                                                 time.perf_counter() - t0))
        return out

    # ------------------------------------------------------------------ one capture
    def problem(self, capture: Capture, knowledge: Knowledge) -> tuple[Problem, dict[str, Any]]:
        """Check the capture and build what the solvers need (and what it knew and modelled)."""
        if capture.status != "ok":
            raise CaptureError(capture.reason or "the capture is marked failed")
        search, metrics = client_procedure(capture, foreign=knowledge.target is not None)
        cfg = knowledge.config
        try:  # the paradigm's replica and update rule, or another app's model (attacks.adra.surfaces)
            surface = attack_surface(knowledge, capture)
        except NoArchitectureGradient as err:
            raise CaptureError(str(err)) from None
        ref = surface.model
        arch, weights = surface.split(ref)
        names = [n for n, _ in arch]
        shapes = [tuple(p.shape) for _, p in arch]
        _check_arrays("alpha_t1", capture.alpha_t1, names, shapes)
        _check_arrays("alpha_t2", capture.alpha_t2, names, shapes)
        if self.s.knows_weights and surface.theta_t1:
            _check_arrays("theta_t1", surface.theta_t1, [n for n, _ in weights], [tuple(p.shape) for _, p in weights])
        # θ as sent, without the paradigm's server state (surfaces strip it)
        theta = attacker_theta(dataclasses.replace(capture, theta_t1=surface.theta_t1), knowledge, self.s, search,
                               weights, self._round_seed(capture))
        delta = torch.cat([torch.as_tensor(capture.delta_alpha[n], dtype=torch.float64).reshape(-1) for n in names])
        if float(delta.abs().max()) == 0.0:
            raise CaptureError("delta-alpha is zero: the client's round did not change alpha")
        steps = surface.steps(search, metrics)
        proc = surface.procedure(search, steps)
        mu = float(capture.train_config.get("proximal-mu", 0.0))
        if mu and search.proximal_alpha:  # FedProx's term on α is part of the client's procedure
            proc = dataclasses.replace(proc, proximal_mu=mu)
        if not (self.s.adra_mode == "strong" and self.s.adra_unroll):
            proc = dataclasses.replace(proc, steps=1)  # Δα read as one step
        if holds_only_decay(capture, names, proc, search.alpha_l2, delta):
            raise CaptureError("delta-alpha is the client's weight decay alone: its loss gradient was zero (a "
                               "saturated softmax on the right class, loss 0), so the update holds nothing of "
                               "its samples")
        device = pick_device(cfg.run.device) if self.device is None else torch.device(self.device)
        alpha_t1 = {k: torch.as_tensor(v) for k, v in capture.alpha_t1.items()}
        moved = self._moves_theta(knowledge, proc)
        thetas = theta.thetas
        if moved:  # θ at each local step, every draw (sampled: theta-paths paths per draw)
            aux_x, aux_y = torch.as_tensor(knowledge.aux_images), torch.as_tensor(knowledge.aux_labels).long()
            args = (cfg, knowledge.spec, search, alpha_t1)
            rest = (proc.steps, aux_x, aux_y, self._round_seed(capture))
            if self.s.theta_between_steps == "sampled":
                paths = [p for th in theta.thetas for p in sampled_theta_paths(*args, th, *rest, self.s.theta_paths)]
            else:
                paths = [theta_path(*args, th, *rest) for th in theta.thetas]
            thetas = [t for path in paths for t in path]
        victim = surface.victim(alpha_t1, thetas, search.alpha_l2, device)
        if moved:
            victim.per_step(proc.steps)
        spec = knowledge.spec
        how = fidelity(self.s, search, proc, steps, moved)
        distance = self.s.adra_distance
        if distance == "auto":  # the scale of Δα is information only where the replay is exact
            distance = "l2" if theta.exact and how == "exact" else "cosine"
        problem = Problem(victim, proc, delta.float().to(device), proc.steps, proc.batch_size, steps, spec.num_classes,
                          (spec.channels, spec.image_size, spec.image_size), distance)
        return problem, {"theta-knowledge": theta.knowledge, "fidelity": how, "distance": distance}

    def _moves_theta(self, knowledge: Knowledge, proc: AlphaProcedure) -> bool:
        """Whether the replay moves θ between unrolled α steps (``theta-between-steps`` aux or sampled):
        this project's supernet (a paradigm that searches it), an aux pool, and more than one step modelled."""
        return (proc.steps > 1 and self.s.theta_between_steps != "held" and knowledge.aux_images is not None
                and knowledge.target is None and searches_supernet(knowledge.config))

    def _one(self, capture: Capture, knowledge: Knowledge, t0: float) -> Reconstruction:
        problem, known = self.problem(capture, knowledge)
        gen = torch.Generator().manual_seed(self._seed(capture) + 1)
        extra: dict[str, float] = {}
        if self.s.adra_mode == "paper":
            optimizer = paper_optimizer(self.s)
            sol = solve_paper(problem, self.s, gen, self.progress)
        elif (method := self._reader(problem, knowledge)) != "search":
            optimizer = method + (f"+lm{self.s.adra_inverse_polish}" if self.s.adra_inverse_polish else "")
            if knowledge.aux_images is None:
                raise CaptureError(f"adra-method = '{method}' needs the attacker's aux pool (Knowledge.aux_images)")
            if problem.batch > MAX_PERMUTED_BATCH:
                raise CaptureError(f"adra-method = '{method}' reads B <= {MAX_PERMUTED_BATCH}; this capture has "
                                   f"B = {problem.batch} (use adra-method = 'search')")
            solve = solve_generative if method == "generative" else solve_inverse
            sol, figures = solve(problem, self.s, knowledge.aux_images, knowledge.aux_labels, self.progress,
                                 seed=self.seed)
            extra = {f"inverse-{k}" if not k.startswith("inverse") else k: v for k, v in figures.items()}
        else:
            optimizer = strong_optimizer(self.s)
            needs_aux = self.s.adra_prior != "none" or self.s.adra_init == "aux"
            if needs_aux and knowledge.aux_images is None:
                raise CaptureError("adra-init = 'aux' and adra-prior = 'pca'/'auto' need the attacker's aux pool "
                                   "(Knowledge.aux_images)")
            sol = solve_strong(problem, self.s, gen, knowledge.aux_images, knowledge.aux_labels, self.progress)
        k, b = sol.labels.shape
        # which local step each image is for: known when every step is modelled
        known_steps = problem.steps == problem.local_steps
        steps = np.repeat(np.arange(k), b) if known_steps else np.full(k * b, -1)
        return Reconstruction(
            capture.id, "ok", "",
            images=sol.images.reshape(k * b, *problem.image_shape).numpy().astype(np.float32),
            labels=sol.labels.reshape(-1).numpy().astype(np.int64),
            steps=steps.astype(np.int64), positions=np.tile(np.arange(b), k).astype(np.int64),
            match=sol.match, seconds=time.perf_counter() - t0,
            details={**known, "hypotheses": sol.hypotheses,
                     "iterations": sol.iterations, "modelled-steps": problem.steps, "local-steps": problem.local_steps,
                     "B": problem.batch, "alpha-optimizer": problem.proc.optimizer, "solver": optimizer,
                     "device": str(problem.victim.device), **extra},
        )

    def _reader(self, problem: Problem, knowledge: Knowledge) -> str:
        """``adra-method``: inverse, generative, search, or auto (the inverse where it reads the capture)."""
        if self.s.adra_method != "auto":
            return self.s.adra_method
        return "inverse" if knowledge.aux_images is not None and problem.batch <= MAX_PERMUTED_BATCH else "search"

    def _seed(self, capture: Capture) -> int:
        return (self.seed * 1_000_003 + zlib.crc32(capture.id.encode())) % (2**31)

    def _round_seed(self, capture: Capture) -> int:
        """The seed of what the attacker draws once per round and uses for every client of it
        (θ beliefs, shadow paths), so that a learned inverse made for the round serves them all."""
        return (self.seed * 1_000_003 + int(capture.round)) % (2**31)


def holds_only_decay(capture: Capture, names: list[str], proc: AlphaProcedure, alpha_l2: float,
                     delta: torch.Tensor) -> bool:
    """Whether Δα (flat, float64) is the update ``proc`` makes with a zero loss gradient, to
    ``DATA_FREE_RTOL`` and the rounding of α_t2 on the wire (its dtype's spacing)."""
    alpha_t1 = torch.cat([torch.as_tensor(capture.alpha_t1[n], dtype=torch.float64).reshape(-1) for n in names])
    free = data_free_update(proc, alpha_t1, alpha_l2)
    spacing = torch.cat([torch.as_tensor(np.spacing(np.abs(capture.alpha_t2[n]))).double().reshape(-1)
                         for n in names])
    return float((delta - free).norm()) <= DATA_FREE_RTOL * float(delta.norm()) + float(spacing.norm())


def fidelity(settings: Any, search: Any, proc: AlphaProcedure, steps: int, moved: bool = False) -> str:
    """How faithfully the attack models the client's round: ``exact``, ``approximate: why`` or
    ``not modelled: why`` (a column of the leakage report)."""
    if search.alpha_order != "first":
        return ("not modelled: second-order (unrolled) alpha steps are replayed as first-order; the unrolled "
                "step needs the client's D^theta batch and theta step, which never cross the wire")
    if settings.adra_mode == "paper" and (steps > 1 or search.alpha_optimizer != "sgd"):
        return f"approximate: paper mode reads {steps} {search.alpha_optimizer} step(s) as one SGD step"
    if proc.steps < steps:
        return f"approximate: {steps} local steps read as one (adra-unroll = false)"
    if steps > 1 and moved and settings.theta_between_steps == "sampled":
        return ("approximate: theta moves between the client's alpha steps (theta steps on its D^theta batches); "
                f"the replay draws {settings.theta_paths} paths, each step the client's theta optimizer on a random "
                "aux batch")
    if steps > 1 and moved:
        return ("approximate: theta moves between the client's alpha steps (theta steps on its D^theta batches); "
                "the replay moves it by the client's theta optimizer on the aux pool's mean gradient")
    if steps > 1:
        return ("approximate: theta moves between the client's alpha steps (theta steps on its D^theta batches); "
                "the replay keeps theta_t1")
    return "exact"
