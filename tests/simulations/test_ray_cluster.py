"""A simulation attached to a Ray cluster of two nodes (a head and a worker) on loopback."""

import json
import logging
import sys

import pytest

from fednas.config import ConfigError
from simulations.launcher import PROJECT_ROOT, Federation, LaunchError, launch, prepare
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


class FailingFirst(LocalRayCluster):
    """A cluster whose first ``fail`` ``ray start`` runs for node ``node`` exit with code 1, as
    one does whose port was taken before it could bind it."""

    def __init__(self, node: str, fail: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.node, self.fail, self.commands = node, fail, []

    def _command(self, name, args):
        self.commands.append(name)
        if name == self.node and self.commands.count(name) <= self.fail:
            return [sys.executable, "-c", "import sys; print('Address already in use'); sys.exit(1)"]
        return super()._command(name, args)


def test_a_node_that_never_starts_fails_the_cluster_with_its_log_after_its_tries():
    cluster = FailingFirst("head", fail=2, workers=1, tries=2)
    with pytest.raises(LaunchError) as err, cluster:
        pass
    assert "head node exited with code 1 (try 2 of 2)" in str(err.value)
    assert "Address already in use" in str(err.value)  # the end of its log, which stop() removed
    assert cluster.commands == ["head", "head"] and not cluster.temp_dir.exists()


@pytest.mark.slow
def test_a_simulation_runs_on_a_local_head_and_worker(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="simulations.ray_cluster")
    with FailingFirst("worker-0", fail=1, workers=1, cpus_per_node=1) as cluster:
        # the worker's first ray start failed; its second, with other ports, joined
        assert cluster.commands == ["head", "worker-0", "worker-0"]
        assert "worker-0 node exited with code 1 (try 1 of 3)" in caplog.text and "trying again" in caplog.text
        assert cluster.nodes() == 2
        # one CPU a client on two one-CPU nodes: Flower's actor pool has one actor on each node
        result = launch(None, ["num-server-rounds=2", "dag-nodes=3", "channels=4", "max-samples=300", "local-steps=2",
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
