"""What to compute for Tables 1-6, and why the cells we do not compute are empty.

A :class:`Row` is one line of a table: its labels (dataset, activation, P, ...), the
paper's value where the paper has one, and either the task keys of the cells that give
ours or the reason there is none (dataset absent, paradigm not built, out of this scale's
budget). Rows are the union of the paper's grid and the scale's. A :class:`Task` is one
unit of work with its own result file: an artifact (a capture run, a trained target) or
a cell (an ADRA attack on captures, an AMIA attack on a target). Cells shared by several
tables (Table 1's elu row is Table 2's B = 1 row) are computed once.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from simulations.tables import engines
from simulations.tables.scale import AMIA_KEYS, SIMULATIONS, Scale

PAPER_VALUES = SIMULATIONS / "paper_values.toml"
# our dataset -> the paper's (None: not in the paper)
PAPER_DATASET = {"mnist-5k": "mnist", "mnist": "mnist", "cifar10": "cifar10", "cifar100": "cifar100"}
TABLES = (1, 2, 3, 4, 5, 6)
THETA_PAPER = "the paper's threat model: θ unknown"


class CostClass(NamedTuple):
    """What a task's time depends on: tasks of one class take about as long (for the ETA)."""

    kind: str
    dataset: str | None
    P: int | None
    B: int | None
    recipe: Any
    mode: Any
    shadow: Any  # an AMIA cell's shadow kind


@dataclass(frozen=True)
class Task:
    """One unit of work. ``kind``: captures, target, adra, amia. ``spec``: what the worker needs."""

    key: str
    kind: str
    spec: dict[str, Any]
    deps: tuple[str, ...] = ()

    @property
    def cost_class(self) -> CostClass:
        """Tasks of the same class take about as long (for the ETA)."""
        s = self.spec
        return CostClass(self.kind, s.get("dataset"), s.get("P"), s.get("B"), s.get("recipe"), s.get("mode"),
                         s.get("shadow"))


@dataclass
class Row:
    table: int
    labels: dict[str, Any]
    paper: dict[str, float] | None
    cells: dict[str, list[str]] = field(default_factory=dict)
    reason: str = ""


@dataclass
class Plan:
    scale: Scale
    datasets: tuple[str, ...]
    rows: dict[int, list[Row]]
    tasks: dict[str, Task]
    paper: dict[str, Any]
    notes: dict[str, str]  # dataset -> why it cannot run (absent), for the report


def load_paper(path: Path = PAPER_VALUES) -> dict[str, Any]:
    return tomllib.loads(path.read_text())


# ---------------------------------------------------------------------------- planning


class Planner:
    """Builds the rows and tasks of the selected tables for one scale."""

    def __init__(self, scale: Scale, datasets: tuple[str, ...] | None, data_root: str) -> None:
        self.s, self.root = scale, data_root
        self.adra_ds = tuple(datasets or scale.adra.datasets or scale.datasets)
        self.amia_ds = tuple(datasets or scale.amia.datasets or scale.datasets)
        self.datasets = tuple(dict.fromkeys(self.adra_ds + self.amia_ds))
        self.paper = load_paper()
        self.tasks: dict[str, Task] = {}
        wanted = set(self.datasets) | {"cifar10", "cifar100"}
        self.absent = {d: r for d in sorted(wanted) if (r := engines.dataset_reason(d, data_root))}
        # the paper's paradigms (Table 4) and this scale's, each asked of this checkout's config
        self.paradigms = engines.paradigm_reasons([*self.paper["table4"]["paradigm"], *scale.amia.paradigms])

    # -------------------------------------------------------------- datasets
    @staticmethod
    def ours_for(paper_ds: str, ours: tuple[str, ...]) -> list[str]:
        """Our datasets standing for one of the paper's (or the paper's own name when none does)."""
        return [d for d in ours if PAPER_DATASET.get(d) == paper_ds] or [paper_ds]

    def dataset_reason(self, d: str, ours: tuple[str, ...]) -> str:
        if d in self.absent:
            return f"dataset absent: {self.absent[d]}"
        if d not in ours:
            return f"out of this scale's budget (datasets: {', '.join(ours)})"
        return ""

    def row_datasets(self, paper_ds: tuple[str, ...], ours: tuple[str, ...]) -> list[str]:
        """Every dataset a table shows: the run's, then the paper's that none of them stands for."""
        out = list(ours)
        for p in paper_ds:
            out += [d for d in self.ours_for(p, ours) if d not in out]
        return out

    # -------------------------------------------------------------- config
    def config(self, *parts: dict[str, Any], **keys: Any) -> dict[str, Any]:
        merged: dict[str, Any] = {"data-root": self.root} if self.root else {}
        for p in (self.s.base, *parts):
            merged.update(p)
        merged.update({k.replace("_", "-"): v for k, v in keys.items()})
        return merged

    def add(self, task: Task) -> str:
        """Register a task once; a task's spec carries a digest of its inputs' specs, so that a
        result computed on an artifact made with other settings counts as stale."""
        if task.deps:
            inputs = hashlib.sha1(json.dumps([self.tasks[d].spec for d in task.deps], sort_keys=True,
                                             default=str).encode()).hexdigest()[:16]
            task = Task(task.key, task.kind, {**task.spec, "inputs": inputs}, task.deps)
        self.tasks.setdefault(task.key, task)
        return task.key

    # -------------------------------------------------------------- ADRA
    def capture_run(self, d: str, act: str, p: int, b: int, defense: str, seed: int) -> str:
        a = self.s.adra
        overrides = self.s.defenses.adra.get(defense, {})
        captures = -(-a.samples // b)
        cfg = self.config(a.capture, overrides, dataset=d, dag_nodes=p, activation=act, alpha_batch_size=b, seed=seed,
                          num_server_rounds=-(-captures // a.clients))  # every (round, client) update is a capture
        key = f"captures/{d}/{act}/P{p}/B{b}/{defense}/s{seed}"
        return self.add(Task(key, "captures", {"config": cfg, "clients": a.clients, "captures": captures,
                                               "runner": self.s.runner, "dataset": d, "P": p, "B": b}))

    def adra_cell(self, d: str, act: str, p: int, b: int, theta: str, mode: str, defense: str = "none") -> list[str]:
        a = self.s.adra
        runs = tuple(self.capture_run(d, act, p, b, defense, seed) for seed in self.s.seeds)
        attack = {**a.attack, **a.theta_modes[theta], "adra-mode": mode}
        key = f"adra/{d}/{act}/P{p}/B{b}/{defense}/{theta}/{mode}"
        return [self.add(Task(key, "adra", {"runs": list(runs), "attack": attack, "captures": -(-a.samples // b),
                                            "dataset": d, "P": p, "B": b, "mode": mode, "theta": theta}, runs))]

    def theta_reason(self, theta: str) -> str:
        missing = engines.config_reason(self.s.adra.theta_modes[theta])
        return f"θ mode '{theta}' cannot run in this checkout: {missing}" if missing else ""

    def adra_rows(self, table: int, d: str, grid_ok: bool, budget: str, labels: dict[str, Any],
                  paper: dict[str, float] | None, point: dict[str, Any], defense: str = "none") -> list[Row]:
        """One row per (θ mode, attack mode) when the cell runs; one explained row otherwise."""
        reason = self.dataset_reason(d, self.adra_ds) or ("" if grid_ok else f"out of this scale's budget ({budget})")
        if reason:
            return [Row(table, {**labels, "θ": self.s.adra.theta[0], "mode": "–"}, paper, reason=reason)]
        rows = []
        for theta in self.s.adra.theta:
            for mode in self.s.adra.modes:
                row = Row(table, {**labels, "θ": theta, "mode": mode}, paper)
                row.reason = self.theta_reason(theta) or engines.config_reason(self.s.defenses.adra.get(defense, {}))
                if not row.reason:
                    row.cells["ours"] = self.adra_cell(d, point["activation"], point["P"], point["B"], theta, mode, defense)
                rows.append(row)
        return rows

    def table1(self) -> list[Row]:
        t, a = self.paper["table1"], self.s.adra
        rows = []
        for d in self.row_datasets((t["dataset"],), self.adra_ds):
            paper_here = PAPER_DATASET.get(d) == t["dataset"]
            acts = list(dict.fromkeys([*a.activations, *(t["sr"] if paper_here else [])]))
            for act in acts:
                ps = sorted(set(a.nodes) | (set(t["P"]) if paper_here and act in t["sr"] else set()))
                for p in ps:
                    paper = None
                    if paper_here and act in t["sr"] and p in t["P"]:
                        i = t["P"].index(p)
                        paper = {"sr": t["sr"][act][i], "mse": t["mse"][act][i]}
                    ok = act in a.activations and p in a.nodes
                    budget = f"P in {list(a.nodes)}" if p not in a.nodes else f"activations {list(a.activations)}"
                    rows += self.adra_rows(1, d, ok, budget, {"dataset": d, "activation": act, "P": p}, paper,
                                           {"activation": act, "P": p, "B": 1})
        return rows

    def table2(self) -> list[Row]:
        t, a = self.paper["table2"], self.s.adra
        rows = []
        for d in self.row_datasets((t["dataset"],), self.adra_ds):
            paper_here = PAPER_DATASET.get(d) == t["dataset"]
            for b in sorted(set(a.batches) | (set(t["B"]) if paper_here else set())):
                for p in sorted(set(a.batch_nodes) | (set(t["P"]) if paper_here else set())):
                    paper = None
                    if paper_here and b in t["B"] and p in t["P"]:
                        i, j = t["B"].index(b), t["P"].index(p)
                        paper = {"sr": t["sr"][i][j], "mse": t["mse"][i][j]}
                    ok = b in a.batches and p in a.batch_nodes
                    budget = f"B in {list(a.batches)}" if b not in a.batches else f"P in {list(a.batch_nodes)}"
                    rows += self.adra_rows(2, d, ok, budget, {"dataset": d, "B": b, "P": p}, paper,
                                           {"activation": t["activation"], "P": p, "B": b})
        return rows

    # -------------------------------------------------------------- AMIA
    def target(self, recipe: str, d: str, p: int, paradigm: str, defense: str, seed: int,
               overrides: dict[str, Any]) -> str:
        m = self.s.amia
        base = m.target if recipe == "amia" else self.s.defenses.utility
        para = {"paradigm": paradigm} if paradigm != "darts" or engines.has_key("paradigm") else {}
        cfg = self.config(base, overrides, para, dataset=d, dag_nodes=p, seed=seed)
        key = f"targets/{recipe}/{d}/P{p}/{paradigm}/{defense}/s{seed}"
        return self.add(Task(key, "target", {"config": cfg, "clients": m.clients, "runner": self.s.runner,
                                             "dataset": d, "P": p, "recipe": recipe}))

    def amia_cells(self, d: str, p: int, paradigm: str = "darts", eta: float = 1.0, defense: str = "none",
                   extra: dict[str, Any] | None = None, variant: str = "", shadow: str = "") -> list[str]:
        """One AMIA cell per seed; ``extra`` amia keys (named by ``variant`` in the key) on top of the scale's.
        ``shadow``: the cell's figures are this shadow kind's, trained beside the primary kind on the same target."""
        m = self.s.amia
        overrides = self.s.defenses.amia.get(defense, {})
        train = {k: v for k, v in overrides.items() if k not in AMIA_KEYS}
        at_attack = {k: v for k, v in overrides.items() if k in AMIA_KEYS}
        train_defense = defense if train else "none"
        keys = []
        for seed in self.s.seeds:
            target = self.target("amia", d, p, paradigm, train_defense, seed, train)
            attack = {**m.attack, **(extra or {}), **at_attack, "amia-eta": eta}
            if eta < 1:
                attack["amia-shift-source"] = m.shift_source.get(d, "patches")
            if shadow:
                attack["amia-shadows"] = f"{m.primary_shadow},{shadow}"
            key = f"amia/{d}/P{p}/{paradigm}/eta{eta:g}/{defense}{'/' + variant if variant else ''}/s{seed}"
            keys.append(self.add(Task(key, "amia", {"target": target, "attack": attack, "dataset": d, "P": p,
                                                    "shadow": shadow or m.primary_shadow,
                                                    "attack-name": m.primary_attack},
                                      (target,))))
        return keys

    def amia_row(self, table: int, d: str, labels: dict[str, Any], paper: dict[str, float] | None, reason: str,
                 **cell: Any) -> Row:
        reason = self.dataset_reason(d, self.amia_ds) or reason
        row = Row(table, labels, paper, reason=reason)
        if not reason:
            row.cells["ours"] = self.amia_cells(d, **cell)
        return row

    def table3(self) -> list[Row]:
        t, m = self.paper["table3"], self.s.amia
        rows = []
        for d in self.row_datasets(tuple(t["acc"]), self.amia_ds):
            pd = PAPER_DATASET.get(d)
            for p in sorted(set(m.nodes) | (set(t["P"]) if pd in t["acc"] else set())):
                paper = None
                if pd in t["acc"] and p in t["P"]:
                    i = t["P"].index(p)
                    paper = {"acc": t["acc"][pd][i], "f1": t["f1"][pd][i]}
                reason = "" if p in m.nodes else f"out of this scale's budget (P in {list(m.nodes)})"
                rows.append(self.amia_row(3, d, {"dataset": d, "P": p, "shadow": m.primary_shadow}, paper, reason, p=p))
            rows += self.improved_rows(d)
        return rows

    def improved_rows(self, d: str) -> list[Row]:
        """The paper's improved AMIA: searched shadows (DARTS on the attacker's data) against the
        same target as the primary fixed shadows; the paper gives the gain at one P, averaged
        over its three datasets, so each of its datasets carries it."""
        t, m = self.paper["improved-amia"], self.s.amia
        in_paper = PAPER_DATASET.get(d) in self.paper["table3"]["acc"]
        rows = []
        for p in sorted(set(m.improved_nodes) | ({t["P"]} if in_paper else set())):
            paper = {"dacc": t["acc"], "df1": t["f1"]} if in_paper and p == t["P"] else None
            reason = "" if p in m.improved_nodes else (
                f"out of this scale's budget (improved-P in {list(m.improved_nodes)})")
            rows.append(self.amia_row(3, d, {"dataset": d, "P": p, "shadow": "searched"}, paper, reason, p=p,
                                      variant="improved", shadow="searched"))
        return rows

    def table4(self) -> list[Row]:
        t, m = self.paper["table4"], self.s.amia
        rows = []
        for d in self.row_datasets(tuple(t["acc"]), self.amia_ds):
            pd = PAPER_DATASET.get(d)
            for name in dict.fromkeys([*t["paradigm"], *m.paradigms]):
                paper = None
                if pd in t["acc"] and name in t["paradigm"]:
                    i = t["paradigm"].index(name)
                    paper = {"acc": t["acc"][pd][i], "f1": t["f1"][pd][i]}
                reason = self.paradigms.get(name, "") or (
                    "" if name in m.paradigms else f"out of this scale's budget (paradigms: {', '.join(m.paradigms)})")
                labels = {"dataset": d, "paradigm": name, "P": _vs(m.paradigm_nodes, t["P"])}
                rows.append(self.amia_row(4, d, labels, paper, reason, p=m.paradigm_nodes, paradigm=name,
                                          extra=m.paradigm_attack, variant="table4" if m.paradigm_attack else ""))
        return rows

    def table5(self) -> list[Row]:
        t, m = self.paper["table5"], self.s.amia
        rows = []
        for d in self.row_datasets(tuple(t["acc"]), self.amia_ds):
            pd = PAPER_DATASET.get(d)
            for eta in sorted(set(m.etas) | set(t["eta"]), reverse=True):
                paper = None
                if pd in t["acc"] and eta in t["eta"]:
                    i = t["eta"].index(eta)
                    paper = {"acc": t["acc"][pd][i], "f1": t["f1"][pd][i]}
                reason = "" if eta in m.etas else f"out of this scale's budget (η in {list(m.etas)})"
                labels = {"dataset": d, "η": eta, "P": _vs(m.eta_nodes, t["P"])}
                rows.append(self.amia_row(5, d, labels, paper, reason, p=m.eta_nodes, eta=eta))
        return rows

    # -------------------------------------------------------------- Table 6
    def table6(self) -> list[Row]:
        return self.table6_adra() + self.table6_amia()

    def utility(self, d: str, defense: str) -> dict[str, list[str]]:
        """The accuracy-cost runs of an ADRA defense: the same search with and without it."""
        g = self.s.defenses
        runs = {"utility-base": [], "utility-defended": []}
        for seed in self.s.seeds:
            runs["utility-base"].append(self.target("utility", d, g.utility_nodes, "darts", "none", seed, {}))
            runs["utility-defended"].append(
                self.target("utility", d, g.utility_nodes, "darts", defense, seed, g.adra.get(defense, {})))
        return runs

    def table6_adra(self) -> list[Row]:
        t, g = self.paper["table6"]["adra"], self.s.defenses
        rows = []
        for d in self.row_datasets((t["dataset"],), self.adra_ds):
            paper_here = PAPER_DATASET.get(d) == t["dataset"]
            for defense in dict.fromkeys([t["defense"], *g.adra]):
                for act in dict.fromkeys([*g.adra_activations, *(t["sr"] if paper_here else [])]):
                    n = max(len(t["points"]), len(g.adra_points))
                    for i in range(n):
                        ours = g.adra_points[i] if i < len(g.adra_points) else None
                        paper = None
                        if paper_here and defense == t["defense"] and act in t["sr"] and i < len(t["points"]):
                            paper = {"dsr": t["sr"][act][i], "dmse": t["mse"][act][i], "cost": t["accuracy-cost"]}
                        rows += self.table6_adra_rows(d, defense, act, i, ours, paper)
        return rows

    def table6_adra_rows(self, d: str, defense: str, act: str, i: int, ours: tuple[int, int] | None,
                         paper: dict[str, float] | None) -> list[Row]:
        t, g = self.paper["table6"]["adra"], self.s.defenses
        pb = t["points"][i] if i < len(t["points"]) else None
        point = (f"B={ours[0]}, P={ours[1]}" if ours else "–") + (f" (paper: B={pb[0]}, P={pb[1]})" if pb else "")
        labels = {"dataset": d, "defense": defense, "activation": act, "point": point}
        reason = self.dataset_reason(d, self.adra_ds)
        if not reason and (ours is None or act not in g.adra_activations):
            reason = ("out of this scale's budget (" + (f"(B, P) in {list(g.adra_points)}" if ours is None
                                                        else f"activations {list(g.adra_activations)}") + ")")
        if not reason and defense not in g.adra:
            reason = f"defense '{defense}' is not in this scale's [table6.adra.defenses]"
        reason = reason or engines.config_reason(g.adra.get(defense, {}))
        if reason:
            return [Row(6, {**labels, "θ": g.adra_theta[0], "mode": "–"}, paper, reason=reason)]
        rows = []
        b, p = ours
        for theta in g.adra_theta:
            for mode in self.s.adra.modes:
                row = Row(6, {**labels, "θ": theta, "mode": mode}, paper, reason=self.theta_reason(theta))
                if not row.reason:
                    defended = self.adra_cell(d, act, p, b, theta, mode, defense)
                    row.cells = {"defended": defended, "base": self.adra_cell(d, act, p, b, theta, mode),
                                 "captures-defended": list(self.tasks[defended[0]].deps), **self.utility(d, defense)}
                rows.append(row)
        return rows

    def table6_amia(self) -> list[Row]:
        t, g = self.paper["table6"]["amia"], self.s.defenses
        rows = []
        for d in self.row_datasets(tuple(t["acc"]), self.amia_ds):
            pd = PAPER_DATASET.get(d)
            for defense in dict.fromkeys([*t["defenses"], *g.amia]):
                for i in range(max(len(t["P"]), len(g.amia_nodes))):
                    ours = g.amia_nodes[i] if i < len(g.amia_nodes) else None
                    paper = None
                    if pd in t["acc"] and defense in t["defenses"] and i < len(t["P"]):
                        j = t["defenses"].index(defense)
                        paper = {"dacc": t["acc"][pd][j][i], "df1": t["f1"][pd][j][i],
                                 "cost": t["accuracy-cost"][defense]}
                    p_label = (str(ours) if ours else "–") + (f" (paper: {t['P'][i]})" if i < len(t["P"]) else "")
                    labels = {"dataset": d, "defense": defense, "P": p_label}
                    reason = self.dataset_reason(d, self.amia_ds)
                    if not reason and ours is None:
                        reason = f"out of this scale's budget (P in {list(g.amia_nodes)})"
                    if not reason and defense not in g.amia:
                        reason = f"defense '{defense}' is not in this scale's [table6.amia.defenses]"
                    reason = reason or engines.config_reason(g.amia.get(defense, {}))
                    row = Row(6, labels, paper, reason=reason)
                    if not reason:
                        row.cells = {"defended": self.amia_cells(d, ours, defense=defense),
                                     "base": self.amia_cells(d, ours)}
                    rows.append(row)
        return rows


def _vs(ours: int, paper: int) -> str:
    return f"{ours}" + ("" if ours == paper else f" (paper: {paper})")


def make_plan(scale: Scale, tables: tuple[int, ...], datasets: tuple[str, ...] | None = None,
              data_root: str | None = None) -> Plan:
    """Rows and tasks of ``tables`` for ``scale`` (``datasets`` overrides the scale's)."""
    planner = Planner(scale, datasets, scale.data_root if data_root is None else data_root)
    builders = {1: planner.table1, 2: planner.table2, 3: planner.table3, 4: planner.table4, 5: planner.table5,
                6: planner.table6}
    rows = {t: builders[t]() for t in tables}
    return Plan(scale, planner.datasets, rows, planner.tasks, planner.paper, planner.absent)
