"""``fednas.rundir.portable_paths``: published text names no folder of the machine that made it."""

from __future__ import annotations

from fednas.rundir import portable_paths


def test_paths_inside_the_root_become_relative_and_others_keep_their_last_parts(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    text = f"wrote {root}/docs/results/a.json and /var/tmp/out/runs/x.json"
    assert portable_paths(text, root) == "wrote docs/results/a.json and …/runs/x.json"


def test_a_glob_pattern_stays_whole_relative_or_absolute(tmp_path):
    text = "--cells 'targets/amia/*/P32/*' 'amia/*/P3[24]/?' --out /srv/tables-out/runs/*/x"
    assert portable_paths(text, tmp_path) == "--cells 'targets/amia/*/P32/*' 'amia/*/P3[24]/?' --out …/*/x"


def test_urls_relative_paths_and_words_are_left_alone(tmp_path):
    text = "see https://example.org/a/b, docs/adra.md, and/or 3/4 of it"
    assert portable_paths(text, tmp_path) == text
