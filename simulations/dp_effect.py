"""What DP buys and costs: the same eavesdropped search with no defense and with the DP mods.

``python -m simulations.dp_effect [SWEEP.toml] [--clients N] [--only NAME ...] [--out DIR] [--reuse]``

Runs every ``[[variant]]`` of the sweep file (default ``simulations/dp_effect.toml``)
through the launcher, each with the sweep's ``[base]`` overrides, and writes
``dp-effect.csv`` and ``dp-effect.md`` to ``--out`` (default ``outputs/dp-effect``): per
variant the attack success rate, identified rate, mean PSNR and label accuracy of ADRA
(from each run's ``summary.json`` ``leakage`` dict, else its ``leakage/clients.csv``), the
final central accuracy and the largest cumulative ε any client reached. The ``[attack]``
keys (eavesdropper, ADRA) are passed only when the config schema knows them; otherwise
the attack columns say ``not measured`` and the table says why.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import tomllib
from pathlib import Path
from typing import Any

from fednas.config import KEY_BY_NAME, ConfigError, toml_value
from fednas.rundir import atomic_write_csv, atomic_write_text
from simulations.launcher import PROJECT_ROOT, LaunchError, launch

DEFAULT_SWEEP = PROJECT_ROOT / "simulations" / "dp_effect.toml"
ATTACK_COLUMNS = ("success-rate", "identified-rate", "mean-psnr", "label-accuracy")
NOT_MEASURED = "not measured"


def load_sweep(path: Path) -> dict[str, Any]:
    """The sweep file: ``clients``, ``[base]``, ``[attack]`` and a list of ``[[variant]]``."""
    if not path.is_file():
        raise ConfigError(f"sweep file {str(path)!r} does not exist")
    data = tomllib.loads(path.read_text())
    unknown = set(data) - {"clients", "base", "attack", "variant"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level entries {sorted(unknown)}; allowed: clients, base, attack, variant")
    variants = data.get("variant", [])
    names = [v.get("name") for v in variants]
    if not variants or any(not isinstance(n, str) or not n for n in names) or len(set(names)) != len(names):
        raise ConfigError(f"{path}: needs [[variant]] tables, each with a unique non-empty 'name'")
    return {"clients": int(data.get("clients", 2)), "base": data.get("base", {}), "attack": data.get("attack", {}),
            "variants": variants}


def attack_keys(attack: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The ``[attack]`` keys this checkout understands, and why the rest were left out."""
    missing = [k for k in attack if k not in KEY_BY_NAME]
    if missing:
        return {}, (f"attack columns not measured: this checkout's config has no key {', '.join(repr(k) for k in missing)} "
                    "(the eavesdropper and ADRA are not part of it), so the runs were not eavesdropped")
    return dict(attack), ""


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def leakage_of(run_dir: Path, summary: dict[str, Any]) -> dict[str, Any] | None:
    """ADRA's aggregate numbers for a run: summary.json's ``leakage``, else leakage/clients.csv."""
    found = summary.get("leakage")
    if isinstance(found, dict) and any(k in found for k in ATTACK_COLUMNS):
        return {k: found.get(k) for k in ATTACK_COLUMNS}
    path = run_dir / "leakage" / "clients.csv"
    if not path.is_file():
        return None
    with path.open() as f:
        rows = list(csv.DictReader(f))

    def mean(col: str) -> float | None:
        vals = [float(r[col]) for r in rows if r.get(col) not in (None, "", "nan")]
        return sum(vals) / len(vals) if vals else None

    return {"success-rate": mean("success"), "identified-rate": mean("identified"), "mean-psnr": mean("psnr"),
            "label-accuracy": mean("label-correct")}


def row_for(name: str, variant: dict[str, Any], run_dir: Path, status: str) -> dict[str, Any]:
    """One table row from a finished run directory."""
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    dp = summary.get("dp", {})
    leak = leakage_of(run_dir, summary)
    mechanisms = dp.get("mechanisms", {})
    mech = ", ".join(mechanisms) or "none"
    row = {"variant": name, "mechanism": mech, "status": status,
           "noise": variant.get("dp-update-noise-std", variant.get("dp-sgd-noise-multiplier", "")),
           "clip": ", ".join(_fmt(m.get("clip")) for m in mechanisms.values()),
           "epsilon": dp.get("epsilon", math.inf if mech == "none" else None), "delta": dp.get("delta", ""),  # no DP: no bound
           "central-acc": summary.get("final-central-acc"), "run-dir": str(run_dir)}
    row.update({k: (leak or {}).get(k, NOT_MEASURED) if leak else NOT_MEASURED for k in ATTACK_COLUMNS})
    return row


def _fmt(v: Any) -> str:
    if v is None:
        return "inf"  # summary.json writes a non-finite ε (no noise) as null
    if isinstance(v, float):
        return "inf" if math.isinf(v) else f"{v:.4g}"
    return str(v)


def markdown(rows: list[dict[str, Any]], note: str, command: str) -> str:
    cols = ["variant", "mechanism", "noise", "clip", "epsilon", "central-acc", *ATTACK_COLUMNS]
    base = next((r for r in rows if r["mechanism"] == "none"), None)
    lines = [f"Command: `{command}`", "", "| " + " | ".join(cols + ["Δ central-acc"]) + " |",
             "|" + "---|" * (len(cols) + 1)]
    for r in rows:
        delta = ""
        if base and isinstance(r["central-acc"], float) and isinstance(base["central-acc"], float):
            delta = f"{r['central-acc'] - base['central-acc']:+.3f}"
        lines.append("| " + " | ".join(_fmt(r[c]) for c in cols) + f" | {delta} |")
    delta_note = rows[0]["delta"] if rows and rows[0]["delta"] != "" else next((r["delta"] for r in rows if r["delta"] != ""), "")
    lines += ["", f"noise: σ per coordinate (dp-update) or z (dp-sgd); ε: the largest cumulative ε any client "
                  f"reached, at δ = {delta_note} (units and accountant: docs/privacy.md)."]
    if note:
        lines += ["", note + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulations.dp_effect", description=__doc__.splitlines()[0])
    parser.add_argument("sweep", nargs="?", default=str(DEFAULT_SWEEP))
    parser.add_argument("--clients", type=int, help="override the sweep's number of clients")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these variants (by name)")
    parser.add_argument("--out", default=str(PROJECT_ROOT / "outputs" / "dp-effect"))
    parser.add_argument("--reuse", action="store_true", help="keep the runs already completed under --out")
    args = parser.parse_args(argv)
    try:
        sweep = load_sweep(Path(args.sweep))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    extra, note = attack_keys(sweep["attack"])
    variants = [v for v in sweep["variants"] if not args.only or v["name"] in args.only]
    out = Path(args.out).resolve()
    rows = []
    for variant in variants:
        name = variant["name"]
        overrides = {**sweep["base"], **extra, **{k: v for k, v in variant.items() if k != "name"}}
        run_dir = out / slug(name)
        done = run_dir / "summary.json"
        status = "reused"
        if not (args.reuse and done.is_file() and json.loads(done.read_text()).get("status") == "completed"):
            overrides["run-dir"] = str(run_dir)
            sets = [f"{k}={toml_value(v)}" for k, v in overrides.items()]
            print(f"[dp-effect] {name}: running ({run_dir})", flush=True)
            out.mkdir(parents=True, exist_ok=True)
            try:
                with (out / f"{slug(name)}.log").open("w") as log_file:
                    result = launch(None, sets, clients=args.clients or sweep["clients"], stream=log_file)
                status = "completed" if result.returncode == 0 else f"failed ({result.status})"
            except (ConfigError, LaunchError) as err:
                print(f"error: {name}: {err}", file=sys.stderr)
                return 2 if isinstance(err, ConfigError) else 1
        rows.append(row_for(name, variant, run_dir, status))
        print(f"[dp-effect] {name}: {status}, central-acc {_fmt(rows[-1]['central-acc'])}, "
              f"epsilon {_fmt(rows[-1]['epsilon'])}", flush=True)
    if not note and all(r["success-rate"] == NOT_MEASURED for r in rows):
        note = "attack columns not measured: the runs wrote no leakage results (summary.json 'leakage' or leakage/clients.csv)"
    command = "python -m simulations.dp_effect" + ("" if Path(args.sweep).resolve() == DEFAULT_SWEEP else f" {args.sweep}")
    atomic_write_csv(out / "dp-effect.csv", rows)
    text = markdown(rows, note, command)
    atomic_write_text(out / "dp-effect.md", text)
    print(text)
    print(out / "dp-effect.md")
    return 0 if all(r["status"] in ("completed", "reused") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
