"""Flower's Deployment Engine on this machine: a SuperLink and one SuperNode per client on loopback.

``python -m simulations run --deployment`` runs the same app, experiment files and
``--set`` keys as a simulation, but through the processes a real deployment uses: one
``flower-superlink`` (Fleet, Control and Runtime APIs on one free port), N
``flower-supernode``s (each with its ``partition-id`` in ``--node-config`` and a Runtime
API port of its own), and ``flwr run . <connection>`` against a connection written to a
project-local ``FLWR_HOME`` (``.flwr/deployments/<port>/cli/config.toml``). Every Flower
process gets a ``FLWR_HOME`` of its own there (installed app bundles, state, logs), so
several deployments and simulations can run at once. The SuperLink keeps its state in memory
(``--database :flwr-in-memory:``): on disk it is SQLite, whose lock times out after 5 s on a
busy machine and fails the run (HTTP 500, "database is locked"). The launcher waits for the run's
real final status (``flwr ls <connection> --format json``), then stops every process it
started and their children, and only those (:mod:`simulations.processes`). SIGINT and
SIGTERM stop it as they stop a simulation run (:func:`simulations.launcher.launch`):
``flwr stop`` on the run, every process stopped, ``summary.json`` marked ``interrupted``,
:class:`~simulations.launcher.RunInterrupted` raised.

What crosses machines in a real deployment crosses loopback here, and nothing else: in
particular the clients write no truth (``write-truth = false``), so the run's leakage
report is unscored (the attack still runs). On many machines, start the same commands by
hand (docs/deploy.md); this module is the tested local form of that recipe.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fednas.config import ConfigError
from simulations.launcher import (IN_MEMORY_STATE, PROJECT_ROOT, Federation, LaunchError, LaunchResult, RunOutput,
                                  _healthy, finish_run_dir, flower_env, interrupted, prepare, reserve_run_dir,
                                  run_status, stop_flower_run)
from simulations.ports import free_port
from simulations.processes import Interrupted, Launched, StopSignals, stop_run_processes

log = logging.getLogger(__name__)

CONNECTION = "fednas-deployment"
STATUS_EVERY = 20.0  # s between ``flwr ls`` calls while the run is not known to have ended


def server_done(run_dir: Path) -> bool:
    """Whether the run's ``summary.json`` says its ServerApp has finished (any status but running)."""
    try:
        return json.loads((run_dir / "summary.json").read_text()).get("status") not in (None, "running")
    except (OSError, ValueError):  # not written yet, or being replaced
        return False


RAY_ONLY = ("cpus_per_client", "gpus_per_client", "ray_cpus", "ray_gpus", "ray_address")


@dataclass
class Started:
    """One process this deployment started, with its log file."""

    name: str
    proc: subprocess.Popen
    log: Path
    essential: bool = True  # the deployment fails when it exits


def connection_toml(name: str, address: str, root_certificates: Path | None = None) -> str:
    """A ``[superlink.<name>]`` connection of ``$FLWR_HOME/config.toml``: TLS verified against
    ``root_certificates``, or without TLS (``insecure``) when none is given."""
    trust = f'root-certificates = "{root_certificates}"' if root_certificates else "insecure = true"
    return f'[superlink]\ndefault = "{name}"\n\n[superlink.{name}]\naddress = "{address}"\n{trust}\n'


@dataclass(frozen=True)
class Security:
    """TLS on every connection and CLI-managed SuperNode authentication, with Flower's own flags.

    ``ca_cert`` signed ``server_cert`` (whose names must cover the SuperLink's address);
    ``node_keys`` are the SuperNodes' private EC keys (OpenSSH or PEM, public key beside
    each as ``<key>.pub``), one per SuperNode, each registered with ``flwr supernode
    register`` before its SuperNode starts. Without node keys: TLS only.
    """

    ca_cert: Path
    server_cert: Path
    server_key: Path
    node_keys: tuple[Path, ...] = ()

    def superlink_args(self) -> list[str]:
        args = ["--ssl-ca-certfile", str(self.ca_cert), "--ssl-certfile", str(self.server_cert),
                "--ssl-keyfile", str(self.server_key)]
        return args + (["--enable-supernode-auth"] if self.node_keys else [])

    def supernode_args(self, index: int) -> list[str]:
        args = ["--root-certificates", str(self.ca_cert)]
        return args + (["--auth-supernode-private-key", str(self.node_keys[index])] if self.node_keys else [])


def _health(port: int, security: Security | None) -> bool:
    if security is None:
        return _healthy(port)
    import ssl
    import urllib.request

    try:
        context = ssl.create_default_context(cafile=str(security.ca_cert))
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/health", timeout=0.5, context=context) as r:
            return 200 <= r.status < 300
    except OSError:
        return False


class LocalDeployment(Launched):
    """A SuperLink and ``clients`` SuperNodes on 127.0.0.1, in process sessions of their own.

    Use as a context manager: the processes start on entry (the SuperLink healthy, every
    SuperNode online) and are stopped on exit, whatever happened.
    """

    connection = CONNECTION  # of the flwr CLI's FLWR_HOME (cli_env)

    def __init__(self, project: Path, clients: int, timeout: float = 120.0, security: Security | None = None) -> None:
        super().__init__()
        self.project, self.clients, self.timeout, self.security = project, clients, timeout, security
        if security is not None and security.node_keys and len(security.node_keys) != clients:
            raise ValueError(f"{len(security.node_keys)} node keys for {clients} SuperNodes: one key each")
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.dir = project / ".flwr" / "deployments" / str(self.port)
        self.started: list[Started] = []
        self.what = f"deployment {self.address}"
        self.env = flower_env(project, tag=self.tag)
        self.env.setdefault("OMP_NUM_THREADS", "1")  # N clients share this machine's cores
        self.cli_env = {**self.env, "FLWR_HOME": str(self.dir / "cli")}
        self.startup_seconds = 0.0
        self.output: RunOutput | None = None  # of the latest run

    @property
    def run_id(self) -> int | None:
        """The id of the latest run, once ``flwr run`` has announced it."""
        return self.output.run_id if self.output is not None else None

    def healthy(self) -> bool:
        """Whether the SuperLink is up."""
        link = next((s.proc for s in self.started if s.name == "superlink"), None)
        return link is not None and link.poll() is None and _health(self.port, self.security)

    # ------------------------------------------------------------------ processes
    def _start(self, name: str, cmd: list[str], essential: bool = True) -> Started:
        home = self.dir / name
        home.mkdir(parents=True, exist_ok=True)
        logfile = home / f"{name}.log"
        with open(logfile, "ab") as out:  # the child keeps its own descriptor
            proc = subprocess.Popen(cmd, env={**self.env, "FLWR_HOME": str(home)}, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True, cwd=home)
        started = Started(name, proc, logfile, essential)
        self.started.append(started)
        self.procs.append(proc)
        return started

    def _check_alive(self) -> None:
        self.note_processes()
        for s in self.started:
            if s.essential and s.proc.poll() is not None:
                raise LaunchError(f"{s.name} exited with code {s.proc.returncode}; see {s.log}")

    def start(self) -> LocalDeployment:
        t0 = time.monotonic()
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "cli").mkdir(exist_ok=True)
        sec = self.security
        (self.dir / "cli" / "config.toml").write_text(connection_toml(CONNECTION, self.address,
                                                                      sec.ca_cert if sec else None))
        self._start("superlink", ["flower-superlink", *(sec.superlink_args() if sec else ["--insecure"]),
                                  "--host", "127.0.0.1", "--port", str(self.port),
                                  "--database", IN_MEMORY_STATE,  # no SQLite lock to time out under load
                                  "--disable-runtime-dependency-installation"])
        self._wait("the SuperLink to become healthy", lambda: _health(self.port, sec))
        for key in sec.node_keys if sec else ():
            self.register(Path(f"{key}.pub"))
        for pid in range(self.clients):
            self.start_supernode(pid, sec.supernode_args(pid) if sec else ["--insecure"])
        self._wait(f"{self.clients} SuperNodes to come online", lambda: self.online_nodes() >= self.clients)
        self.startup_seconds = time.monotonic() - t0
        log.info("deployment: SuperLink %s and %d SuperNodes up in %.1f s (logs in %s)", self.address,
                 self.clients, self.startup_seconds, self.dir)
        return self

    def start_supernode(self, pid: int, security_args: list[str], name: str | None = None,
                        max_retries: int | None = None) -> Started:
        """One SuperNode for partition ``pid`` (its Runtime API on a free port). One given a
        ``name`` is an extra: the deployment goes on when it exits."""
        retries = ["--max-retries", str(max_retries)] if max_retries is not None else []
        return self._start(name or f"supernode-{pid}", [
            "flower-supernode", *security_args, "--superlink", self.address, "--port", str(free_port()), *retries,
            "--node-config", f"partition-id={pid} num-partitions={self.clients}"], essential=name is None)

    def register(self, public_key: Path) -> None:
        """``flwr supernode register``: only registered keys may connect (``--enable-supernode-auth``)."""
        out = self.flwr("supernode", "register", str(public_key), CONNECTION)
        if out.returncode != 0:
            raise LaunchError(f"flwr supernode register {public_key} failed: {out.stdout[-500:]} {out.stderr[-500:]}")

    def _wait(self, what: str, ready) -> None:
        deadline = time.monotonic() + self.timeout
        while not ready():
            self._check_alive()
            if time.monotonic() > deadline:
                raise LaunchError(f"timed out after {self.timeout:.0f} s waiting for {what}; logs in {self.dir}")
            time.sleep(0.5)

    def flwr(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        """The ``flwr`` CLI against this deployment's connection."""
        return subprocess.run(["flwr", *args], env=self.cli_env, cwd=self.project, capture_output=True, text=True,
                              timeout=timeout)

    def online_nodes(self) -> int:
        out = self.flwr("supernode", "ls", CONNECTION, "--format", "json")
        try:
            nodes = json.loads(out.stdout).get("nodes") or []
        except json.JSONDecodeError:
            return 0
        return sum(1 for n in nodes if n.get("status") == "online")

    # ------------------------------------------------------------------ runs
    def run(self, override_file: Path, stream=None, timeout: float | None = None,
            ended: Callable[[], bool] | None = None) -> tuple[int | None, str, int]:
        """``flwr run . <connection> --stream``; wait for the run's final status.

        Returns (run id, status, flwr's exit code). The status is read with ``flwr ls``
        while the log streams, since ``--stream`` neither ends exactly with the run nor
        reports its outcome. Each ``flwr ls`` is a Python process of its own (seconds of CPU,
        taken from the SuperNodes' ClientApps on a small machine), so it is asked every
        ``STATUS_EVERY`` s, and at every check once ``ended()`` (cheap: e.g. the run directory's
        ``summary.json`` says the ServerApp is done) is true.
        """
        cmd = ["flwr", "run", ".", CONNECTION, "--stream", "--run-config", str(override_file)]
        proc = subprocess.Popen(cmd, env=self.cli_env, cwd=self.project, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True)
        self.procs.append(proc)  # noted and stopped with the rest
        self.output = output = RunOutput(stream or sys.stdout)
        reader = threading.Thread(target=output.copy, args=(proc,), daemon=True)
        reader.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        status, next_ask = "not started", 0.0
        try:
            while output.run_id is not None or reader.is_alive():  # without a run id once flwr is done, no run started
                now = time.monotonic()
                if output.run_id is not None and (now >= next_ask or (ended is not None and ended())):
                    status = run_status(self.cli_env, output.run_id, self.project, CONNECTION)
                    if status.startswith("finished"):
                        break
                    next_ask = time.monotonic() + STATUS_EVERY
                self._check_alive()
                if deadline is not None and time.monotonic() > deadline:
                    status = f"timed out after {timeout:.0f} s ({status})"
                    break
                time.sleep(2.0)
        finally:
            ended_by_itself = proc.poll() is not None
            reader.join(10)  # the last lines of the log
            stop_run_processes([proc], grace=5)
        # the stream is ours to end once the run has finished; its exit code then says nothing
        returncode = proc.returncode if ended_by_itself else 0
        return output.run_id, status, returncode


def launch_deployment(experiment: str | Path | None = None, sets: list[str] | None = None, *,
                      project: Path = PROJECT_ROOT, stream=None, clients: int | None = None,
                      timeout: float | None = None) -> LaunchResult:
    """Validate, start a local deployment, run the app, wait for its final status, stop everything.

    ``timeout`` (seconds, default none) bounds the run itself; a run that outlasts it is
    stopped with the deployment and reported as not completed.

    Raises
    ------
    RunInterrupted
        On SIGINT/SIGTERM, once the run is stopped and every process of the deployment is gone.
    """
    t0 = time.monotonic()
    project = Path(project).resolve()
    overrides, federation = prepare(project, experiment, list(sets or []), {"clients": clients})
    unused = [k for k in RAY_ONLY if getattr(federation, k) != getattr(Federation(), k)]
    if unused:
        log.info("deployment: %s from the experiment's [federation] table do not apply (no Ray here)", unused)
    if overrides.get("write-truth") is True:
        raise ConfigError("'write-truth' = true cannot be used with --deployment: which samples a client used stays "
                          "on the client in a deployment (the leakage report is unscored)")
    overrides["write-truth"] = False
    run_dir, override_file = reserve_run_dir(project, overrides)
    status, returncode = "not started", 1
    timings: dict[str, float] = {}
    deployment = LocalDeployment(project, federation.clients)
    with StopSignals() as signals:
        try:
            deployment.start()
            timings["deployment-start"] = deployment.startup_seconds
            t_run = time.monotonic()
            _, status, returncode = deployment.run(override_file, stream, timeout, ended=lambda: server_done(run_dir))
            timings["flwr-run"] = time.monotonic() - t_run
        except Interrupted:
            pass  # signals.received says which; stopped below
        finally:
            t_stop = time.monotonic()
            with signals.shield():
                stopped = signals.interrupted
                if stopped is not None:  # the run first, while its SuperLink is up (as close_run does)
                    log.warning("%s: stopping run %s: %s", stopped.name, deployment.run_id,
                                stop_flower_run(deployment, deployment.run_id, project))
                deployment.stop()
                timings["stop"] = time.monotonic() - t_stop
    if stopped is not None:
        raise interrupted(stopped, run_dir, deployment.run_id, time.monotonic() - t0, timings, deployment.seen)
    if not status.endswith("completed"):
        log.warning("deployment: run %s ended with status %r; logs in %s", deployment.run_id, status, deployment.dir)
    ok = finish_run_dir(run_dir, returncode, status)
    if ok:  # the installed app copies and logs of a completed run are not worth keeping (kept when it failed)
        shutil.rmtree(deployment.dir, ignore_errors=True)
    return LaunchResult(run_dir, deployment.run_id, status, 0 if ok else 1, time.monotonic() - t0, timings,
                        deployment.seen)
