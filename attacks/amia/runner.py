"""One AMIA run on a finished run directory: target, shadows, attacks, scores, outputs.

Everything the attacker does goes through the :class:`PredictionAPI` (the target) or its
own data and shadows; the member/non-member truth is used only to score at the end.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from attacks.amia.api import PredictionAPI
from attacks.amia.attacks import make_variant
from attacks.amia.data import AttackerData, MembershipSets, attacker_data, membership_sets
from attacks.amia.metrics import membership_metrics, roc_curve
from attacks.amia.report import write_outputs
from attacks.amia.shadows import Mimicry, train_shadows
from attacks.amia.target import (Run, build_target, distillation, load_run, owner_recipe, serve_with_md,
                                 target_passes, target_search_steps)
from attacks.amia.training import accuracy, predict_proba
from fednas.config import GROUP_KEYS, split_names
from fednas.data import make_pools
from fednas.federated import pick_device
from fednas.noise import InputNoise

log = logging.getLogger(__name__)


def mimicry(run: Run, device: str) -> Mimicry:
    """What the shadows copy of the target; defenses only when the attacker knows them."""
    cfg, a = run.cfg, run.cfg.amia
    known = a.amia_defense_known
    recipe = owner_recipe(cfg)
    d = cfg.defense
    noise = InputNoise(d.input_noise_std, d.input_noise_mode, cfg.run.seed + 1) if known and d.input_noise_std > 0 else None
    return Mimicry(cfg, a.amia_target, target_passes(run), replace(recipe, noise=noise),
                   cfg.search.alpha_l2 if known else 0.0, distillation(cfg) if known else None,
                   a.amia_shadow_steps, device, target_search_steps(run))


def _target_block(run: Run, served_probs: dict[str, np.ndarray], ys: dict[str, np.ndarray],
                  info: dict[str, Any]) -> dict[str, Any]:
    cfg = run.cfg
    return {
        **info,
        "defenses": {"lr": cfg.search.alpha_l2, "dp": cfg.defense.input_noise_std,
                     "dp-mode": cfg.defense.input_noise_mode, "md": cfg.defense.md},
        "train-acc-alpha": accuracy(served_probs["alpha"], ys["alpha"]),
        "train-acc-theta": accuracy(served_probs["theta"], ys["theta"]),
        "test-acc": accuracy(served_probs["holdout"], ys["holdout"]),
        "weight-passes": target_passes(run),
        "search-steps": target_search_steps(run),
    }


def score_attacks(attacks: list, outputs: dict[str, np.ndarray], ys: dict[str, np.ndarray],
                  shadow_q: dict[str, np.ndarray]) -> tuple[list[dict[str, Any]], dict]:
    """Score fitted attacks on each member set against the ``nonmembers`` (balanced).

    ``outputs``/``ys``/``shadow_q``: API outputs, labels and the shadows' outputs per query
    set, keyed ``nonmembers`` and one key per member set. Returns result rows and ROC curves.
    """
    rows, curves = [], {}
    for attack in attacks:
        s_non = attack.score(outputs["nonmembers"], ys["nonmembers"], shadow_q["nonmembers"])
        for members in (k for k in outputs if k != "nonmembers"):
            s_mem = attack.score(outputs[members], ys[members], shadow_q[members])
            n = min(len(s_mem), len(s_non))
            labels = np.r_[np.ones(n, int), np.zeros(n, int)]
            scores = np.r_[s_mem[:n], s_non[:n]]
            rows.append({"members": members, "attack": attack.name,
                         **membership_metrics(labels, scores, scores >= attack.threshold),
                         "threshold": float(attack.threshold)})
            curves[(members, attack.name)] = roc_curve(labels, scores)[:2]
    return rows, curves


def serve(run: Run, sets: MembershipSets, device: str) -> tuple[PredictionAPI, dict[str, Any]]:
    """The owner's side: build the target (and its MD student), measure its accuracy, put
    it behind the API. Returns the API and the target's description."""
    cfg, a = run.cfg, run.cfg.amia
    x, y = run.dataset.x, run.dataset.y.numpy()
    holdout = make_pools(len(run.dataset), cfg.data, cfg.run.seed).holdout
    teacher, info = build_target(run, device)
    served = teacher
    if cfg.defense.md:
        served, info["md"] = serve_with_md(run, teacher, device)
        info["teacher-test-acc"] = accuracy(predict_proba(teacher, x[holdout], device), y[holdout])
    owner_sets = {"alpha": sets.alpha, "theta": sets.theta, "holdout": holdout}
    owner_view = {k: predict_proba(served, x[idx], device) for k, idx in owner_sets.items()}
    target = _target_block(run, owner_view, {k: y[idx] for k, idx in owner_sets.items()}, info)
    return PredictionAPI(served, run.dataset.spec, a.amia_output, a.amia_top_k, device), target


def shadow_attacks(run: Run, attacker: AttackerData, queries: dict[str, np.ndarray], outputs: dict[str, np.ndarray],
                   mim: Mimicry) -> tuple[list[dict[str, Any]], dict, dict[str, Any]]:
    """The attacker's side: per shadow kind, train the shadows, fit every attack on them
    and score the API's outputs. Returns result rows, ROC curves and shadow summaries."""
    cfg, a = run.cfg, run.cfg.amia
    x, y = run.dataset.x, run.dataset.y.numpy()
    ys = {k: y[idx] for k, idx in queries.items()}
    seed = cfg.run.seed + 1  # the attacker's own randomness
    rows, curves, shadows = [], {}, {}
    for kind in split_names(a.amia_shadows):
        log.info("AMIA: training %d %s shadow(s)", a.amia_num_shadows, kind)
        bank = train_shadows(kind, attacker, run.dataset.spec, mim, a.amia_num_shadows, a.amia_output,
                             a.amia_top_k, seed)
        shadows[kind] = bank.info
        shadow_q = {k: bank.outputs_on(x[idx], a.amia_output, a.amia_top_k, mim.device) for k, idx in queries.items()}
        attacks = [make_variant(name, cfg, seed).fit(bank) for name in split_names(a.amia_attacks)]
        new_rows, new_curves = score_attacks(attacks, outputs, ys, shadow_q)
        rows += [{"shadow": kind, **r} for r in new_rows]
        curves.update({(m, kind, name): c for (m, name), c in new_curves.items()})
    return rows, curves, shadows


def run_amia(run_dir: str | Path, overrides: dict[str, Any] | None = None) -> Path:
    """Attack the final model of ``run_dir``; write ``<run_dir>/amia[-N]/``; return that folder."""
    t0 = time.time()
    run = load_run(run_dir, overrides)  # every input check happens before any training
    cfg, a = run.cfg, run.cfg.amia
    device = str(pick_device(cfg.run.device))
    sets = membership_sets(run.dataset, cfg, run.num_clients, a.amia_members)
    attacker = attacker_data(run.dataset, cfg, a.amia_eta, a.amia_shift_source)
    api, target = serve(run, sets, device)  # from here on the target is reachable only through the API
    queries = {"alpha": sets.alpha, "theta": sets.theta, "nonmembers": sets.nonmembers}
    outputs = {k: api.query(run.dataset.x[idx]) for k, idx in queries.items()}
    mim = mimicry(run, device)
    rows, curves, shadows = shadow_attacks(run, attacker, queries, outputs, mim)
    metrics = {
        "run-dir": str(run.dir),
        "settings": {k: v for k, v in cfg.flat().items() if k in _amia_keys()},
        "target": target,
        "attacker": {"pool": len(attacker), "from-target": int(attacker.from_target.sum()),
                     "shifted": int((~attacker.from_target).sum()), "eta": a.amia_eta,
                     "shift-source": a.amia_shift_source, "defense-known": a.amia_defense_known,
                     "shadow-passes": mim.passes if mim.steps == 0 else None,
                     "shadow-search-steps": mim.search_steps_for(), "shadow-steps": mim.steps or None},
        "available": sets.available,
        "shadows": shadows,
        "results": rows,
        "api-queries": api.queries,
        "seconds": round(time.time() - t0, 1),
    }
    out = write_outputs(run.dir, metrics, curves)
    log.info("AMIA written to %s (%.0f s)", out, time.time() - t0)
    return out


def _amia_keys() -> set[str]:
    return {k.name for g in ("amia", "defense") for k in GROUP_KEYS[g]} | {"alpha-l2"}


def amia_after_run(run_dir: str | Path) -> dict[str, Any]:
    """For the ServerApp: run AMIA, never raise; say what happened (for summary.json)."""
    try:
        out = run_amia(run_dir)
    except Exception as err:  # the federated run has finished: AMIA failing must not fail it
        log.exception("AMIA failed on %s", run_dir)
        return {"status": "failed", "error": f"{type(err).__name__}: {err}"}
    return {"status": "completed", "dir": str(out)}
