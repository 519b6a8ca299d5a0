"""The truth of a simulation: written by each client, read by the scoring alone."""

import ast
import json
from pathlib import Path

import numpy as np
import pytest

from fednas.schema import SCHEMA_VERSION, SchemaError
from fednas.truth import TRUTH_DIR, TruthRecord, read_truth, truth_path, write_truth

ROOT = Path(__file__).resolve().parents[2]


def test_a_clients_record_round_trips_by_round_and_partition(tmp_path):
    record = {"alpha-indices": [np.int64(4), 9], "alpha-batch-sizes": [2], "partition-id": 3}
    path = write_truth(tmp_path, 2, 3, record)
    assert path == truth_path(tmp_path, 2, 3) == tmp_path / TRUTH_DIR / "r002-p3.json"
    assert json.loads(path.read_text()) == {"schema-version": SCHEMA_VERSION, "alpha-indices": [4, 9],
                                            "alpha-batch-sizes": [2], "partition-id": 3}
    capture = {"id": "r002-n77", "round": 2, "partition-id": 3, "node-id": 77}
    truth = read_truth(tmp_path, capture)
    assert truth == TruthRecord((4, 9), (2,), None, {"partition-id": 3})
    assert truth.samples() == [(0, 0, 4), (0, 1, 9)]
    assert read_truth(tmp_path, {**capture, "round": 1}) is None  # another round: nothing written
    assert read_truth(tmp_path, {**capture, "partition-id": 4}) is None


def test_records_stored_under_the_capture_name_by_older_runs_still_score(tmp_path):
    (tmp_path / TRUTH_DIR).mkdir()
    (tmp_path / TRUTH_DIR / "r001-n5.json").write_text('{"alpha-indices": [7]}')  # no version, no sizes
    assert read_truth(tmp_path, {"id": "r001-n5", "round": 1, "partition-id": None}).samples() == [(0, 0, 7)]


def test_the_older_name_of_the_batch_sizes_is_still_read(tmp_path):
    old = TruthRecord.from_json({"alpha-indices": [5, 6, 7], "alpha-step-sizes": [2, 1]})
    assert old.alpha_batch_sizes == (2, 1) and old.samples() == [(0, 0, 5), (0, 1, 6), (1, 0, 7)]
    assert "alpha-step-sizes" not in old.to_json() and old.to_json()["alpha-batch-sizes"] == [2, 1]


def test_one_list_per_alpha_step_reads_as_those_steps():
    nested = TruthRecord.from_json({"alpha-indices": [[166], [3, 4]], "alpha-step-sizes": [1, 2]})
    assert nested == TruthRecord.from_json({"alpha-indices": [166, 3, 4], "alpha-batch-sizes": [1, 2]})
    assert TruthRecord.from_json({"alpha-indices": [[166]]}).samples() == [(0, 0, 166)]
    batches = TruthRecord.of_batches([np.array([8, 2]), [5]], pool=range(10))
    assert batches.samples() == [(0, 0, 8), (0, 1, 2), (1, 0, 5)] and batches.alpha_pool == tuple(range(10))


@pytest.mark.parametrize("record, field, words", [
    ({"alpha-batch-sizes": [1]}, "alpha-indices", "missing"),
    ({"alpha-indices": "166"}, "alpha-indices", "a list"),
    ({"alpha-indices": [1, [2]]}, "alpha-indices", "mixes"),
    ({"alpha-indices": [1, -2]}, "alpha-indices", "non-negative"),
    ({"alpha-indices": [1, True]}, "alpha-indices", "non-negative integers"),
    ({"alpha-indices": [1, 2], "alpha-batch-sizes": [1]}, "alpha-batch-sizes", "sum to 1"),
    ({"alpha-indices": [1, 2], "alpha-step-sizes": [3]}, "alpha-step-sizes", "sum to 3"),
    ({"alpha-indices": [[1], [2]], "alpha-batch-sizes": [2]}, "alpha-batch-sizes", "per-step lists"),
    ({"alpha-indices": [1], "alpha-pool": [0.5]}, "alpha-pool", "non-negative integers"),
    ({"alpha-indices": [1], "schema-version": 99}, "schema-version", "newer"),
])
def test_a_record_that_breaks_the_schema_names_the_file_and_the_field(tmp_path, record, field, words):
    (tmp_path / TRUTH_DIR).mkdir()
    path = tmp_path / TRUTH_DIR / "r001-p0.json"
    path.write_text(json.dumps(record))
    with pytest.raises(SchemaError) as err:
        read_truth(tmp_path, {"round": 1, "partition-id": 0})
    assert err.value.path == str(path) and err.value.field == field and words in str(err.value)
    assert str(path) in str(err.value) and repr(field) in str(err.value)
    with pytest.raises(SchemaError):  # nor can a client write it
        write_truth(tmp_path, 1, 0, record)


def test_a_truncated_record_names_its_file(tmp_path):
    path = write_truth(tmp_path, 1, 0, {"alpha-indices": [1, 2, 3]})
    path.write_text(path.read_text()[:12])
    with pytest.raises(SchemaError, match=f"{path}: truncated"):
        read_truth(tmp_path, {"round": 1, "partition-id": 0})


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
    assert users == {"attacks/report.py", "attacks/foreign.py", "clients/client_app.py", "clients/plugin.py"}
