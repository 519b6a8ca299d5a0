import json
import subprocess
import sys
from pathlib import Path

import numpy as np

import pytest

from fednas.captures import CaptureStore, Manifest, capture_id, split_arrays
from fednas.schema import SCHEMA_VERSION, SchemaError
from fednas.truth import read_truth, write_truth

ROOT = Path(__file__).resolve().parents[2]


def _write(store, rnd=1, node=7, alpha_t2=None):
    alpha = {"alpha": np.arange(6, dtype=np.float32).reshape(3, 2)}
    theta = {"stem.0.weight": np.ones((2, 1, 3, 3), np.float32)}
    sent = store.write_sent(rnd, alpha, theta)
    t2 = alpha_t2 if alpha_t2 is not None else {"alpha": alpha["alpha"] + 0.5}
    cid = store.write(server_round=rnd, node_id=node, sent=sent, alpha_t2=t2, partition_id=3,
                      train_config={"alpha-lr": 0.1, "server-round": rnd}, metrics={"dp-epsilon": 2.5})
    return cid, sent


def test_round_trip_and_delta(tmp_path):
    store = CaptureStore(tmp_path)
    cid, _ = _write(store)
    cap = store.load(cid)
    assert cap.id == capture_id(1, 7) == cid and cap.round == 1 and cap.node_id == 7 and cap.partition_id == 3
    assert cap.status == "ok"
    np.testing.assert_array_equal(cap.delta_alpha["alpha"], np.full((3, 2), 0.5))
    assert set(cap.theta_t1) == {"stem.0.weight"}
    assert cap.train_config["alpha-lr"] == 0.1 and cap.metrics["dp-epsilon"] == 2.5
    assert store.ids() == [cid]


def test_what_the_server_sent_is_stored_once_per_content(tmp_path):
    store = CaptureStore(tmp_path)
    _, a = _write(store, node=1)
    _, b = _write(store, node=2)
    assert a == b
    assert len(list((tmp_path / "captures").glob("sent-*.npz"))) == 1
    assert [p.name for p in (tmp_path / "captures").iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_truth_is_kept_apart_from_what_the_attacker_loads(tmp_path):
    store = CaptureStore(tmp_path)
    cid, _ = _write(store)
    path = write_truth(tmp_path, 1, 3, {"alpha-indices": [1]})  # what the capture's client (partition 3) wrote
    assert read_truth(tmp_path, store.meta(cid)).alpha_indices == (1,)
    path.write_text("not json")  # the loader never opens it
    assert store.load(cid).status == "ok"
    assert not hasattr(store, "truth")  # the store an attack's runner loads captures from has no way to it


def test_a_damaged_array_file_loads_as_a_failed_capture(tmp_path):
    store = CaptureStore(tmp_path)
    cid, _ = _write(store)
    path = tmp_path / "captures" / f"{cid}.npz"
    for damaged in (b"garbage", path.read_bytes()[:40]):  # not a zip; a truncated one
        path.write_bytes(damaged)
        cap = store.load(cid)
        assert cap.status == "failed" and "cannot read" in cap.reason and str(path) in cap.reason


def test_ids_sort_by_round_then_node(tmp_path):
    store = CaptureStore(tmp_path)
    for rnd, node in ((10, 2), (2, 11), (2, 3)):
        _write(store, rnd=rnd, node=node)
    assert store.ids() == ["r002-n3", "r002-n11", "r010-n2"]


def test_split_arrays_by_pattern():
    arrays = {"alpha_normal": 1, "alpha_reduce": 2, "stem.alpha_like": 3, "head.w": 4}
    alpha, theta = split_arrays(arrays, "^alpha")
    assert set(alpha) == {"alpha_normal", "alpha_reduce"} and set(theta) == {"stem.alpha_like", "head.w"}


def test_the_store_loads_without_flower(tmp_path):
    store = CaptureStore(tmp_path)
    cid, _ = _write(store)
    code = ("import sys; from fednas.captures import CaptureStore; "
            f"c = CaptureStore({str(tmp_path)!r}).load({cid!r}); assert c.status == 'ok'; "
            "assert not any(m == 'flwr' or m.startswith('flwr.') for m in sys.modules), 'flwr imported'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    meta = json.loads((tmp_path / "captures" / f"{cid}.json").read_text())
    assert meta["sent"].startswith("sent-r001-")


def test_new_files_carry_the_schema_version_and_older_ones_still_read(tmp_path):
    store = CaptureStore(tmp_path)
    cid, _ = _write(store)
    store.write_manifest(Manifest(model="app.model:build", alpha_pattern=r"^arch\.", input_shape=(1, 8, 8)))
    for path in (store.path(cid), store.dir / "manifest.json"):
        data = json.loads(path.read_text())
        assert data["schema-version"] == SCHEMA_VERSION
        del data["schema-version"]  # as an older run wrote it
        path.write_text(json.dumps(data))
    assert store.load(cid).status == "ok" and store.manifest().input_shape == (1, 8, 8)


@pytest.mark.parametrize("field, value, words", [
    ("round", "one", "an integer"), ("node-id", None, "missing"), ("partition-id", "3", "an integer"),
    ("status", "fine", "one of ok, failed, rejected"), ("train-config", [1], "an object"),
    ("schema-version", SCHEMA_VERSION + 1, "newer"),
])
def test_a_capture_that_breaks_the_schema_names_its_file_and_field(tmp_path, field, value, words):
    store = CaptureStore(tmp_path)
    cid, _ = _write(store)
    data = json.loads(store.path(cid).read_text())
    if value is None:
        del data[field]
    else:
        data[field] = value
    store.path(cid).write_text(json.dumps(data))
    with pytest.raises(SchemaError) as err:
        store.meta(cid)
    assert err.value.path == str(store.path(cid)) and err.value.field == field and words in str(err.value)
    assert store.problem(cid).startswith("bad capture file: " + str(store.path(cid)))


def test_a_truncated_capture_or_manifest_names_its_file(tmp_path):
    store = CaptureStore(tmp_path)
    cid, _ = _write(store)
    store.write_manifest(Manifest())
    for path, read in ((store.path(cid), lambda: store.meta(cid)), (store.dir / "manifest.json", store.manifest)):
        path.write_text(path.read_text()[:25])
        with pytest.raises(SchemaError, match=f"^{path}: truncated or not JSON"):
            read()


@pytest.mark.parametrize("field, value, words", [
    ("alpha-pattern", "([", "not a regular expression"), ("input-shape", [1, 8], "three positive integers"),
    ("num-classes", 0, ">= 1"), ("client-settings", {"alpha-momentum": 0.9}, "unknown settings"),
    ("model", "app.model", "package.module:factory"), ("wire-keys", {"alpha-lr": 3}, "a string"),
])
def test_a_manifest_that_breaks_the_schema_names_the_field(tmp_path, field, value, words):
    data = {**Manifest().to_json(), field: value}
    with pytest.raises(SchemaError) as err:
        Manifest.from_json(data, tmp_path / "manifest.json")
    assert err.value.field == field and words in str(err.value) and str(tmp_path / "manifest.json") in str(err.value)
