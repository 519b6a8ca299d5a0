"""The target: the final federated model read from a run directory, as the owner serves it.

``supernet``: the searched supernet with its final α and θ (``model.npz``), as trained
by the federation. ``derived``: the genotype α derives, retrained by the owner after the
search (on D^θ only, so that D^α reached nothing but the architecture, or on all the
clients' data, DARTS's usual final training), with the run's optimiser settings and its
input noise. With ``md`` on, the API serves the distilled student instead.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from attacks.amia.data import AMIAInputError
from attacks.amia.defenses import Distillation, distill
from attacks.amia.models import SmallCNN, derived_network
from attacks.amia.paradigms import final_genotype, final_model, has_weights
from attacks.amia.training import Recipe, recipe_from_search, train_classifier
from fednas.config import GROUP_KEYS, MD_KEYS, Config
from fednas.data import ImageSet, dataset_from_config, make_pools, partition_clients
from fednas.noise import input_noise_from_config
from fednas.paradigms import paradigm_of
from fednas.rundir import load_npz
from fednas.runlog import read_run_config
from fednas.search import num_local_steps
from fednas.spaces import InputSpec, Supernet, build_supernet

log = logging.getLogger(__name__)

OVERRIDABLE = frozenset(k.name for k in GROUP_KEYS["amia"]) | MD_KEYS


@dataclass
class Run:
    """What AMIA reads from a finished run directory."""

    dir: Path
    cfg: Config
    num_clients: int
    arrays: dict[str, torch.Tensor]
    dataset: ImageSet


def load_run(run_dir: str | Path, overrides: dict[str, Any] | None = None) -> Run:
    """Read ``config.json`` and ``model.npz``; apply ``amia``-group overrides.

    Raises :class:`AMIAInputError` naming what is missing, before any work.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise AMIAInputError(f"run directory {str(run_dir)!r} does not exist")
    cfg_file, model_file = run_dir / "config.json", run_dir / "model.npz"
    if not cfg_file.is_file():
        raise AMIAInputError(f"{run_dir} is not a run directory: config.json is missing")
    if not model_file.is_file():
        status = _summary_status(run_dir)
        raise AMIAInputError(f"{run_dir} has no final model (model.npz is missing; the run's status is {status!r}): "
                             "AMIA attacks the model a completed run saved")
    cfg, nodes = read_run_config(cfg_file, overrides, OVERRIDABLE, AMIAInputError,
                                 fixed="shape how the target was trained and are fixed by",
                                 only="only the amia keys and the MD keys can be set here")
    arrays = {k: torch.from_numpy(v) for k, v in load_npz(model_file).items()}
    return Run(run_dir, cfg, nodes, arrays, dataset_from_config(cfg.data, cfg.run.seed))


def _summary_status(run_dir: Path) -> str:
    try:
        return str(json.loads((run_dir / "summary.json").read_text()).get("status"))
    except (OSError, ValueError):
        return "no summary.json"


def final_supernet(run: Run, device: str = "cpu") -> Supernet | nn.Module:
    """The supernet with the run's final α and θ (a paradigm with its own network: that network, as served)."""
    if not has_weights(run.arrays):
        raise AMIAInputError(f"{run.dir / 'model.npz'} holds only the architecture state (share-weights = false: "
                             "theta stayed on the clients); set amia-target = derived to serve the retrained derived "
                             "network")
    if paradigm_of(run.cfg).supernet_search:  # the configured supernet itself (MD's student may copy its α)
        return paradigm_of(run.cfg).model(run.cfg, run.dataset.spec, run.arrays).to(device).eval()
    return final_model(run.cfg, run.dataset.spec, run.arrays).to(device).eval()


def client_indices(run: Run) -> tuple[np.ndarray, np.ndarray]:
    """All clients' D^θ and D^α indices, as the run split them."""
    splits = partition_clients(run.dataset, run.cfg.data, run.cfg.run.seed, run.num_clients)
    return np.concatenate([s.theta for s in splits]), np.concatenate([s.alpha for s in splits])


def target_search_steps(run: Run) -> int:
    """Local search steps one client of the run made in all (rounds x steps per round)."""
    theta, _ = client_indices(run)
    per_client = max(1, len(theta) // run.num_clients)
    return run.cfg.fed.num_server_rounds * num_local_steps(run.cfg.search, per_client)


def target_passes(run: Run) -> float:
    """Epochs the target's weights made over their data (what shadows mimic)."""
    cfg = run.cfg
    if cfg.amia.amia_target == "derived":
        return float(cfg.amia.amia_retrain_epochs)
    per_client = len(client_indices(run)[0]) / run.num_clients
    return target_search_steps(run) * cfg.search.batch_size / max(per_client, 1.0)


def owner_recipe(cfg: Config, steps: int = 1) -> Recipe:
    """The run's θ optimiser settings with its input noise (the DP defense)."""
    return recipe_from_search(cfg.search, steps, input_noise_from_config(cfg))


def build_target(run: Run, device: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The model the owner would serve before MD: the supernet, or the derived network retrained."""
    alpha_norm = float(torch.sqrt(sum((v.double() ** 2).sum() for k, v in run.arrays.items() if k.startswith("alpha"))))
    if run.cfg.amia.amia_target == "supernet":
        return final_supernet(run, device), {"kind": "supernet", "alpha-norm": alpha_norm}
    cfg = run.cfg
    genotype = final_genotype(cfg, run.dataset.spec, run.arrays)
    theta, alpha = client_indices(run)
    on = np.sort(theta if cfg.amia.amia_retrain_on == "theta" else np.concatenate([theta, alpha]))
    model = derived_network(genotype, cfg.space, run.dataset.spec, cfg.run.seed)
    recipe = owner_recipe(cfg).epochs_to_steps(cfg.amia.amia_retrain_epochs, len(on))
    fit = train_classifier(model, run.dataset.x[on], run.dataset.y[on], recipe, cfg.run.seed, ids=on, device=device)
    log.info("derived network retrained on %d samples for %d steps (loss %.3f)", len(on), recipe.steps, fit["loss"])
    return model.eval(), {"kind": "derived", "alpha-norm": alpha_norm, "genotype": genotype.pretty(),
                          "retrain-on": cfg.amia.amia_retrain_on, "retrain-samples": int(len(on)),
                          "retrain-steps": recipe.steps}


def make_student(cfg: Config, teacher: nn.Module, spec: InputSpec, seed: int) -> nn.Module:
    """MD's student: ``same`` architecture as the teacher with fresh weights (a supernet's
    α is kept and frozen), or a small ``cnn``."""
    if isinstance(teacher, Supernet) and cfg.defense.md_student == "same":
        student = build_supernet(cfg.space, spec, seed)
        student.load_arrays(teacher.arch_state())
        for p in student.arch_parameters():
            p.requires_grad_(False)
        return student
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if cfg.defense.md_student == "cnn":
            return SmallCNN(spec)
        student = copy.deepcopy(teacher)
        for m in student.modules():
            if m is not student and hasattr(m, "reset_parameters"):
                m.reset_parameters()  # BatchNorm's also resets its running statistics
    return student


def distillation(cfg: Config) -> Distillation | None:
    """The MD settings, or None when ``md`` is off."""
    d = cfg.defense
    return Distillation(d.md_keep, d.md_temperature, d.md_epochs) if d.md else None


def serve_with_md(run: Run, teacher: nn.Module, device: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The student distilled from ``teacher`` on the server's test pool (unlabeled)."""
    cfg = run.cfg
    ref = make_pools(len(run.dataset), cfg.data, cfg.run.seed).test
    student, info = distill(teacher, lambda: make_student(cfg, teacher, run.dataset.spec, cfg.run.seed + 7),
                            run.dataset.x[ref], distillation(cfg), owner_recipe(cfg), cfg.run.seed, device)
    return student, info
