"""The tables' plan: scale files checked, every paper cell present and explained, cells shared."""

import json
from pathlib import Path

import pytest

from fednas.config import parse_config
from simulations.tables import engines
from simulations.tables.plan import TABLES, load_paper, make_plan
from simulations.tables.runner import current, result_path
from simulations.tables.scale import SCALES, ScaleError, load_scale

SMOKE = load_scale("smoke")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """One empty data-root for the module (CIFAR absent; the loaded datasets stay cached)."""
    return str(tmp_path_factory.mktemp("data"))


def _paper_cells(paper: dict, table: int) -> int:
    """How many (dataset, ...) values the paper prints in a table."""
    if table == 1:
        return sum(len(v) for v in paper["table1"]["sr"].values())
    if table == 2:
        return sum(len(r) for r in paper["table2"]["sr"])
    if table == 3:  # and the improved-AMIA gain, once per dataset of Table 3
        return sum(len(v) + 1 for v in paper["table3"]["acc"].values())
    if table in (4, 5):
        return sum(len(v) for v in paper[f"table{table}"]["acc"].values())
    adra = sum(len(v) for v in paper["table6"]["adra"]["sr"].values())
    return adra + sum(len(r) for v in paper["table6"]["amia"]["acc"].values() for r in v)


@pytest.mark.parametrize("name", sorted(SCALES))
def test_every_scale_file_loads_and_plans(name, root):
    scale = load_scale(name)
    assert scale.name == name
    plan = make_plan(scale, TABLES, ("mnist-5k",), data_root=root)  # an empty data-root: CIFAR absent
    for t in TABLES:
        assert plan.rows[t] and all(bool(r.cells) != bool(r.reason) for r in plan.rows[t])  # computed, or why not
    # the tasks: each one a row names exists, each dependency too, no cycle, and none that no row needs
    needed = [k for t in TABLES for r in plan.rows[t] for keys in r.cells.values() for k in keys]
    assert needed and set(needed) <= set(plan.tasks)
    reached, todo = set(), list(needed)
    while todo:
        key = todo.pop()
        if key not in reached:
            reached.add(key)
            assert set(plan.tasks[key].deps) <= set(plan.tasks), key
            todo += plan.tasks[key].deps
    assert reached == set(plan.tasks)
    done: set[str] = set()
    while len(done) < len(plan.tasks):  # a topological order exists: no task waits on itself
        ready = {k for k, task in plan.tasks.items() if k not in done and set(task.deps) <= done}
        assert ready, f"cycle among {sorted(set(plan.tasks) - done)[:3]}"
        done |= ready
    # Tables 1 and 2 compute exactly the scale's grid (activations or B by P), in its θ modes
    grid = {1: {(a, n) for a in scale.adra.activations for n in scale.adra.nodes},
            2: {(b, n) for b in scale.adra.batches for n in scale.adra.nodes}}
    for t, row_key in ((1, "activation"), (2, "B")):
        computed = [r for r in plan.rows[t] if r.cells]
        assert {(r.labels[row_key], r.labels["P"]) for r in computed} == grid[t]
        assert {r.labels["θ"] for r in computed} == set(scale.adra.theta)
        assert {r.labels["mode"] for r in computed} <= set(scale.adra.modes)
    # every run a task asks for is a config the app accepts, at the point the task names
    for task in plan.tasks.values():
        if "config" in task.spec:
            cfg = parse_config(task.spec["config"])
            assert cfg.run.seed in scale.seeds and cfg.data.dataset == task.spec["dataset"] == "mnist-5k"
        if task.kind == "captures":
            assert (cfg.space.dag_nodes, cfg.search.alpha_batch_size) == (task.spec["P"], task.spec["B"])


def test_every_paper_value_has_a_row_and_no_row_is_blank(root):
    plan = make_plan(SMOKE, TABLES, data_root=root)
    paper = load_paper()
    for t in TABLES:
        with_paper = [r for r in plan.rows[t] if r.paper]
        # each paper value appears once per θ/attack mode it is compared under; at least once
        assert len({json.dumps(r.paper, sort_keys=True) + repr(sorted((k, v) for k, v in r.labels.items()
                                                                        if k not in ("θ", "mode")))
                    for r in with_paper}) == _paper_cells(paper, t)
        for r in plan.rows[t]:
            assert bool(r.cells) != bool(r.reason), r  # either ours is computed, or it says why not
            assert all(k in plan.tasks for keys in r.cells.values() for k in keys)


def test_reasons_name_the_dataset_the_paradigm_and_the_budget(root):
    plan = make_plan(SMOKE, TABLES, data_root=root)
    cifar = [r for r in plan.rows[3] if r.labels["dataset"] == "cifar10"]
    assert cifar and all(r.reason.startswith("dataset absent") and root in r.reason for r in cifar)
    table4 = {r.labels["paradigm"]: r for r in plan.rows[4] if r.labels["dataset"] == "mnist-5k"}
    assert table4["darts"].cells
    for name in ("enas", "pdarts", "smash"):
        built = engines.paradigm_reasons([name])[name] == ""
        assert table4[name].reason.startswith("out of this scale's budget" if built else "paradigm not built")
    big = [r for r in plan.rows[1] if r.labels["P"] == 256]
    assert big and all(r.reason.startswith("out of this scale's budget (P in [3])") for r in big)


def test_improved_amia_rows_attack_the_primary_rows_target_with_both_shadow_kinds(root):
    plan = make_plan(SMOKE, (3,), ("mnist-5k",), data_root=root)
    rows = {(r.labels["P"], r.labels["shadow"]): r for r in plan.rows[3] if r.labels["dataset"] == "mnist-5k"}
    fixed, improved = rows[(3, "cnn")], rows[(3, "searched")]
    [fk], [ik] = fixed.cells["ours"], improved.cells["ours"]
    f, i = plan.tasks[fk], plan.tasks[ik]
    assert fk != ik and f.deps == i.deps  # one target, attacked twice
    assert (f.spec["shadow"], i.spec["shadow"]) == ("cnn", "searched")
    assert i.spec["attack"]["amia-shadows"] == "cnn,searched" and f.spec["attack"]["amia-shadows"] == "cnn"
    # the paper's gain (P = 32, three datasets averaged) stands on a row of its own, out of this budget
    paper = rows[(32, "searched")]
    assert paper.paper == {"dacc": 0.13, "df1": 0.17} and paper.reason.startswith("out of this scale's budget")
    bad = SMOKE.path.read_text().replace('primary-shadow = "cnn"', 'primary-shadow = "searched"').replace(
        'amia-shadows = "cnn"', 'amia-shadows = "searched"')
    path = Path(root) / "searched-primary.toml"
    path.write_text(bad)
    with pytest.raises(ScaleError, match="improved-P"):
        load_scale(str(path))


def test_a_cell_shared_by_tables_is_one_task(root):
    plan = make_plan(SMOKE, (1, 2), data_root=root)
    t1 = {k for r in plan.rows[1] if r.labels["activation"] == "elu" and r.labels["P"] == 3 for k in r.cells["ours"]}
    t2 = {k for r in plan.rows[2] if r.labels["B"] == 1 and r.labels["P"] == 3 for k in r.cells["ours"]}
    assert t1 and t1 == t2
    # the two θ modes attack the same captures
    deps = {plan.tasks[k].deps for k in t1}
    assert len(deps) == 1


def test_theta_mode_with_a_key_this_checkout_lacks_says_so(tmp_path, root):
    text = (SMOKE.path.read_text()
            .replace('theta = ["unknown", "server"]', 'theta = ["unknown", "round1"]')
            .replace("server = { knows-weights = true }", 'round1 = { theta-knowledge-from-the-future = "round1" }'))
    path = tmp_path / "scale.toml"
    path.write_text(text)
    plan = make_plan(load_scale(str(path)), (1,), data_root=root)
    rows = [r for r in plan.rows[1] if r.labels["θ"] == "round1"]
    assert rows and all("theta-knowledge-from-the-future" in r.reason and not r.cells for r in rows)


@pytest.mark.parametrize("edit, names", [
    (("[adra]\n", "[adra]\nsampels = 3\n"), "adra.sampels"),
    (("samples = 2", "samples = 0"), "adra.samples"),
    (("channels = 2", "chanels = 2"), "chanels"),
    (('amia-shadows = "cnn"', 'amia-shadows = "cnn"\nalpha-l2 = 0.1'), "alpha-l2"),
    (('primary-shadow = "cnn"', 'primary-shadow = "resnet50"'), "primary-shadow"),
    (('theta = ["unknown", "server"]', 'theta = ["nobody"]'), "adra.theta"),
])
def test_a_bad_scale_file_is_refused_naming_the_key(tmp_path, edit, names):
    path = tmp_path / "bad.toml"
    path.write_text(SMOKE.path.read_text().replace(*edit, 1))
    with pytest.raises(ScaleError, match=names.replace(".", r"\.")) as err:
        load_scale(str(path))
    assert str(path) in str(err.value)


def test_a_result_made_with_other_settings_is_stale(tmp_path, root):
    plan = make_plan(SMOKE, (2,), data_root=root)
    task = next(t for t in plan.tasks.values() if t.kind == "adra")
    path = result_path(tmp_path, task.key)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"key": task.key, "status": "ok", "spec": task.spec, "result": {}}))
    assert current(tmp_path, task) is not None
    path.write_text(json.dumps({"key": task.key, "status": "ok", "spec": {**task.spec, "attack": {}}, "result": {}}))
    assert current(tmp_path, task) is None
    # and a cell whose captures were made with other settings carries another input digest
    other = SMOKE.path.read_text().replace("local-steps = 1", "local-steps = 2")
    (tmp_path / "other.toml").write_text(other)
    plan2 = make_plan(load_scale(str(tmp_path / "other.toml")), (2,), data_root=root)
    assert plan2.tasks[task.key].spec["inputs"] != task.spec["inputs"]
    assert Path(result_path(tmp_path, task.key)).is_file()


def test_the_estimate_is_per_capture_scaled_by_p_and_reads_other_folders(tmp_path, root):
    from simulations.tables.runner import P_EXPONENT, CostModel, units

    plan = make_plan(SMOKE, (2,), data_root=root)
    cells = {(t.spec["B"], t.spec["theta"]): t for t in plan.tasks.values() if t.kind == "adra"}
    measured, other = cells[(1, "unknown")], cells[(2, "unknown")]
    elsewhere = tmp_path / "slice"
    path = result_path(elsewhere, measured.key)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"key": measured.key, "kind": "adra", "status": "ok", "spec": measured.spec,
                                "seconds": 999.0, "cpu-seconds": 40.0}))
    costs = CostModel(tmp_path / "empty", plan.tasks.values(), [elsewhere])
    assert costs.measured(measured) and costs.seconds(measured) == pytest.approx(40.0)  # CPU seconds, not wall
    per_capture = 40.0 / units(measured)
    assert costs.seconds(other) == pytest.approx(per_capture * units(other))  # B = 2: half the captures
    bigger = type(measured)(measured.key + "-P6", "adra", {**measured.spec, "P": 6}, measured.deps)
    assert costs.seconds(bigger) == pytest.approx(40.0 * 2 ** P_EXPONENT)


def test_a_searched_shadow_cell_is_not_estimated_from_fixed_shadow_cells(tmp_path, root):
    from simulations.tables.runner import PRIORS, CostModel

    plan = make_plan(SMOKE, (3,), ("mnist-5k",), data_root=root)
    cells = {t.spec["shadow"]: t for t in plan.tasks.values() if t.kind == "amia" and t.spec["P"] == 3}
    fixed, searched = cells["cnn"], cells["searched"]
    path = result_path(tmp_path, fixed.key)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"key": fixed.key, "kind": "amia", "status": "ok", "spec": fixed.spec,
                                "seconds": 30.0, "cpu-seconds": 20.0}))
    costs = CostModel(tmp_path, plan.tasks.values())
    assert costs.seconds(fixed) == pytest.approx(20.0) and not costs.measured(searched)
    assert costs.seconds(searched) == pytest.approx(PRIORS["amia-searched"] * (3 / 8) ** 1.8)


def test_published_text_names_paths_from_the_project_root(tmp_path, monkeypatch):
    from simulations.tables.__main__ import publish
    from simulations.tables.render import portable

    monkeypatch.chdir(tmp_path)  # run from the project root

    out = tmp_path / "out"
    out.mkdir()
    (out / "tables.md").write_text(f"not found under data-root='{tmp_path}/data' (looked in {tmp_path}/data/x)\n")
    (out / "table1.csv").write_text(f"note\n{tmp_path}\n")
    publish(out, tmp_path / "docs")
    assert (tmp_path / "docs" / "tables.md").read_text() == "not found under data-root='data' (looked in data/x)\n"
    assert (tmp_path / "docs" / "table1.csv").read_text() == "note\n.\n"
    assert portable(f"a {tmp_path}/data b {tmp_path}", tmp_path) == "a data b ."


def _git(root, *args):
    import subprocess

    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=root, check=True,
                   capture_output=True)


def test_a_source_change_makes_finished_cells_stale_and_a_dirty_tree_cannot_publish(tmp_path, root):
    from simulations.tables import fingerprint
    from simulations.tables.__main__ import refuse_dirty
    from simulations.tables.runner import is_done

    project = tmp_path / "project"
    (project / "fednas").mkdir(parents=True)
    (project / "fednas" / "a.py").write_text("x = 1\n")
    (project / "README.md").write_text("r\n")
    _git(project, "init", "-q")
    _git(project, "add", ".")
    _git(project, "commit", "-q", "-m", "one")
    before = fingerprint.engine(project)
    assert refuse_dirty(project) == "" and not before["commit"].endswith("-dirty")
    (project / "README.md").write_text("docs change\n")  # not source: same hash, but a dirty tree
    assert fingerprint.source_hash(project) == before["source"]
    assert "uncommitted changes" in refuse_dirty(project) and "README.md" in refuse_dirty(project)
    _git(project, "checkout", "-q", "README.md")
    (project / "fednas" / "b.py").write_text("y = 2\n")  # a new, untracked module: other source, dirty
    assert fingerprint.source_hash(project) != before["source"] and "fednas/b.py" in refuse_dirty(project)

    plan = make_plan(SMOKE, (2,), data_root=root)
    task = next(t for t in plan.tasks.values() if t.kind == "adra")
    path = result_path(tmp_path / "out", task.key)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"key": task.key, "status": "ok", "spec": task.spec, "result": {}, "engine": before}))
    assert is_done(tmp_path / "out", task, before)
    assert not is_done(tmp_path / "out", task, fingerprint.engine(project))  # the source changed: run again
    newer_torch = {**before, "libraries": {**before["libraries"], "torch": "99.0"}}
    assert not is_done(tmp_path / "out", task, newer_torch)
    path.write_text(json.dumps({"key": task.key, "status": "ok", "spec": task.spec, "result": {}}))
    assert not is_done(tmp_path / "out", task, before)  # a result older than fingerprints
