"""``python -m simulations.adra_sweep``: the ADRA figures of docs/adra.md, reproducibly.

1. Capture runs: ``simulations/adra-digits.toml`` through the launcher (eavesdrop on,
   attacks off), one run per P in ``--dag-nodes`` and one per B in ``--batches`` (at
   ``--batch-nodes``). Runs already listed in ``<out>/runs.json`` are reused.
2. Offline attacks on each run (the engine of ``python -m attacks.adra``): every mode in
   ``--modes`` × ``knows-weights`` in ``--knows`` for the P runs, strong mode with known
   weights for the B runs; each writes a fresh ``leakage-N`` folder in its run.
3. ``<out>/figures.md`` and ``figures.csv``: success rate, identified rate, mean PSNR,
   label accuracy and attack seconds per capture, one row per (P, B, mode, knows-weights).

Example (the documented figures): ``python -m simulations.adra_sweep --dag-nodes 8,16,32
--batches 1,2,4,8 --out outputs/adra-figures``; add ``--limit 6`` for a quick look.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from pathlib import Path
from typing import Any

from fednas.overrides import dag_nodes_option
from fednas.rundir import atomic_write_csv, atomic_write_json, atomic_write_text, unique_path
from simulations.launcher import PROJECT_ROOT, launch

log = logging.getLogger(__name__)

EXPERIMENT = PROJECT_ROOT / "simulations" / "adra-digits.toml"
COLUMNS = ("P", "B", "alpha-optimizer", "mode", "knows-weights", "captures", "samples", "success-rate",
           "identified-rate", "mean-psnr", "label-accuracy", "attack-seconds-per-capture", "mean-identifiability", "leakage")


def _csv_list(text: str, kind=int) -> list:
    return [kind(v) for v in text.split(",") if v.strip()]


def capture_run(key: str, sets: list[str], runs: dict[str, str], out: Path, clients: int | None) -> Path:
    """A capture run for ``key`` (reused when ``runs.json`` has it)."""
    if key in runs and (Path(runs[key]) / "captures").is_dir():
        return Path(runs[key])
    result = launch(EXPERIMENT, sets + ["attack-online=false", f"run-name=adra-{key}"], clients=clients)
    if result.returncode != 0:
        raise RuntimeError(f"capture run {key} did not complete ({result.status}); see {result.run_dir}")
    runs[key] = str(result.run_dir)
    atomic_write_json(out / "runs.json", runs)
    return result.run_dir


def attack(run_dir: Path, sets: dict[str, Any], limit: int, workers: int) -> dict[str, Any]:
    """Attack a run's captures offline with ``sets``; return the leakage summary."""
    from attacks.adra.__main__ import load_settings
    from attacks.leakage import LeakageAudit
    from fednas.captures import CaptureStore

    flat = load_settings(run_dir, [f"{k}={v}" for k, v in sets.items()])
    ids = CaptureStore(run_dir).ids()
    ids = ids[:limit] if limit > 0 else ids
    folder = unique_path(run_dir / "leakage")
    audit = LeakageAudit(run_dir, flat, folder, workers)
    for cid in ids:
        audit.submit(cid)
    summary = audit.finish(only=ids)
    return {**summary, "leakage": str(folder)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m simulations.adra_sweep", description=__doc__.splitlines()[0])
    dag_nodes_option(p, default="8,16,32", help="P of the B = 1 runs")
    p.add_argument("--batches", default="1,2,4,8", help="B of the batch runs (at --batch-nodes)")
    p.add_argument("--batch-nodes", type=int, default=8)
    p.add_argument("--modes", default="paper,strong")
    p.add_argument("--knows", default="true,false", help="knows-weights values")
    p.add_argument("--alpha-optimizer", default="sgd", choices=("sgd", "adam"))
    p.add_argument("--clients", type=int, help="clients per capture run (default: the experiment's)")
    p.add_argument("--limit", type=int, default=0, help="captures attacked per run (0: all)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="extra attack keys for every attack, e.g. adra-iterations=100")
    p.add_argument("--out", default=str(PROJECT_ROOT / "outputs" / "adra-figures"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs: dict[str, str] = json.loads((out / "runs.json").read_text()) if (out / "runs.json").is_file() else {}
    extra = dict(item.split("=", 1) for item in args.sets)
    rows = _previous_rows(out / "figures.csv")  # sweeps into one --out add up; a repeated row is replaced
    opt = args.alpha_optimizer
    plan = [(n, 1, mode, knows) for n in _csv_list(args.dag_nodes) for mode in _csv_list(args.modes, str)
            for knows in _csv_list(args.knows, str)]
    plan += [(args.batch_nodes, b, "strong", "true") for b in _csv_list(args.batches) if b != 1]
    for nodes, batch, mode, knows in plan:
        key = f"{opt}-p{nodes}-b{batch}"
        run = capture_run(key, [f"dag-nodes={nodes}", f"alpha-batch-size={batch}", f"alpha-optimizer={opt}"], runs, out,
                          args.clients)
        summary = attack(run, {**extra, "adra-mode": mode, "knows-weights": knows}, args.limit, args.workers)
        row = {"P": nodes, "B": batch, "alpha-optimizer": opt, "mode": mode, "knows-weights": knows,
               **{k: summary.get(k) for k in COLUMNS if k in summary}}
        rows = [r for r in rows if _key(r) != _key(row)] + [row]
        atomic_write_csv(out / "figures.csv", rows, COLUMNS)
        atomic_write_text(out / "figures.md", table(rows))
        print(table([row]).splitlines()[-1], flush=True)
    print(table(rows))
    print(out)
    return 0


def _key(row: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(row[k]).lower() for k in ("P", "B", "alpha-optimizer", "mode", "knows-weights"))


def _previous_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k, v in r.items():
            if k not in ("alpha-optimizer", "mode", "knows-weights", "leakage"):
                r[k] = None if v == "" else float(v) if "." in v or "e" in v else int(v)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """Rows as the Markdown table of docs/adra.md."""
    def pct(v):
        return "–" if v is None else f"{100 * v:.0f}%"

    def num(v, f="{:.1f}"):
        return "–" if v is None else f.format(v)

    lines = ["| P | B | α opt | mode | knows θ | samples | success | identified | PSNR dB | label acc | s/capture |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['P']} | {r['B']} | {r['alpha-optimizer']} | {r['mode']} | {r['knows-weights']} | "
                     f"{r.get('samples', '–')} | {pct(r.get('success-rate'))} | {pct(r.get('identified-rate'))} | "
                     f"{num(r.get('mean-psnr'))} | {pct(r.get('label-accuracy'))} | "
                     f"{num(r.get('attack-seconds-per-capture'), '{:.0f}')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
