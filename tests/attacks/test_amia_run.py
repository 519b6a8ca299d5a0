"""AMIA on a run directory: the CLI, what it writes, and how it refuses bad input."""

import json
import shutil

import numpy as np
import pytest

from attacks.amia import amia_after_run
from attacks.amia.__main__ import main
from attacks.amia.compare import main as compare_main

TINY = ["amia-num-shadows=2", "amia-shadow-steps=3", "amia-mlp-epochs=5", "amia-members=40"]


def _cli(run_dir, *sets):
    return main([str(run_dir), *[a for s in (*TINY, *sets) for a in ("--set", s)]])


def test_the_cli_attacks_the_run_and_never_overwrites_an_earlier_result(mini_run, capsys):
    assert _cli(mini_run, "amia-shadows=cnn,searched") == 0
    first = mini_run / "amia"
    assert capsys.readouterr().out.strip().endswith(str(first))
    for name in ("metrics.json", "results.csv", "roc.png", "report.md"):
        assert (first / name).stat().st_size > 0, name
    m = json.loads((first / "metrics.json").read_text())
    combos = {(r["members"], r["shadow"], r["attack"]) for r in m["results"]}
    assert combos == {(mem, s, a) for mem in ("alpha", "theta") for s in ("cnn", "searched")
                      for a in ("mlp", "lira", "loss")}
    for r in m["results"]:
        assert -1 <= r["attack-acc"] <= 1 and 0 <= r["auc"] <= 1 and r["n-members"] == r["n-nonmembers"] == 40
    t = m["target"]
    assert t["kind"] == "supernet" and 0 <= t["test-acc"] <= 1 and t["defenses"]["md"] is False
    assert m["api-queries"] == 3 * 40  # the attacker's queries: D^α, D^θ and non-members, once each
    before = (first / "metrics.json").read_bytes()

    # a second attack: derived network retrained, served through MD, top-3 API, half the attacker's data shifted
    assert _cli(mini_run, "amia-shadows=cnn", "amia-target=derived", "amia-retrain-epochs=2", "md=true",
                "md-epochs=2", "amia-output=top-k", "amia-eta=0.5") == 0
    second = mini_run / "amia-1"
    assert (first / "metrics.json").read_bytes() == before
    m2 = json.loads((second / "metrics.json").read_text())
    assert m2["target"]["kind"] == "derived" and m2["target"]["md"]["kept"] > 0
    assert m2["attacker"]["shifted"] == m2["attacker"]["pool"] - m2["attacker"]["from-target"] > 0
    assert "MD" in (second / "report.md").read_text()

    # the two side by side: deltas against the first
    assert compare_main([str(first), str(second), "--labels", "none,md", "--out", str(mini_run / "cmp")]) == 0
    rows = json.loads((mini_run / "cmp" / "comparison.json").read_text())["rows"]
    base = {(r["members"], r["shadow"], r["attack"]): r for r in rows if r["defense"] == "none"}
    assert all(r["d-attack-acc"] == 0 and r["d-test-acc"] == 0 for r in base.values())
    for r in rows:
        if r["defense"] == "md":
            b = base[(r["members"], r["shadow"], r["attack"])]
            assert r["d-attack-acc"] == pytest.approx(r["attack-acc"] - b["attack-acc"])
            assert r["d-test-acc"] == pytest.approx(m2["target"]["test-acc"] - m["target"]["test-acc"])
    assert "| md | cnn | mlp |" in (mini_run / "cmp" / "report.md").read_text()


def test_a_run_directory_without_a_final_model_is_refused_before_any_work(mini_run, tmp_path, capsys):
    broken = tmp_path / "run"
    shutil.copytree(mini_run, broken, ignore=shutil.ignore_patterns("amia*"))
    (broken / "model.npz").unlink()
    assert _cli(broken) == 2
    err = capsys.readouterr().err
    assert "model.npz" in err and "no final model" in err
    assert not list(broken.glob("amia*"))
    assert _cli(tmp_path / "nowhere") == 2 and "does not exist" in capsys.readouterr().err
    result = amia_after_run(broken)  # the ServerApp's call records the failure instead of raising
    assert result["status"] == "failed" and "model.npz" in result["error"]


@pytest.mark.parametrize("sets, words", [
    (["dag-nodes=5"], ["['dag-nodes']", "only the amia keys and the MD keys"]),
    (["amia-members=100000"], ["'amia-members' = 100000", "D^alpha members"]),
    (["amia-shadows=resnet19"], ["'amia-shadows'", "resnet19"]),
    (["amia-output"], ["expected key=value"]),
])
def test_bad_settings_name_what_is_wrong_and_write_nothing(mini_run, capsys, sets, words):
    existing = sorted(p.name for p in mini_run.glob("amia*"))
    assert _cli(mini_run, *sets) == 2
    err = capsys.readouterr().err
    for w in words:
        assert w in err
    assert sorted(p.name for p in mini_run.glob("amia*")) == existing


def test_a_run_that_kept_theta_on_the_clients_needs_the_derived_target(mini_run, tmp_path, capsys):
    alpha_only = tmp_path / "run"
    shutil.copytree(mini_run, alpha_only, ignore=shutil.ignore_patterns("amia*"))
    with np.load(alpha_only / "model.npz") as f:
        arrays = {k: f[k] for k in f.files if k.startswith("alpha")}
    np.savez(alpha_only / "model.npz", **arrays)
    assert _cli(alpha_only, "amia-shadows=cnn") == 2
    assert "amia-target = derived" in capsys.readouterr().err
