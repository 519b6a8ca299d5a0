"""``derive``: the searched genotype against random ones, from a finished run directory.

Reads ``config.json`` (the run's config and federation size) and ``genotype.json`` (the
final genotype), trains the searched genotype's network from scratch on the clients'
data (:mod:`fednas.derive.training`), then ``derive-random`` random genotypes of the same
space the same way (same initial seed, same batch order: a paired comparison; the
random-search baseline of Li & Talwalkar 2019 and Yu et al. 2020), and writes
``<run-dir>/derived/``: ``metrics.json`` and ``derive.png`` (test accuracy per round of
every network, and the final ones side by side).
"""

from __future__ import annotations

import io
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fednas.config import GROUP_KEYS, Config
from fednas.data import dataset_from_config
from fednas.derive.training import Task, task_from_config, train_network
from fednas.federated import pick_device
from fednas.rundir import atomic_write_bytes, atomic_write_json
from fednas.runlog import read_run_config
from fednas.spaces import Genotype
from fednas.spaces.derived import count_parameters, derived_network, random_genotype
from fednas.stats import t_interval, wilson_interval

log = logging.getLogger(__name__)

OVERRIDABLE = frozenset(k.name for k in GROUP_KEYS["derive"]) | {"device"}


class DeriveInputError(ValueError):
    """A run directory or override that derive cannot use (the message says what and where)."""


@dataclass(frozen=True)
class SearchedRun:
    """What derive reads from a run directory."""

    dir: Path
    cfg: Config
    num_clients: int
    genotype: Genotype


def load_searched_run(run_dir: str | Path, overrides: dict[str, Any] | None = None) -> SearchedRun:
    """The run's config (with ``derive``-group overrides), client count and final genotype."""
    run_dir = Path(run_dir)
    cfg_file, geno_file = run_dir / "config.json", run_dir / "genotype.json"
    for f in (cfg_file, geno_file):
        if not f.is_file():
            raise DeriveInputError(f"{run_dir} is not a finished search: {f.name} is missing")
    cfg, nodes = read_run_config(cfg_file, overrides, OVERRIDABLE, DeriveInputError, only="derive takes only")
    genotype = Genotype.from_dict(json.loads(geno_file.read_text())["final"])
    return SearchedRun(run_dir, cfg, nodes, genotype)


def train_genotype(cfg: Config, task: Task, genotype: Genotype, device: Any) -> dict[str, Any]:
    """One genotype's network, trained from scratch: its test accuracy, size and curve."""
    d = cfg.derive
    t0 = time.perf_counter()
    model = derived_network(genotype, cfg.space, task.dataset.spec, cfg.run.seed, channels=d.derive_channels,
                            layers=d.derive_layers, auxiliary=d.derive_auxiliary_weight > 0)
    curve = train_network(model, task, d, cfg.run.seed, device)
    return {"genotype": genotype.pretty(), "test-acc": curve[-1], "params": count_parameters(model),
            "curve": curve, "seconds": round(time.perf_counter() - t0, 1)}


def judge(run: SearchedRun, device: Any = "cpu") -> dict[str, Any]:
    """The searched genotype and ``derive-random`` random ones, trained alike; the metrics."""
    cfg, d = run.cfg, run.cfg.derive
    dataset = dataset_from_config(cfg.data, cfg.run.seed)
    task = task_from_config(cfg, dataset, run.num_clients)
    log.info("derive: training the searched genotype (%s, %d rounds)", d.derive_mode, d.derive_rounds)
    searched = train_genotype(cfg, task, run.genotype, device)
    randoms = []
    for r in range(d.derive_random):
        genotype = random_genotype(cfg.space, dataset.spec, cfg.space.genotype_k, cfg.run.seed * 1000 + r)
        log.info("derive: random genotype %d/%d", r + 1, d.derive_random)
        randoms.append(train_genotype(cfg, task, genotype, device))
    n_test = len(task.test)
    accs = [x["test-acc"] for x in randoms]
    return {
        "test-acc": searched["test-acc"],
        "test-acc-ci95": wilson_interval(round(searched["test-acc"] * n_test), n_test),
        "test-n": n_test,
        "params": searched["params"],
        "rounds": d.derive_rounds,
        "mode": d.derive_mode,
        "clients": run.num_clients,
        "train-samples": int(sum(len(c) for c in task.clients)),
        "genotype": searched["genotype"],
        "random-n": len(randoms),
        "random-test-acc-mean": float(np.mean(accs)) if accs else math.nan,
        "random-test-acc-std": float(np.std(accs, ddof=1)) if len(accs) > 1 else math.nan,
        "random-test-acc-ci95": t_interval(accs),
        "random-params-mean": float(np.mean([x["params"] for x in randoms])) if randoms else math.nan,
        "searched-minus-random": searched["test-acc"] - float(np.mean(accs)) if accs else math.nan,
        "searched": searched,
        "random": randoms,
        "settings": {k.name: getattr(d, k.field) for k in GROUP_KEYS["derive"]},
    }


def plot(metrics: dict[str, Any], path: Path) -> None:
    """Test accuracy per round (searched, every random, their mean) and the final accuracies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [3, 1]})
    rounds = np.arange(1, metrics["rounds"] + 1)
    curves = [r["curve"] for r in metrics["random"]]
    for c in curves:
        left.plot(rounds, c, color="0.7", lw=0.8)
    if curves:
        left.plot(rounds, np.mean(curves, axis=0), color="0.3", ls="--", label=f"random (mean of {len(curves)})")
    left.plot(rounds, metrics["searched"]["curve"], color="C3", lw=2, label="searched")
    left.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    left.set(xlabel="round" if metrics["mode"] == "federated" else "epoch", ylabel="test accuracy",
             title=f"derived network, {metrics['mode']} training")
    left.legend(loc="lower right")
    finals = [r["test-acc"] for r in metrics["random"]]
    right.scatter(np.zeros(len(finals)), finals, color="0.5", label="random")
    if len(finals) > 1:
        right.errorbar([0.25], [np.mean(finals)], yerr=[[np.std(finals, ddof=1)]], fmt="o", color="0.3", capsize=4,
                       label="mean ± sd")
    right.scatter([0.5], [metrics["test-acc"]], color="C3", marker="*", s=160, label="searched")
    right.set(xlim=(-0.3, 0.8), xticks=[], title="final")
    right.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def derive_run(run_dir: str | Path, overrides: dict[str, Any] | None = None) -> Path:
    """Judge a finished search; write ``<run-dir>/derived/metrics.json`` and ``derive.png``."""
    run = load_searched_run(run_dir, overrides)
    t0 = time.perf_counter()
    metrics = judge(run, pick_device(run.cfg.run.device))
    metrics["seconds"] = round(time.perf_counter() - t0, 1)
    out = run.dir / "derived"
    out.mkdir(exist_ok=True)
    atomic_write_json(out / "metrics.json", metrics)
    plot(metrics, out / "derive.png")
    log.info("derive: searched %.3f (%d params) vs random %.3f ± %.3f (n = %d); %s", metrics["test-acc"],
             metrics["params"], metrics["random-test-acc-mean"], metrics["random-test-acc-std"], metrics["random-n"], out)
    return out


def derive_after_run(run_dir: str | Path) -> dict[str, Any]:
    """For the ServerApp: derive, never raise; say what happened (for summary.json)."""
    try:
        out = derive_run(run_dir)
    except Exception as err:  # the search has finished: derive failing must not fail it
        log.exception("derive failed on %s", run_dir)
        return {"status": "failed", "error": f"{type(err).__name__}: {err}"}
    metrics = json.loads((out / "metrics.json").read_text())
    return {"status": "completed", "dir": str(out), "test-acc": metrics["test-acc"],
            "random-test-acc-mean": metrics["random-test-acc-mean"]}
