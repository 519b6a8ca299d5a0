import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from attacks.captures import CaptureStore, capture_id, split_arrays
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
    assert read_truth(tmp_path, store.meta(cid)) == {"alpha-indices": [1]}
    path.write_text("not json")  # the loader never opens it
    assert store.load(cid).status == "ok"
    assert not hasattr(store, "truth")  # the store an attack's runner loads captures from has no way to it


def test_a_damaged_array_file_loads_as_a_failed_capture(tmp_path):
    store = CaptureStore(tmp_path)
    cid, _ = _write(store)
    (tmp_path / "captures" / f"{cid}.npz").write_bytes(b"garbage")
    cap = store.load(cid)
    assert cap.status == "failed" and "cannot read" in cap.reason


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
    code = ("import sys; from attacks.captures import CaptureStore; "
            f"c = CaptureStore({str(tmp_path)!r}).load({cid!r}); assert c.status == 'ok'; "
            "assert not any(m == 'flwr' or m.startswith('flwr.') for m in sys.modules), 'flwr imported'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    meta = json.loads((tmp_path / "captures" / f"{cid}.json").read_text())
    assert meta["sent"].startswith("sent-r001-")
