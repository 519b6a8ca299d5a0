"""benchmarks.inverse_fit: the inverse's own fit against the size of its training set."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks.inverse_fit import main


def _pairs_file(path, n=600, k=2, side=4, classes=3):
    """Pairs whose features are a fixed linear map of the images (an invertible kind of update)."""
    g = torch.Generator().manual_seed(0)
    protos = torch.rand(classes, side * side, generator=g)
    y = torch.randint(classes, (n, k, 1), generator=g)
    x = (protos[y] + 0.6 * torch.rand(n, k, 1, side * side, generator=g)).clamp(0, 1)
    mix = torch.randn(k * side * side, 40, generator=g)
    f = x.flatten(1) @ mix
    torch.save({"features": f, "images": x.view(n, k, 1, 1, side, side), "labels": y, "seconds": 0.0}, path)
    return path


def test_fit_curve_reads_a_pairs_file_and_beats_the_class_mean_on_a_learnable_map(tmp_path, capsys):
    pairs = _pairs_file(tmp_path / "pairs-x.pt")
    assert main([str(pairs), "--sizes", "64,512", "--epochs", "60", "--hidden", "128", "--classes", "3",
                 "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "  64 pairs:" in out and " 512 pairs:" in out
    (written,) = tmp_path.glob("inverse-fit-*.json")
    d = json.loads(written.read_text())
    assert [r["pairs"] for r in d["rows"]] == [64, 512] and d["test-pairs"] == 60 and d["steps"] == 2
    big = d["rows"][1]
    assert len(big["label-acc"]) == len(big["psnr"]) == 2
    assert min(big["psnr"]) > d["null-class-mean"]["psnr"]  # a learnable map: the inverse beats the class
    assert min(big["label-acc"]) > 0.9


def test_fit_curve_refuses_a_file_that_is_not_pairs_and_sizes_it_cannot_hold(tmp_path, capsys):
    other = tmp_path / "inverse-x.pt"
    torch.save({"state": {}}, other)
    with pytest.raises(SystemExit, match="inverse-x.pt is not a pairs file"):
        main([str(other), "--results", str(tmp_path)])
    pairs = _pairs_file(tmp_path / "pairs-x.pt")
    with pytest.raises(SystemExit, match="--sizes up to 4096"):
        main([str(pairs), "--results", str(tmp_path)])
    for bad, why in (("a,b", "expected comma-separated integers, got 'a,b'"), ("8", "at least 16 pairs, got 8")):
        with pytest.raises(SystemExit):
            main([str(pairs), "--sizes", bad, "--results", str(tmp_path)])
        assert why in capsys.readouterr().err
    assert not list(tmp_path.glob("inverse-fit-*.json"))  # nothing written for a refused run
