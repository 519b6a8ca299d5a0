"""What ADRA adds to the generic leakage report (:mod:`attacks.report`): its hook, :class:`ADRAReport`.

- columns: what the attacker knew of θ (``theta-knowledge``), how faithfully it modelled
  the client's round (``fidelity``), the client's B, local steps and α optimizer, each
  capture's identifiability (``identifiability``, ``identifiability-rank``, ``input-size``);
- figures: the same over a run or a client (``theta-knowledge``, ``fidelity``,
  ``mean-identifiability``), and the report's fidelity line;
- settings: the ``adra-*`` keys and θ's knowledge;
- the scoring job :func:`attacks.adra.identifiability.identifiability_job`: the numerical
  rank of ∂(∇_α L)/∂x at the true first-step batch over the input's size, which needs the
  truth, so it runs beside the attack (in the same worker pool), never inside it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from attacks.base import AttackReport

def _mean(values: Sequence[Any]) -> float | None:
    vals = [float(v) for v in values if isinstance(v, (int, float)) and np.isfinite(float(v))]
    return float(np.mean(vals)) if vals else None


def _values(values: Sequence[Any]) -> str:
    """The distinct values of a column, most frequent first ("a; b")."""
    return "; ".join(v for v, _ in Counter(v for v in values if v).most_common())


class ADRAReport(AttackReport):
    """ADRA's columns, settings, figures and identifiability job in the leakage report."""

    setting_keys = ("adra-mode", "knows-weights", "theta-prior", "surrogate-draws", "adra-iterations",
                    "adra-restarts", "adra-optimizer", "adra-lr", "adra-distance", "adra-labels", "adra-unroll",
                    "adra-tv", "adra-prior", "adra-prior-components", "adra-method", "adra-inverse-pairs",
                    "adra-inverse-epochs", "adra-inverse-polish")
    detail_columns = ("theta-knowledge", "fidelity", "B", "local-steps", "alpha-optimizer")
    score_columns = ("identifiability", "identifiability-rank", "input-size")
    summary_keys = ("theta-knowledge", "fidelity", "mean-identifiability")
    table_columns = (("θ known as", "theta-knowledge", False), ("identifiability", "mean-identifiability", False))

    def score_job(self, flat: Mapping[str, Any]) -> str | None:
        # named, not imported: the job imports ADRA, whose class holds this report
        return "attacks.adra.identifiability:identifiability_job" if flat.get("attack-identifiability", True) else None

    def summarize(self, rows: Sequence[Mapping[str, Any]], attacked: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        return {"theta-knowledge": _values([r.get("theta-knowledge") for r in rows]),
                "fidelity": _values([r.get("fidelity") for r in rows]),
                "mean-identifiability": _mean([r.get("identifiability") for r in attacked])}

    def notes(self, rows: Sequence[Mapping[str, Any]]) -> list[str]:
        counts = Counter(r.get("fidelity") for r in rows if r.get("fidelity")).most_common()
        return ["How faithfully the attack modelled the clients' rounds (`fidelity`): "
                + ("; ".join(f"{v} ({n} rows)" for v, n in counts) or "–"), ""]
