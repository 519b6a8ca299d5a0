"""The plugin on someone else's app, end to end: ``flwr run`` the example, attack offline, report."""

import json
import re
import subprocess
from pathlib import Path

import pytest

from attacks.adra.__main__ import main as adra_main
from fednas.captures import CaptureStore
from simulations.launcher import SuperLink, run_status
from tests.examples.conftest import EXAMPLE
from tests.scales import TINY_INVERSE, as_cli


def flwr_run(link: SuperLink, run_config: str, clients: int = 2) -> str:
    """``flwr run`` the example app on ``link``; its final status as the SuperLink reports it."""
    out = subprocess.run(["flwr", "run", str(EXAMPLE), "--stream", "--run-config", run_config,
                          "--federation-config", f"num-supernodes={clients} client-resources-num-cpus=1"],
                         env=link.env, cwd=EXAMPLE, capture_output=True, text=True, timeout=600)
    ids = re.findall(r"Successfully started run (\d+)", out.stdout)
    assert ids, out.stdout[-2000:] + out.stderr[-2000:]
    return run_status(link.env, int(ids[0]), EXAMPLE)


@pytest.mark.slow
def test_the_example_app_is_captured_under_flwr_run_and_attacked_offline(tmp_path):
    link = SuperLink(tmp_path)  # FLWR_HOME in tmp_path: nothing of Flower's lands in the example
    out = tmp_path / "run"
    try:  # the app's own Strategy subclass of Flower's robust FedMedian
        status = flwr_run(link, f'strategy="custom" run-dir="{out}"')
    finally:
        link.stop()
    assert status.endswith("completed"), status
    store = CaptureStore(out)
    assert len(store.ids()) == 4  # 2 rounds x 2 clients
    manifest = store.manifest()
    assert manifest.model == "tinynas.model:build" and manifest.arrays["alpha"] == {"arch.edges": [3, 4]}
    meta = store.meta(store.ids()[0])
    assert meta["client-settings"] == {"alpha-optimizer": "sgd", "alpha-lr": 0.5, "alpha-batch-size": 1,
                                       "local-steps": 1}
    assert meta["client-settings-source"]["alpha-lr"] == "train-config:lr-arch"
    # offline, on the app's own network (named by the manifest), scored with the app's data
    code = adra_main([str(out), "--data", "tinynas.data:load_all", "--aux", "tinynas.data:public_pool",
                      "--workers", "0", "--rounds", "1", "--set", "adra-iterations=20", "--set", "adra-restarts=1",
                      *as_cli(TINY_INVERSE)])
    assert code == 0
    report = json.loads((out / "leakage" / "summary.json").read_text())
    assert report["captures"] == 2 and report["samples"] == 2 and report["failed"] == 0
    assert 0.0 <= report["success-rate"] <= 1.0 and report["mean-psnr"] > 0
    assert (out / "leakage" / "report.md").is_file() and (out / "leakage" / "clients.csv").is_file()
