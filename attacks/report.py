"""Scoring reconstructions against the truth and writing the per-client leakage report.

This module reads the truth (which samples each client used, :func:`fednas.truth.read_truth`:
written by the clients in a simulation, absent in a deployment) and the clients' data.
Without truth the attack's rows are ``unscored``: what was rebuilt (labels, the attack's own
match) is reported, how well it matches the client's data cannot be. Output, in a leakage folder (``<run-dir>/leakage/`` online,
``leakage-N/`` for offline re-runs): ``clients.csv`` (one row per captured (round,
client, sample)), ``report.md``, ``client-<id>.png`` and ``summary.json``. Metric
definitions: :mod:`attacks.metrics`.

Nothing here is one attack's: what an attack adds (its columns, settings, figures and a
scoring job such as ADRA's identifiability) comes from its :class:`attacks.base.AttackReport`
(:func:`report_of`; ADRA's is :mod:`attacks.adra.report`).
"""

from __future__ import annotations

import io
import json
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from attacks import metrics as M
from attacks.base import AttackReport, Reconstruction, attack_class
from attacks.privacy_report import dp_section
from fednas.captures import CaptureStore
from fednas.config import KEY_BY_NAME, parse_config
from fednas.registry import resolve
from fednas.rundir import (atomic_write_bytes, atomic_write_csv, atomic_write_json, atomic_write_text,
                           federation_size)
from fednas.schema import SchemaError
from fednas.truth import UNSCORED_REASON, TruthRecord, read_truth

log = logging.getLogger(__name__)

# clients.csv's columns every attack has; an attack's own (AttackReport) and the rest follow
COLUMNS = (
    "round", "partition-id", "node-id", "capture", "sample", "step", "position", "attacked", "status", "reason",
    "success", "identified", "identified-dataset", "rank", "rank-dataset", "psnr", "ssim", "mse", "label-correct",
    "true-label", "predicted-label", "oracle-label", "nearest-sample", "nearest-dataset", "pool-size",
    "attack-seconds", "match", "dp-epsilon",
)
SETTING_KEYS = ("attack", "device")  # beside the attack's own (AttackReport.setting_keys)
SPACE_KEYS = ("dag-nodes", "head", "activation", "channels", "dataset")
NO_PARTITION_REASON = ("the client's reply carried no partition-id (a 'client' ConfigRecord holding 'partition-id': "
                       "clients.plugin.tag_reply), so its truth record cannot be found and its rows are kept apart "
                       "by node id")


# ---------------------------------------------------------------------------- context


class ScoringContext:
    """The truth side of a run: dataset, clients' D^α and the oracle (built once)."""

    def __init__(self, run_dir: str | Path, flat: Mapping[str, Any]) -> None:
        from fednas.data import dataset_from_config, make_pools, partition_clients

        self.run_dir = Path(run_dir)
        self.cfg = parse_config(dict(flat))
        self.store = CaptureStore(run_dir)
        self.dataset = dataset_from_config(self.cfg.data, self.cfg.run.seed)
        supernodes = _federation_size(self.run_dir)
        self.splits = {s.partition_id: s for s in partition_clients(self.dataset, self.cfg.data, self.cfg.run.seed,
                                                                    supernodes)} if supernodes else {}
        self.x = self.dataset.x.numpy()
        self.y = self.dataset.y.numpy()
        pools = make_pools(len(self.dataset), self.cfg.data, self.cfg.run.seed)
        outside = np.concatenate([pools.holdout, pools.aux, pools.test])
        self.oracle = M.Oracle(self.x[outside], self.y[outside], seed=self.cfg.run.seed)
        self.unscored_reason = UNSCORED_REASON if not self.cfg.attack.write_truth else (
            "no truth for this capture (its client wrote none: 'run-dir' was empty or the record is missing)")

    def truth(self, cid: str) -> dict[str, Any] | None:
        """Which samples the capture's client used, or None where no record was written."""
        return read_truth(self.run_dir, self.store.meta(cid))


def _federation_size(run_dir: Path) -> int | None:
    path = run_dir / "config.json"
    if not path.is_file():
        return None
    return federation_size(json.loads(path.read_text()))


def truth_samples(truth: TruthRecord) -> list[tuple[int, int, int]]:
    """(step, position, global index) of every sample a capture's client used."""
    return truth.samples()


def report_of(flat: Mapping[str, Any]) -> AttackReport:
    """The report hooks of the run's attack (``attack``; the generic ones for a name not registered)."""
    try:
        return attack_class(str(flat.get("attack", KEY_BY_NAME["attack"].default))).report
    except ValueError:  # an unknown attack failed every capture already: report what is generic
        log.warning("no attack %r is registered: its own report columns are left out", flat.get("attack"))
        return AttackReport()


def run_score_job(job: Any, run_dir: str, capture_id: str, flat: Mapping[str, Any]) -> dict[str, Any]:
    """An attack's scoring job (``AttackReport.score_job``: a function or its ``"module:attr"``) on one
    capture, handed the capture's truth, read here: the scoring is the truth's one reader."""
    truth = read_truth(run_dir, CaptureStore(run_dir).meta(capture_id))
    if truth is None:
        return {"error": "no truth record"}
    return resolve(job)(run_dir, capture_id, flat, truth)


# ---------------------------------------------------------------------------- scoring


def assign(recon: np.ndarray, truth: np.ndarray) -> list[tuple[int, int]]:
    """Optimal one-to-one assignment of reconstructions to true samples by MSE."""
    from scipy.optimize import linear_sum_assignment

    cost = ((recon.reshape(len(recon), 1, -1) - truth.reshape(1, len(truth), -1)) ** 2).mean(-1)
    r, t = linear_sum_assignment(cost)
    return list(zip(r.tolist(), t.tolist()))


def pairs_by_step(images: np.ndarray, image_steps: np.ndarray, truth_steps: Sequence[int],
                  truth: np.ndarray) -> dict[int, int]:
    """Truth row -> reconstruction row: matched by least MSE (:func:`assign`) within each local
    step, or all together where the attack could not say which step an image is for (step < 0)."""
    image_steps = np.asarray(image_steps)
    if (image_steps < 0).any():
        groups = [(list(range(len(images))), list(range(len(truth))))]
    else:
        groups = [([i for i, st in enumerate(image_steps) if st == s], [j for j, st in enumerate(truth_steps) if st == s])
                  for s in sorted(set(truth_steps))]
    pairs: dict[int, int] = {}
    for r_rows, t_rows in groups:
        if r_rows and t_rows:
            for a, b in assign(images[r_rows], truth[t_rows]):
                pairs[t_rows[b]] = r_rows[a]
    return pairs


def score_capture(ctx: ScoringContext, cid: str, rec: Reconstruction | None, extra: Mapping[str, Any]) -> list[dict[str, Any]]:
    """clients.csv rows of one capture (one per true sample; one row when none is known)."""
    meta = ctx.store.meta(cid)
    base = {"round": meta.get("round"), "partition-id": meta.get("partition-id"), "node-id": meta.get("node-id"),
            "capture": cid, **{k: v for k, v in meta.get("metrics", {}).items() if str(k).startswith("dp-")},
            **extra}
    if rec is None:
        rec = Reconstruction.failed(cid, "not attacked")
    # attacked: the attack produced a reconstruction; otherwise the capture could not be
    # attacked (rejected by the server, malformed, the attack refused or crashed): its rows
    # are counted apart, never as a failed attack
    base.update({"attacked": rec.status == "ok", "attack-seconds": round(rec.seconds, 3), "match": rec.match})
    try:
        truth, unscored = ctx.truth(cid), ctx.unscored_reason
        if truth is not None:
            truth.check_within(len(ctx.x))
    except SchemaError as err:  # the attack's figures stand; only the score is lost
        truth, unscored = None, f"bad truth record: {err}"
    if truth is None:
        if meta.get("partition-id") is None and unscored == ctx.unscored_reason and getattr(ctx, "scorable", True):
            unscored = NO_PARTITION_REASON
        if rec.status != "ok":
            return [{**base, "status": "failed", "reason": rec.reason, "success": False, "identified": False}]
        return unscored_rows(base, rec, unscored)
    samples = truth_samples(truth)
    if rec.status != "ok":
        return [{**base, "sample": g, "step": s, "position": p, "status": "failed", "reason": rec.reason,
                 "success": False, "identified": False, "true-label": int(ctx.y[g])} for s, p, g in samples]
    pid = meta.get("partition-id")
    split = ctx.splits.get(pid) if pid is not None else None
    pool_idx = split.alpha if split is not None else np.array([g for _, _, g in samples])
    pool = ctx.x[pool_idx]
    pairs = pairs_by_step(rec.images, rec.steps, [s for s, _, _ in samples], ctx.x[[g for _, _, g in samples]])
    oracle_labels = ctx.oracle.predict(rec.images) if len(rec.images) else np.zeros(0, np.int64)
    rows = []
    for j, (s, p, g) in enumerate(samples):
        row = {**base, "sample": g, "step": s, "position": p, "true-label": int(ctx.y[g]), "pool-size": len(pool_idx)}
        if j not in pairs:
            rows.append({**row, "status": "failed", "success": False, "identified": False,
                         "reason": f"no reconstruction for this sample ({len(rec.images)} rebuilt for {len(samples)})"})
            continue
        r = pairs[j]
        img, true = rec.images[r], ctx.x[g]
        e = M.mse(img, true)
        ss = M.ssim(img, true)
        nn = int(pool_idx[M.nearest(img, pool)])
        identified = nn == g
        nn_all = M.nearest(img, ctx.x)
        true_in_pool = int(np.flatnonzero(pool_idx == g)[0]) if (pool_idx == g).any() else None
        oracle_ok = int(oracle_labels[r]) == int(ctx.y[g])
        rows.append({**row, "status": "ok", "reason": "", "mse": e, "psnr": M.psnr(e), "ssim": ss,
                     "label-correct": int(rec.labels[r]) == int(ctx.y[g]), "predicted-label": int(rec.labels[r]),
                     "oracle-label": int(oracle_labels[r]), "nearest-sample": nn, "identified": identified,
                     "nearest-dataset": nn_all, "identified-dataset": nn_all == g, "rank-dataset": M.rank(img, ctx.x, g),
                     "rank": None if true_in_pool is None else M.rank(img, pool, true_in_pool),
                     "success": M.is_success(identified, oracle_ok, ss), "_image": img})
    return rows


def unscored_rows(base: Mapping[str, Any], rec: Reconstruction, reason: str) -> list[dict[str, Any]]:
    """One row per rebuilt image of a capture whose truth is not known: the attack ran, no score."""
    return [{**base, "step": int(rec.steps[i]) if i < len(rec.steps) else None, "position": i, "status": "unscored",
             "reason": reason, "predicted-label": int(rec.labels[i]) if i < len(rec.labels) else None}
            for i in range(max(len(rec.images), 1))]


def settings_of(flat: Mapping[str, Any], model: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The attack's settings and the attacked model: ``model`` describes another app's (its factory, input,
    classes, α arrays: ``ForeignScoringContext.model``); without it, this project's search-space keys."""
    described = dict(model) if model is not None else {k: flat.get(k) for k in SPACE_KEYS}
    keys = (*SETTING_KEYS[:1], *report_of(flat).setting_keys, *SETTING_KEYS[1:])
    return {**{k: flat.get(k) for k in keys}, **described}


def score_run(ctx: ScoringContext, capture_ids: Sequence[str], recs: Mapping[str, Reconstruction],
              scores: Mapping[str, Any], flat: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every row of clients.csv, in capture order (every capture appears)."""
    settings = settings_of(flat, getattr(ctx, "model", None))
    report = report_of(flat)
    rows = []
    for cid in capture_ids:
        rec = recs.get(cid)
        score = scores.get(cid) or {}
        extra = {**{k: score.get(k) for k in report.score_columns}, **settings}
        if rec is not None:
            extra.update({k: rec.details.get(k) for k in report.detail_columns})
        try:
            rows.extend(score_capture(ctx, cid, rec, extra))
        except (OSError, ValueError, KeyError, IndexError) as err:  # one bad capture must not lose the report
            log.warning("scoring capture %s failed: %s: %s", cid, type(err).__name__, err)
            reason = (rec.reason if rec is not None and rec.status != "ok" else f"bad capture file: {err}"
                      if isinstance(err, SchemaError) else f"scoring error: {type(err).__name__}: {err}")
            rnd, node = _round_node(cid)
            rows.append({"round": rnd, "node-id": node, "capture": cid, "attacked": False, "status": "failed",
                         "success": False, "identified": False, "reason": reason, **extra})
    return rows


def _round_node(cid: str) -> tuple[int | None, int | None]:
    """Round and node of a capture id (``r003-n12``), for the row of a capture whose file is unreadable."""
    head, _, node = cid.partition("-n")
    try:
        return int(head[1:]), int(node)
    except ValueError:
        return None, None


def client_of(row: Mapping[str, Any]) -> str:
    """The client a row belongs to: its partition-id; ``node <id>`` when the reply carried none."""
    pid = row.get("partition-id")
    if pid is not None:
        return str(pid)
    return f"node {row.get('node-id')}" if row.get("node-id") is not None else "unknown"


# ---------------------------------------------------------------------------- summaries


def _mean(values: Sequence[Any]) -> float | None:
    vals = [float(v) for v in values if v is not None and isinstance(v, (int, float)) and math.isfinite(float(v))]
    return float(np.mean(vals)) if vals else None


def _median(values: Sequence[Any]) -> float | None:
    vals = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(float(v))]
    return float(np.median(vals)) if vals else None


def summarize(rows: Sequence[Mapping[str, Any]], report: AttackReport | None = None) -> dict[str, Any]:
    """Overall figures over the attacked captures only: rates count every scored sample of
    an attacked capture (a sample it did not rebuild is no success), means are over rebuilt
    samples, seconds are per attacked capture. Captures that could not be attacked are
    counted beside them (``not-attacked``), never as 0 % success. ``failed`` counts the
    samples of attacked captures that were not rebuilt; ``unscored`` the images rebuilt from
    captures whose truth is not known (a deployment): they enter no rate or mean. ``report``: the
    attack's own figures (:meth:`attacks.base.AttackReport.summarize`) are added."""
    attacked = [r for r in rows if r.get("attacked")]
    known = [r for r in attacked if r.get("sample") is not None]
    ok = [r for r in known if r.get("status") == "ok"]
    seconds = {r["capture"]: r.get("attack-seconds") for r in attacked}
    captures = {r["capture"] for r in rows}
    return {
        "captures": len(captures),
        "attacked": len(seconds),
        "not-attacked": len(captures - set(seconds)),
        "samples": len(known),
        "not-attacked-samples": sum(1 for r in rows if not r.get("attacked") and r.get("sample") is not None),
        "failed": sum(1 for r in attacked if r.get("status") == "failed"),
        "unscored": sum(1 for r in attacked if r.get("status") == "unscored"),
        "success-rate": _mean([bool(r.get("success")) for r in known]),
        "identified-rate": _mean([bool(r.get("identified")) for r in known]),
        "identified-dataset-rate": _mean([bool(r.get("identified-dataset")) for r in known]),
        "median-rank-dataset": _median([r.get("rank-dataset") for r in ok]),
        "label-accuracy": _mean([bool(r.get("label-correct")) for r in ok]),
        "mean-psnr": _mean([r.get("psnr") for r in ok]),
        "mean-ssim": _mean([r.get("ssim") for r in ok]),
        "mean-mse": _mean([r.get("mse") for r in ok]),
        "attack-seconds-per-capture": _mean(list(seconds.values())),
        **(report.summarize(rows, attacked) if report is not None else {}),
    }


def per_client(rows: Sequence[Mapping[str, Any]], report: AttackReport | None = None) -> list[dict[str, Any]]:
    """One summary per client (partition-id, else node: :func:`client_of`), ranked by leakage (success,
    identified, PSNR)."""
    groups: dict[Any, list] = defaultdict(list)
    for r in rows:
        groups[client_of(r)].append(r)
    out = []
    for client, rs in groups.items():
        s = summarize(rs, report)
        eps = [r.get("dp-epsilon") for r in rs if r.get("dp-epsilon") is not None]
        out.append({"client": client, "partition-id": rs[0].get("partition-id"), **s,
                    "dp-epsilon": max(eps) if eps else None})
    return sorted(out, key=lambda s: (-(s["success-rate"] or 0), -(s["identified-rate"] or 0), -(s["mean-psnr"] or -1e9)))


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if pct:
        return f"{100 * v:.1f}%"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def _cell(v: Any, pct: bool = False) -> str:
    return "–" if v is None or v == "" else _fmt(v, pct)


def summary_table(summary: Mapping[str, Any], clients: Sequence[Mapping[str, Any]],
                  report: AttackReport | None = None) -> str:
    """The end-of-run table (Markdown, also readable in a log); ``report``: the attack's own columns."""
    extra = report.table_columns if report is not None else ()
    head = ["client", "attacked captures", "samples", "success", "identified (D^α / dataset)", "PSNR dB", "SSIM",
            "label acc", *(h for h, _, _ in extra), "dp-epsilon", "could not be attacked"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in [*clients, {**summary, "client": "**all**", "dp-epsilon": None}]:
        cells = [c["client"], c["attacked"], c["samples"], _fmt(c["success-rate"], True),
                 f"{_fmt(c['identified-rate'], True)} / {_fmt(c['identified-dataset-rate'], True)}",
                 _fmt(c["mean-psnr"]), _fmt(c["mean-ssim"]), _fmt(c["label-accuracy"], True),
                 *(_cell(c.get(k), pct) for _, k, pct in extra),
                 "" if c["client"] == "**all**" else _fmt(c["dp-epsilon"]), c["not-attacked"]]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines)


def _png(rows: Sequence[Mapping[str, Any]], ctx: ScoringContext, title: str, limit: int = 16) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if r.get("_image") is not None][:limit]
    n = max(len(shown), 1)
    fig, axes = plt.subplots(n, 3, figsize=(4.2, 1.5 * n + 0.4), squeeze=False)
    for ax, name in zip(axes[0], ("truth", "rebuilt", "nearest in D^α")):
        ax.set_title(name, fontsize=8)
    for row_axes, r in zip(axes, shown):
        imgs = (ctx.x[r["sample"]], r["_image"], ctx.x[r["nearest-sample"]])
        for ax, img in zip(row_axes, imgs):
            ax.imshow(np.transpose(img, (1, 2, 0)).squeeze(), cmap="gray", vmin=0, vmax=1)
        row_axes[1].set_xlabel(f"r{r['round']} y={r['predicted-label']} {r['psnr']:.1f} dB"
                               f"{' ✓' if r['identified'] else ''}", fontsize=6)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def write_report(out_dir: str | Path, ctx: ScoringContext, rows: list[dict[str, Any]], flat: Mapping[str, Any]) -> dict[str, Any]:
    """Write clients.csv, report.md, client-<id>.png, summary.json; return the summary."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = report_of(flat)
    summary = summarize(rows, report)
    clients = per_client(rows, report)
    columns = list(COLUMNS) + [k for k in dict.fromkeys(k for r in rows for k in r) if k not in COLUMNS and not k.startswith("_")]
    atomic_write_csv(out_dir / "clients.csv", rows, columns)
    by_client: dict[Any, list] = defaultdict(list)
    for r in rows:
        by_client[client_of(r)].append(r)
    for client, rs in by_client.items():
        if not any(r.get("_image") is not None for r in rs):  # nothing scored to show
            continue
        try:
            atomic_write_bytes(out_dir / f"client-{client.replace(' ', '-')}.png",
                               _png(rs, ctx, f"client {client}: truth, rebuilt, nearest"))
        except (ValueError, KeyError, IndexError, TypeError) as err:
            log.warning("could not draw client %s: %s", client, err)
    settings = settings_of(flat, getattr(ctx, "model", None))
    failures = Counter(r.get("reason") for r in rows if r.get("attacked") and r.get("status") == "failed")
    unscored = Counter(r.get("reason") for r in rows if r.get("attacked") and r.get("status") == "unscored")
    unattacked = Counter(reason for reason in {r["capture"]: r.get("reason") for r in rows
                                               if not r.get("attacked")}.values())
    md = [f"# Leakage report\n\nRun: `{ctx.run_dir}`\n"]
    if unscored:
        md += ["**Unscored**: the attack ran on the captures it could attack, but which samples the clients used is "
               f"not known here, so nothing below measures how well it rebuilt them ({summary['unscored']} rebuilt "
               "images, labels and match in `clients.csv`, arrays in `reconstructions/`).\n",
               *[f"- {reason} ({n} rows)" for reason, n in unscored.most_common()], ""]
    md += ["## Overall\n", _overall_table(summary, report), "", *report.notes(rows),
           "## Per client, ranked by leakage\n", summary_table(summary, clients, report), "",
          *dp_section(rows),
          "## Settings\n", "\n".join(f"- `{k}` = `{v}`" for k, v in settings.items()), "",
          "## Definitions\n", M.DEFINITIONS, "",
          "Figures are over the attacked captures only (those the attack rebuilt images from). Rates count every "
          "sample of an attacked capture whose truth is known (a sample it did not rebuild is no success); means "
          "are over rebuilt samples; attack seconds are per attacked capture. Captures that could not be attacked "
          "(rejected by the server, malformed, refused or lost by the attack) are counted beside them, never as "
          "0 % success, with their reasons below.", ""]
    if unattacked:
        md += ["## Could not be attacked\n", "| reason | captures |", "|---|---|"]
        md += [f"| {reason} | {n} |" for reason, n in unattacked.most_common()]
        md += [""]
    if failures:
        md += ["## Samples of attacked captures not rebuilt\n", "| reason | rows |", "|---|---|"]
        md += [f"| {reason} | {n} |" for reason, n in failures.most_common()]
    atomic_write_text(out_dir / "report.md", "\n".join(md) + "\n")
    full = {**summary, "dir": str(out_dir), "settings": settings, "clients": clients}
    atomic_write_json(out_dir / "summary.json", full)
    return full


def _overall_table(s: Mapping[str, Any], report: AttackReport) -> str:
    head = ["captures", "attacked", "could not be attacked", "samples", "failed", "unscored", "success",
            "identified (D^α)", "identified (dataset)", "median rank (dataset)", "mean PSNR dB", "mean SSIM",
            "label acc", *(h for h, _, _ in report.table_columns), "attack s/capture"]
    cells = [s["captures"], s["attacked"], s["not-attacked"], s["samples"], s["failed"], s["unscored"],
             _fmt(s["success-rate"], True), _fmt(s["identified-rate"], True), _fmt(s["identified-dataset-rate"], True),
             _fmt(s["median-rank-dataset"]), _fmt(s["mean-psnr"]), _fmt(s["mean-ssim"]),
             _fmt(s["label-accuracy"], True), *(_cell(s.get(k), pct) for _, k, pct in report.table_columns),
             _fmt(s["attack-seconds-per-capture"])]
    return "| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n| " + " | ".join(map(str, cells)) + " |"


def leakage_dict(summary: Mapping[str, Any], report: AttackReport | None = None) -> dict[str, Any]:
    """The ``leakage`` entry of the run's summary.json (with the attack's own figures, ``report``)."""
    keys = ("success-rate", "identified-rate", "identified-dataset-rate", "median-rank-dataset", "mean-psnr",
            "label-accuracy", "mean-ssim", "mean-mse", "captures", "attacked", "not-attacked", "samples", "failed",
            "unscored", "attack-seconds-per-capture", *(report.summary_keys if report is not None else ()), "dir")
    out = {k: summary.get(k) for k in keys}
    out["scored"] = bool(summary.get("samples"))  # some sample's truth was known (false in a deployment)
    return out
