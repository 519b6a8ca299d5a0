"""The truth of a simulation: written by each client, read by the scoring alone."""

import ast
from pathlib import Path

import numpy as np

from fednas.truth import TRUTH_DIR, read_truth, truth_path, write_truth

ROOT = Path(__file__).resolve().parents[2]


def test_a_clients_record_round_trips_by_round_and_partition(tmp_path):
    record = {"alpha-indices": [np.int64(4), 9], "alpha-step-sizes": [2], "partition-id": 3}
    path = write_truth(tmp_path, 2, 3, record)
    assert path == truth_path(tmp_path, 2, 3) == tmp_path / TRUTH_DIR / "r002-p3.json"
    capture = {"id": "r002-n77", "round": 2, "partition-id": 3, "node-id": 77}
    assert read_truth(tmp_path, capture) == {"alpha-indices": [4, 9], "alpha-step-sizes": [2], "partition-id": 3}
    assert read_truth(tmp_path, {**capture, "round": 1}) is None  # another round: nothing written
    assert read_truth(tmp_path, {**capture, "partition-id": 4}) is None


def test_records_stored_under_the_capture_name_by_older_runs_still_score(tmp_path):
    (tmp_path / TRUTH_DIR).mkdir()
    (tmp_path / TRUTH_DIR / "r001-n5.json").write_text('{"alpha-indices": [7]}')
    assert read_truth(tmp_path, {"id": "r001-n5", "round": 1, "partition-id": None}) == {"alpha-indices": [7]}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_only_the_client_and_the_scoring_touch_the_truth():
    users = {str(p.relative_to(ROOT)) for pkg in ("attacks", "server", "clients", "simulations")
             for p in (ROOT / pkg).rglob("*.py") if "fednas.truth" in _imports(p)}
    assert users == {"attacks/report.py", "attacks/foreign.py", "clients/client_app.py"}
