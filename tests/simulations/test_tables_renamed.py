"""A tables result recorded under a renamed config key still counts as current."""

import json

from simulations.tables.plan import Task
from simulations.tables.runner import current, result_path


def test_a_tables_result_computed_before_the_rename_is_still_current(tmp_path):
    task = Task("targets/x", "target", {"config": {"dag-nodes": 4, "seed": 0}, "clients": 2})
    path = result_path(tmp_path, task.key)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"status": "ok", "spec": {"config": {"nodes": 4, "seed": 0}, "clients": 2}}))
    assert current(tmp_path, task)["status"] == "ok"
    path.write_text(json.dumps({"status": "ok", "spec": {"config": {"nodes": 5, "seed": 0}, "clients": 2}}))
    assert current(tmp_path, task) is None  # other settings: stale
