"""A Ray cluster of several nodes on this machine: the multi-machine recipe, tested on loopback.

On many machines (docs/deploy.md)::

    ray start --head --port 6379 --num-cpus 8            # on the head machine
    ray start --address HEAD:6379 --num-cpus 8           # on every other machine
    python -m simulations run EXPERIMENT.toml --ray-address HEAD:6379   # on the head

:class:`LocalRayCluster` starts the same ``ray start`` commands here, a head and
``workers`` worker nodes on 127.0.0.1, each ``--block``ed in a process session of its
own, with a temporary directory and ports of their own, so that it neither joins nor
disturbs any other Ray instance on the machine (a plain ``ray.init()`` only finds the
latest cluster under the default ``/tmp/ray``). It stops them by the ids it holds, never
with ``ray stop``, which stops every Ray process of the machine.

``python -m simulations.ray_cluster --workers 1`` starts one and waits (Ctrl-C stops it).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from simulations.launcher import LaunchError
from simulations.ports import free_port
from simulations.processes import TAG_ENV, Launched, session_members, terminate

log = logging.getLogger(__name__)

WORKER_PORTS = 16  # ports each node's Ray workers may take (one each)


def _ray() -> str:
    return str(Path(sys.executable).parent / "ray")


def node_ports() -> list[str]:
    """``ray start`` arguments giving a node free ports of its own for every service."""
    args = []
    for flag in ("--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
                 "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port"):
        args += [flag, str(free_port())]
    return args + ["--worker-port-list", ",".join(str(free_port()) for _ in range(WORKER_PORTS))]


class LocalRayCluster(Launched):
    """A Ray head and ``workers`` worker nodes on 127.0.0.1 (a context manager).

    Parameters
    ----------
    workers : int
        Worker nodes beside the head.
    cpus_per_node, gpus_per_node : int
        What each node offers (``ray start --num-cpus/--num-gpus``).
    object_store_mb : int
        Each node's object store (Ray's default, 30% of the memory, is far too much here).
    timeout : float
        Seconds to wait for each node to join.
    tries : int
        ``ray start`` runs per node before giving up (see :meth:`_start_node`).
    """

    def __init__(self, workers: int = 1, cpus_per_node: int = 1, gpus_per_node: int = 0,
                 object_store_mb: int = 100, timeout: float = 120.0, tries: int = 3) -> None:
        super().__init__()
        if tries < 1:
            raise ValueError(f"tries must be at least 1, not {tries}")
        self.workers, self.cpus, self.gpus = workers, cpus_per_node, gpus_per_node
        self.object_store_mb, self.timeout = object_store_mb, timeout
        self.tries = tries
        self.port, self.address = 0, "127.0.0.1:?"  # the head's, known once it is started
        self.what = "Ray cluster"
        # short: Ray's unix sockets live under it and their paths are limited to 107 bytes
        self.temp_dir = Path(tempfile.mkdtemp(prefix="fednas-ray-", dir="/tmp"))
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", TAG_ENV: self.tag,
                    "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}

    def _command(self, name: str, args: list[str]) -> list[str]:
        return [_ray(), "start", "--block", "--node-ip-address", "127.0.0.1", "--num-cpus", str(self.cpus),
                "--num-gpus", str(self.gpus), "--object-store-memory", str(self.object_store_mb * 2**20),
                "--disable-usage-stats", *args, *node_ports()]

    def _node(self, name: str, args: list[str]) -> subprocess.Popen:
        with open(self.log_file(name), "ab") as out:
            proc = subprocess.Popen(self._command(name, args), env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(proc)
        return proc

    def log_file(self, name: str) -> Path:
        """Where node ``name``'s ``ray start`` writes (every try appends)."""
        return self.temp_dir / f"{name}.log"

    def _head_args(self) -> list[str]:
        self.port = free_port()  # a new one each try: the last may be what failed
        self.address = f"127.0.0.1:{self.port}"
        self.what = f"Ray cluster {self.address}"
        return ["--head", "--port", str(self.port), "--ray-client-server-port", str(free_port()),
                "--include-dashboard", "false", "--dashboard-port", str(free_port()), "--temp-dir", str(self.temp_dir)]

    def start(self) -> LocalRayCluster:
        t0 = time.monotonic()
        self._start_node("head", self._head_args, 1)
        for i in range(self.workers):
            self._start_node(f"worker-{i}", lambda: ["--address", self.address], 2 + i)
        log.info("Ray cluster at %s: %d nodes up in %.1f s (logs in %s)", self.address, 1 + self.workers,
                 time.monotonic() - t0, self.temp_dir)
        return self

    def _start_node(self, name: str, args: Callable[[], list[str]], n: int) -> None:
        """Start node ``name`` until ``n`` nodes are up. A ``ray start`` that exits before its node
        joins (a port taken between picking and binding, a raylet too slow under load) is
        tried again with fresh ports, ``tries`` times in all, after its leftovers are stopped."""
        for attempt in range(1, self.tries + 1):
            proc = self._node(name, args())
            code = self._wait_nodes(n, proc)
            if code is None:
                return
            self.procs.remove(proc)  # reaped; what it left in its session is stopped here
            terminate(session_members(proc.pid, self.tag), self.grace)
            why = (f"Ray cluster: ray start for the {name} node exited with code {code} (try {attempt} of "
                   f"{self.tries}); the end of its log:\n{log_tail(self.log_file(name))}")
            if attempt == self.tries:
                raise LaunchError(why)
            log.warning("%s\ntrying again with other ports", why)

    def _gcs_listening(self) -> bool:
        """Whether the head's GCS takes connections (`ray status` waits ~40 s for one that does not)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                return True
        except OSError:
            return False

    def status(self) -> str:
        """``ray status`` of this cluster (its text)."""
        out = subprocess.run([_ray(), "status", "--address", self.address], check=False, env=self.env,
                             capture_output=True, text=True, timeout=60)
        return out.stdout

    def nodes(self) -> int:
        """Active nodes, as ``ray status`` lists them."""
        text = self.status()
        active = text.split("Active:", 1)[1].split("Pending:", 1)[0] if "Active:" in text else ""
        return len(re.findall(r"\bnode_[0-9a-f]+", active))

    def _wait_nodes(self, n: int, proc: subprocess.Popen) -> int | None:
        """Wait for ``n`` nodes; None once they are up, or ``proc``'s exit code if it exits first."""
        deadline = time.monotonic() + self.timeout
        while True:
            self.note_processes()
            if proc.poll() is not None:
                return proc.returncode
            dead = [p for p in self.procs if p is not proc and p.poll() is not None]
            if dead or time.monotonic() > deadline:
                why = f"a node's ray start exited with code {dead[0].returncode}" if dead else f"timed out ({self.timeout:.0f} s)"
                raise LaunchError(f"Ray cluster at {self.address}: {why} waiting for {n} node(s); logs in {self.temp_dir}")
            if self._gcs_listening() and self.nodes() >= n:
                return None
            time.sleep(1.0)

    def stop(self) -> None:
        """Stop every node and what it started (by the ids held); remove the temporary directory."""
        super().stop()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def log_tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log ("(empty)" if there is none)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulations.ray_cluster", description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1, help="worker nodes beside the head (default 1)")
    parser.add_argument("--cpus-per-node", type=int, default=1)
    parser.add_argument("--gpus-per-node", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with LocalRayCluster(args.workers, args.cpus_per_node, args.gpus_per_node) as cluster:
        print(f"Ray cluster up; run on it with: python -m simulations run ... --ray-address {cluster.address}")
        print("Ctrl-C stops it.", flush=True)
        signals = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, signals)  # taken by sigwait below, so the cluster is stopped
        signal.sigwait(signals)
    return 0


if __name__ == "__main__":
    sys.exit(main())
