"""A simulation attached to a Ray cluster of two nodes (a head and a worker) on loopback."""

import json

import pytest

from fednas.config import ConfigError
from simulations.launcher import PROJECT_ROOT, Federation, launch, prepare
from simulations.processes import still_running
from simulations.ray_cluster import LocalRayCluster


def test_attaching_passes_no_resources_ray_refuses():
    own = Federation(clients=4, cpus_per_client=1, gpus_per_client=0.25, ray_cpus=2, ray_gpus=1)
    assert "init-args-num-cpus=2" in own.flower_args() and "init-args-num-gpus=1" in own.flower_args()
    attached = Federation(clients=4, cpus_per_client=1, gpus_per_client=0.25, ray_address="10.0.0.1:6379")
    args = dict(part.split("=") for part in attached.flower_args().split())
    assert args == {"num-supernodes": "4", "client-resources-num-cpus": "1", "client-resources-num-gpus": "0.25"}


def test_cluster_wide_resources_with_an_address_are_refused_before_anything_starts():
    with pytest.raises(ConfigError, match="--ray-address"):
        prepare(PROJECT_ROOT, None, [], {"clients": 2, "ray_address": "127.0.0.1:6379", "ray_cpus": 2})


@pytest.mark.slow
def test_a_simulation_runs_on_a_local_head_and_worker(tmp_path):
    with LocalRayCluster(workers=1, cpus_per_node=1) as cluster:
        assert cluster.nodes() == 2
        # one CPU a client on two one-CPU nodes: Flower's actor pool has one actor on each node
        result = launch(None, ["num-server-rounds=2", "nodes=3", "channels=4", "max-samples=300", "local-steps=2",
                               "fraction-evaluate=0.0", "min-evaluate-clients=0", "eavesdrop=true",
                               "attack-online=false", f"output-dir={tmp_path}", "run-name=ray-cluster"],
                        clients=2, ray_address=cluster.address)
        assert result.returncode == 0, result.status
        # the run's Ray driver attached to this cluster (its logs are in the cluster's session), not a Ray of its own
        assert list(cluster.temp_dir.glob("session_*/logs/python-core-driver-*"))
        assert cluster.nodes() == 2  # the run leaves the cluster up
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["rounds-completed"] == 2
    assert len(list((result.run_dir / "captures").glob("r*-n*.json"))) == 4
    assert len(list((result.run_dir / "truth").glob("r*-p*.json"))) == 4  # a simulation still scores
    assert len(cluster.seen) >= 4 and still_running(cluster.seen) == []
    assert not cluster.temp_dir.exists()
