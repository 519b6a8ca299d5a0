"""The shared-GPU benchmark: without a GPU it stops at once with a clear error, starting nothing."""

import json

import pytest
import torch

from benchmarks.gpu_share import main, on_cuda, workload


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_a_gpu_it_fails_clearly_before_anything_starts(tmp_path, capsys):
    assert main(["--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no CUDA device" in err and "shared GPU" in err
    assert list(tmp_path.iterdir()) == []  # no run was started, nothing written


def test_gpu_runs_ask_for_cuda_and_capture_every_client_round(tmp_path):
    from benchmarks.gpu_share import build_parser

    args = build_parser().parse_args(["--results", str(tmp_path)])
    sets = dict(item.split("=", 1) for item in workload(args, "cuda"))
    assert sets["device"] == "cuda" and sets["eavesdrop"] == "true" and sets["attack-online"] == "false"
    captures = tmp_path / "captures"
    captures.mkdir()
    for i, flag in enumerate([1.0, 1.0, 0.0]):
        (captures / f"r001-n{i}.json").write_text(json.dumps({"metrics": {"on-cuda": flag}}))
    (captures / "sent-r001-abc.npz").write_bytes(b"")  # not a capture
    assert on_cuda(tmp_path) == (2, 3)
