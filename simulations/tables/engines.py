"""The one place the harness calls the attack engines (and asks what this checkout has).

ADRA, AMIA, the NAS paradigms and θ-knowledge modes are changing; everything the tables
need from them goes through these few functions, so that a change there is mended here:

- :func:`attack_captures`: ADRA on stored captures through the leakage audit
  (``attacks.leakage.LeakageAudit``: the attack registry, the scoring and the report of
  ``python -m attacks.adra``), per-sample figures back, with the capture of each sample
  and the same figures for the nulls (:func:`null_samples`, scored by
  ``attacks.report.score_capture``, the audit's own scoring);
- :func:`attack_target`: AMIA on a trained target through ``attacks.amia.run_amia`` (its
  prediction API, shadows and attacks), its ``metrics.json`` back;
- :func:`usable_captures`, :func:`capture_metrics`, :func:`test_accuracy`: what a finished
  run holds (its captures, the metrics each captured reply carried, the eval-mode test
  accuracy of its global model);
- :func:`dataset_reason`, :func:`paradigm_reasons`, :func:`config_reason`: why a cell
  cannot run in this checkout (asked at run time, so cells fill themselves once an
  engine lands).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from attacks.nulls import NULL_KINDS, null_reconstruction
from fednas.config import KEY_BY_NAME, ConfigError, parse_config

log = logging.getLogger(__name__)

SAMPLE_FIELDS = ("success", "identified", "identified-dataset", "mse", "psnr", "ssim", "label-correct")


# ---------------------------------------------------------------------------- what exists


def has_key(name: str) -> bool:
    """Whether this checkout's config schema knows ``name``."""
    return name in KEY_BY_NAME


def config_reason(overrides: Mapping[str, Any]) -> str:
    """Empty when the overrides parse here; else why not (unknown keys, bad values)."""
    unknown = [k for k in overrides if k not in KEY_BY_NAME]
    if unknown:
        return f"needs config key(s) {', '.join(unknown)}, not in this checkout yet"
    try:
        parse_config(dict(overrides))
    except ConfigError as err:
        return str(err).replace("\n", " ")
    return ""


EMBEDDED = frozenset({"digits", "mnist-5k"})  # shipped inside packages: data-root plays no part


def dataset_reason(name: str, data_root: str = "") -> str:
    """Empty when the dataset loads here; else the loader's own explanation."""
    from fednas.data import load_dataset

    try:
        load_dataset(name, "" if name in EMBEDDED else data_root)  # cached per process
    except (FileNotFoundError, ConfigError, ValueError, RuntimeError) as err:
        return str(err).splitlines()[0].split(". ")[0]  # the loader's first sentence says where it looked
    return ""


def paradigm_reasons(names: Sequence[str]) -> dict[str, str]:
    """Per NAS paradigm: empty when this checkout's config accepts ``paradigm = name``
    (DARTS, the search this project has always had, needs no key), else why it cannot run (the
    config's own message: a name its paradigm registry lacks, a paradigm it refuses)."""
    out = {}
    for name in dict.fromkeys(["darts", *names]):
        if not has_key("paradigm"):
            out[name] = "" if name == "darts" else "paradigm not built: this checkout has no 'paradigm' config key"
        else:
            reason = config_reason({"paradigm": name})
            out[name] = f"paradigm not built: {reason}" if reason else ""
    return out


# ---------------------------------------------------------------------------- runs


def usable_captures(run_dir: str | Path) -> list[str]:
    """Ids of a run's captures an attack can use (status ``ok``: not rejected, not failed)."""
    from fednas.captures import CaptureStore

    store = CaptureStore(run_dir)
    return [cid for cid in store.ids() if store.meta(cid).get("status") == "ok"]


def capture_metrics(run_dir: str | Path) -> Iterator[dict[str, Any]]:
    """The metrics each captured reply carried (DP mechanisms report their ε there)."""
    from fednas.captures import CaptureStore

    store = CaptureStore(run_dir)
    for cid in store.ids():
        yield store.meta(cid).get("metrics", {})


def test_accuracy(run_dir: str | Path) -> tuple[float | None, int]:
    """Eval-mode accuracy of a run's saved global model on the server's test pool (None when
    θ is not shared: there is no global model), and the pool's size."""
    import torch

    from fednas.data import dataset_from_config, make_pools
    from fednas.federated import central_evaluate
    from fednas.rundir import load_npz

    run_dir = Path(run_dir)
    cfg = parse_config(json.loads((run_dir / "config.json").read_text())["config"])
    n_test = len(make_pools(len(dataset_from_config(cfg.data, cfg.run.seed)), cfg.data, cfg.run.seed).test)
    model = {k: torch.from_numpy(v) for k, v in load_npz(run_dir / "model.npz").items()}
    acc = central_evaluate(cfg, model)["central-acc"] if cfg.search.share_weights else None
    return acc, n_test


# ---------------------------------------------------------------------------- ADRA


def attack_captures(run_dirs: Sequence[str | Path], attack: Mapping[str, Any], per_run: int,
                    out_name: str) -> dict[str, Any]:
    """ADRA on the first ``per_run`` captures of each capture run; per-sample figures pooled.

    Each run's leakage folder ``<run>/<out_name>`` is rebuilt from scratch (a folder left
    by a killed attempt is removed first). Raises RuntimeError when the audit fails.
    """
    from attacks.leakage import LeakageAudit
    from fednas.captures import CaptureStore
    from fednas.rundir import read_rows

    samples: dict[str, list[Any]] = {k: [] for k in SAMPLE_FIELDS}
    info: dict[str, Any] = {"captures": 0, "failed-rows": 0, "seconds": [], "reasons": {}, "theta-source": set(),
                            "leakage": []}
    nulls: dict[str, dict[str, list[Any]]] = {k: {f: [] for f in (*SAMPLE_FIELDS, "capture")} for k in NULL_KINDS}
    samples["capture"] = []
    for i, run in enumerate(map(Path, run_dirs)):
        flat = {**json.loads((run / "config.json").read_text())["config"], **attack}
        flat = parse_config({k: v for k, v in flat.items() if k in KEY_BY_NAME}).flat()
        ids = CaptureStore(run).ids()[:per_run]
        out = run / out_name
        shutil.rmtree(out, ignore_errors=True)
        audit = LeakageAudit(run, flat, out, workers=0)
        for cid in ids:
            audit.submit(cid)
        summary = audit.finish(emit=log.debug, only=ids)
        if summary.get("status") == "failed":
            raise RuntimeError(f"the leakage audit of {run} failed: {summary.get('error')}")
        rows = read_rows(out / "clients.csv")
        info["captures"] += len(ids)
        info["leakage"].append(str(out))
        seen = set()
        for r in rows:
            if r.get("sample") in (None, ""):
                continue
            for k in SAMPLE_FIELDS:
                samples[k].append(_value(r.get(k)))
            samples["capture"].append(f"{i}:{r['capture']}")  # a capture id is unique within its run
            if r.get("status") != "ok":
                info["failed-rows"] += 1
                info["reasons"][r.get("reason", "")] = info["reasons"].get(r.get("reason", ""), 0) + 1
            if r["capture"] not in seen:
                seen.add(r["capture"])
                info["seconds"].append(_value(r.get("attack-seconds")))
                if r.get("theta-source"):
                    info["theta-source"].add(r["theta-source"])
        for kind, rows in null_samples(run, flat, ids).items():
            for r in rows:
                for k in SAMPLE_FIELDS:
                    nulls[kind][k].append(r.get(k))
                nulls[kind]["capture"].append(f"{i}:{r['capture']}")
    info["theta-source"] = sorted(info["theta-source"])
    return {"samples": samples, "nulls": nulls, **info}


def null_samples(run_dir: str | Path, flat: Mapping[str, Any], capture_ids: Sequence[str],
                 seed: int = 0) -> dict[str, list[dict[str, Any]]]:
    """Per null kind, the rows the audit's scoring gives the null reconstructions of these
    captures (the same metrics as the attack's: ``attacks.report.score_capture``). The
    aux pool is the attacker's data (``fednas.data.make_pools``); the random draws are seeded."""
    from attacks.report import ScoringContext, score_capture, truth_samples
    from fednas.data import make_pools

    ctx = ScoringContext(run_dir, flat)
    aux = make_pools(len(ctx.dataset), ctx.cfg.data, ctx.cfg.run.seed).aux
    aux_x, aux_y = ctx.x[aux], ctx.y[aux]
    out: dict[str, list[dict[str, Any]]] = {}
    for kind in NULL_KINDS:
        rng = np.random.default_rng(seed)
        rows = []
        for cid in capture_ids:
            truth = ctx.truth(cid)
            if truth is None:
                continue  # unscored: no null either
            samples = truth_samples(truth)
            rec = null_reconstruction(kind, cid, samples, [int(ctx.y[g]) for _, _, g in samples], aux_x, aux_y, rng)
            rows += [r for r in score_capture(ctx, cid, rec, {}) if r.get("sample") is not None]
        out[kind] = rows
    return out


def _value(text: Any) -> Any:
    """A clients.csv field as a Python value (booleans, numbers, None for blanks)."""
    if text in (None, ""):
        return None
    if text in ("True", "False"):
        return text == "True"
    try:
        return float(text)
    except ValueError:
        return text


# ---------------------------------------------------------------------------- AMIA


def attack_target(target_dir: str | Path, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """AMIA on a completed run directory; the contents of its new ``metrics.json``."""
    from attacks.amia import run_amia

    out = run_amia(target_dir, dict(overrides))
    return json.loads((Path(out) / "metrics.json").read_text())


def pick_result(metrics: Mapping[str, Any], members: str, shadow: str, attack: str) -> dict[str, Any] | None:
    """One result row of an AMIA ``metrics.json`` (members ``alpha``/``theta``)."""
    for row in metrics.get("results", []):
        if row.get("members") == members and row.get("shadow") == shadow and row.get("attack") == attack:
            return dict(row)
    return None
