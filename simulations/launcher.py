"""Run the Flower app through ``flwr run`` with a SuperLink of its own, and report honestly.

What ``flwr run . --stream`` leaves to the user, done here: a project-local ``FLWR_HOME``
with runtime dependency installation, telemetry and update checks off; a SuperLink on a
free port, started before and stopped after; the federation's size and per-client
resources; the config validated (and the clients' data checked) before Ray starts; the
run's real final status read back (``--stream`` exits 0 even when the run failed).

SIGINT or SIGTERM stops the run the way a user means it: ``flwr stop`` on the run, then
every process of it (SuperLink, SuperExec, ServerApp, Ray; found from the pids and the tag
the launcher holds, see :mod:`simulations.processes`), ``summary.json`` marked
``interrupted`` with the last finished round, and :class:`RunInterrupted` raised with the
result (exit status 128 + the signal's number in ``python -m simulations``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from fednas.config import (ConfigError, canonical_keys, check_against_federation, parse_config, sampled_per_round,
                           toml_value)
from fednas.data import check_federation, dataset_from_config
from fednas.memory import memory_warning
from fednas.overrides import parse_overrides
from fednas.rundir import atomic_write_text, new_run_dir
from fednas.runlog import mark_interrupted
from simulations.ports import free_port
from simulations.processes import TAG_ENV, Interrupted, StopSignals, new_tag, stop_run_processes

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
FEDERATION_KEYS = {"clients", "cpus-per-client", "gpus-per-client", "ray-cpus", "ray-gpus", "ray-address"}


class LaunchError(RuntimeError):
    """The run could not be started or did not complete."""


@dataclass
class Federation:
    """How the simulated federation is laid out on this machine (Ray resources)."""

    clients: int = 3
    cpus_per_client: float = 1.0
    gpus_per_client: float = 0.0
    ray_cpus: int | None = None  # Ray's total CPUs (default: all of the machine's)
    ray_gpus: int | None = None
    ray_address: str | None = None  # attach to this running Ray cluster instead of starting one

    def flower_args(self) -> str:
        parts = [f"num-supernodes={self.clients}", f"client-resources-num-cpus={_num(self.cpus_per_client)}",
                 f"client-resources-num-gpus={_num(self.gpus_per_client)}"]
        if self.ray_address:  # a cluster's size is set by its `ray start`s: Ray refuses init resources
            return " ".join(parts)
        if self.ray_cpus is not None:
            parts.append(f"init-args-num-cpus={int(self.ray_cpus)}")
        if self.ray_gpus is not None:
            parts.append(f"init-args-num-gpus={int(self.ray_gpus)}")
        return " ".join(parts)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


@dataclass
class LaunchResult:
    run_dir: Path
    run_id: int | None
    status: str
    returncode: int
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    processes: dict[int, float] = field(default_factory=dict)  # pid -> start time of each process seen (deployment)


class RunInterrupted(Interrupted):
    """The run was stopped by SIGINT/SIGTERM and cleaned up; ``result`` says where it got."""

    def __init__(self, signum: int, result: LaunchResult) -> None:
        super().__init__(signum)
        self.result = result


def load_experiment(path: str | Path | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """An experiment TOML: top-level run-config overrides and an optional ``[federation]`` table."""
    if path is None:
        return {}, {}
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"experiment file {str(path)!r} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"experiment file {str(path)!r} is not valid TOML: {err}") from None
    fed = data.pop("federation", {})
    unknown = set(fed) - FEDERATION_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown [federation] keys {sorted(unknown)}; allowed: {sorted(FEDERATION_KEYS)}")
    nested = [k for k, v in data.items() if isinstance(v, dict)]
    if nested:
        raise ConfigError(f"{path}: tables {nested} are not allowed; run-config keys are flat (key = value)")
    return canonical_keys(data, str(path)), fed


def pyproject_table(project: Path) -> dict[str, Any]:
    """The ``[tool.flwr.app.config]`` table of the app's pyproject.toml, as written."""
    data = tomllib.loads((project / "pyproject.toml").read_text())
    return dict(data["tool"]["flwr"]["app"]["config"])


def pyproject_defaults(project: Path) -> dict[str, Any]:
    """The app's pyproject.toml config table, old key names read as their new ones."""
    return canonical_keys(pyproject_table(project), str(project / "pyproject.toml"))


def flower_env(project: Path, port: int | None = None, tag: str | None = None) -> dict[str, str]:
    """The environment ``flwr`` needs here (docs/architecture.md, "Running Flower here");
    ``tag`` marks every process started with it (:mod:`simulations.processes`)."""
    env = dict(os.environ)
    env.update({
        "FLWR_HOME": str(project / ".flwr"),
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "FEDNAS_HOME": str(project),
        "RAY_DEDUP_LOGS": env.get("RAY_DEDUP_LOGS", "0"),
        "PYTHONUNBUFFERED": "1",
        # The flwr CLI, the SuperLink and its SuperExec must come from this interpreter.
        "PATH": str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""),
    })
    if port is not None:
        env["FLWR_LOCAL_SUPERLINK_HTTP_API_PORT"] = str(port)
    if tag is not None:
        env[TAG_ENV] = tag
    return env


def _healthy(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=0.5) as r:
            return 200 <= r.status < 300
    except OSError:
        return False


class SuperLink:
    """A local simulation SuperLink on a free port, in a session of its own.

    Everything it starts (SuperExec, ServerApp, Ray) inherits ``tag`` in its environment;
    :meth:`stop` stops all of it (:func:`simulations.processes.stop_run_processes`).
    """

    def __init__(self, project: Path, ray_address: str | None = None, timeout: float = 60.0) -> None:
        self.port = free_port()
        self.tag = new_tag()
        self.dir = project / ".flwr" / "superlinks" / str(self.port)
        self.dir.mkdir(parents=True, exist_ok=True)
        cmd = ["flower-superlink", "--insecure", "--simulation", "--isolation", "subprocess",
               "--host", "127.0.0.1", "--port", str(self.port), "--database", str(self.dir / "state.db"),
               "--log-file", str(self.dir / "superlink.log")]
        self.env = flower_env(project, self.port, self.tag)
        if ray_address:  # Flower's Ray backend calls ray.init() without an address: Ray reads it here
            self.env["RAY_ADDRESS"] = ray_address
        t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True, cwd=self.dir)
        try:
            self._wait_healthy(t0, timeout)
        except BaseException:  # a signal or a timeout while starting: leave nothing behind
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0

    def _wait_healthy(self, t0: float, timeout: float) -> None:
        while not self.healthy():
            if self.proc.poll() is not None:
                raise LaunchError(f"flower-superlink exited with code {self.proc.returncode}; see {self.dir / 'superlink.log'}")
            if time.monotonic() - t0 > timeout:
                raise LaunchError(f"flower-superlink did not become healthy in {timeout:.0f} s; see {self.dir}")
            time.sleep(0.2)

    connection: str | None = None  # the flwr CLI's default: the local SuperLink at FLWR_LOCAL_SUPERLINK_*

    @property
    def cli_env(self) -> dict[str, str]:
        """The environment of ``flwr`` CLI calls on this SuperLink."""
        return self.env

    def healthy(self) -> bool:
        return self.proc.poll() is None and _healthy(self.port)

    def stop(self, grace: float = 2.0) -> None:
        """Stop the SuperLink and everything it started (SuperExec, ServerApp, Ray): SIGTERM,
        and SIGKILL after ``grace`` s (Ray's busy workers let SIGTERM wait for their task)."""
        left = stop_run_processes([self.proc], self.tag, grace)  # reaps the SuperLink too
        if left:
            log.warning("processes of the run that would not stop: %s", [p.pid for p in left])


def stop_flower_run(link: SuperLink, run_id: int | None, project: Path, timeout: float = 15.0) -> str:
    """``flwr stop RUN_ID`` through the run's own SuperLink; what it answered (never raises).

    ``link`` is a :class:`SuperLink` or a :class:`simulations.deployment.LocalDeployment`
    (``healthy()``, ``cli_env`` and ``connection``). Only while that SuperLink is up: the
    ``flwr`` CLI starts a local SuperLink of its own when it finds none, and that one would
    outlive the launcher.
    """
    if run_id is None or not link.healthy():
        return "no run to stop" if run_id is None else "the SuperLink is gone"
    try:
        out = subprocess.run(["flwr", "stop", str(run_id), *([link.connection] if link.connection else []),
                              "--format", "json"], env=link.cli_env, cwd=project, capture_output=True, text=True,
                             timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"flwr stop failed: {type(err).__name__}: {err}"
    try:
        answer = json.loads(out.stdout)
    except json.JSONDecodeError:
        return f"flwr stop exited with {out.returncode}: {(out.stdout + out.stderr).strip()[-200:]}"
    return "stopped" if answer.get("success") else f"flwr stop: {answer}"


def run_status(env: dict[str, str], run_id: int, project: Path, connection: str | None = None) -> str:
    """The run's status as the SuperLink reports it (e.g. ``finished:completed``); through
    ``connection`` of ``$FLWR_HOME/config.toml`` when given. Without one, ask only while the
    run's local SuperLink is up (see :func:`stop_flower_run`)."""
    out = subprocess.run(["flwr", "ls", *([connection] if connection else []), "--run-id", str(run_id),
                          "--format", "json"], env=env, cwd=project, capture_output=True, text=True, timeout=60)
    try:
        data = json.loads(out.stdout)
    except json.JSONDecodeError:
        return f"unknown ({out.stdout.strip()[-200:]} {out.stderr.strip()[-200:]})"
    runs = data.get("runs") or []
    if not runs:
        return "unknown"
    return str(runs[0].get("status", "unknown"))


def prepare(project: Path, experiment: str | Path | None, sets: list[str], fed_overrides: dict[str, Any]) -> tuple[dict[str, Any], Federation]:
    """Merge pyproject defaults, the experiment file and ``--set``; validate everything."""
    overrides, fed_table = load_experiment(experiment)
    overrides.update(parse_overrides(sets))  # both with the new names of renamed keys
    unknown = [k for k in overrides if k not in pyproject_table(project)]
    cfg = parse_config({**pyproject_defaults(project), **overrides})  # names every bad key and value
    if unknown:  # a schema key missing from pyproject.toml would be refused by flwr
        raise ConfigError(f"keys {unknown} are not in [tool.flwr.app.config] of {project / 'pyproject.toml'}")
    fed_values = {k.replace("-", "_"): v for k, v in fed_table.items()}
    fed_values.update({k: v for k, v in fed_overrides.items() if v is not None})
    federation = Federation(**fed_values)
    if federation.clients < 1:
        raise ConfigError(f"--clients must be >= 1, got {federation.clients}")
    if federation.cpus_per_client <= 0 or federation.gpus_per_client < 0:
        raise ConfigError("--cpus-per-client must be > 0 and --gpus-per-client >= 0")
    if federation.ray_address and (federation.ray_cpus is not None or federation.ray_gpus is not None):
        raise ConfigError("--ray-cpus/--ray-gpus cannot be used with --ray-address: an existing Ray cluster's "
                          "resources are set by its `ray start --num-cpus/--num-gpus`, and Ray refuses them when attaching")
    if federation.gpus_per_client > 0 and cfg.run.device == "cpu":
        raise ConfigError("--gpus-per-client > 0 but 'device' = 'cpu'; set device to auto or cuda")
    check_against_federation(cfg, federation.clients)
    dataset = dataset_from_config(cfg.data, cfg.run.seed)
    check_federation(dataset, cfg.data, cfg.run.seed, federation.clients)
    warning = memory_warning(cfg, dataset.spec, clients_at_once(cfg, federation), psutil.virtual_memory().available)
    if warning is not None:
        log.warning("%s", warning)
    return overrides, federation


def clients_at_once(cfg: Any, federation: Federation) -> int:
    """Clients whose local search runs at the same time in this machine's memory: those a
    round samples, as many as Ray's CPUs hold (0 when their memory is elsewhere: GPU clients,
    or a Ray cluster attached to)."""
    if federation.ray_address or federation.gpus_per_client > 0:
        return 0
    cpus = federation.ray_cpus if federation.ray_cpus is not None else (os.cpu_count() or 1)
    return max(1, min(sampled_per_round(cfg.fed, federation.clients), int(cpus // federation.cpus_per_client)))


def reserve_run_dir(project: Path, overrides: dict[str, Any]) -> tuple[Path, Path]:
    """The run directory (created now; ``run-dir`` is set to it) and the run-config file for ``flwr run``."""
    cfg = parse_config({**pyproject_defaults(project), **overrides})
    run_dir = Path(overrides["run-dir"]) if overrides.get("run-dir") else new_run_dir(
        project / cfg.run.output_dir if not Path(cfg.run.output_dir).is_absolute() else Path(cfg.run.output_dir),
        cfg.run.run_name, cfg.run.seed)
    overrides["run-dir"] = str(run_dir.resolve())
    override_file = atomic_write_text(project / ".flwr" / "overrides" / f"{run_dir.name}.toml",
                                      "".join(f"{k} = {toml_value(v)}\n" for k, v in overrides.items()))
    return run_dir, override_file


def finish_run_dir(run_dir: Path, returncode: int, status: str) -> bool:
    """Whether the run completed (status and summary.json); drop a run directory left empty."""
    if run_dir.is_dir() and not any(run_dir.iterdir()):
        run_dir.rmdir()  # reserved for a run that never started: leave no empty folder behind
    return returncode == 0 and status.endswith("completed") and (run_dir / "summary.json").is_file()


def launch(experiment: str | Path | None = None, sets: list[str] | None = None, *,
           project: Path = PROJECT_ROOT, stream=None, **fed_overrides: Any) -> LaunchResult:
    """Validate, start a SuperLink, ``flwr run . --stream``, read the status, stop the SuperLink.

    Raises
    ------
    RunInterrupted
        On SIGINT/SIGTERM, once the run is stopped and its processes are gone.
    """
    t0 = time.monotonic()
    project = Path(project).resolve()
    overrides, federation = prepare(project, experiment, list(sets or []), fed_overrides)
    run_dir, override_file = reserve_run_dir(project, overrides)
    cmd = ["flwr", "run", ".", "--stream", "--run-config", str(override_file),
           "--federation-config", federation.flower_args()]
    timings: dict[str, float] = {}
    returncode, status = 1, "not started"
    output = RunOutput(stream or sys.stdout)
    with StopSignals() as signals:
        link = proc = None
        try:
            link = SuperLink(project, federation.ray_address)
            timings["superlink-start"] = link.startup_seconds
            t_run = time.monotonic()
            # its own session: a Ctrl-C in the terminal reaches the launcher only, which stops it in order
            proc = subprocess.Popen(cmd, env=link.env, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, bufsize=1, start_new_session=True)
            output.copy(proc)
            returncode = proc.wait()
            timings["flwr-run"] = time.monotonic() - t_run
        except Interrupted:
            pass  # signals.received says which; stopped below
        finally:
            t_stop, run_id = time.monotonic(), output.run_id
            with signals.shield():
                status = close_run(link, proc, run_id, project, stopped_by=signals.interrupted) or status
                timings["stop"] = time.monotonic() - t_stop
                stopped = signals.interrupted
    if stopped is not None:
        raise interrupted(stopped, run_dir, run_id, time.monotonic() - t0, timings)
    ok = finish_run_dir(run_dir, returncode, status)
    return LaunchResult(run_dir, run_id, status, 0 if ok else 1, time.monotonic() - t0, timings)


def close_run(link: SuperLink | None, proc: subprocess.Popen | None, run_id: int | None, project: Path,
              stopped_by: Interrupted | None = None) -> str | None:
    """End a run, in order: ``flwr stop`` it when a signal came (else read its final status,
    returned), then the ``flwr run`` client, then the SuperLink and everything it started."""
    status = None
    if link is not None and stopped_by is not None:
        log.warning("%s: stopping run %s: %s", stopped_by.name, run_id, stop_flower_run(link, run_id, project))
    elif link is not None and run_id is not None:
        status = run_status(link.cli_env, run_id, project, link.connection)
    if proc is not None and proc.poll() is None:
        stop_run_processes([proc])
    if link is not None:
        link.stop()
    return status


def interrupted(stopped: Interrupted, run_dir: Path, run_id: int | None, seconds: float, timings: dict[str, float],
                processes: dict[int, float] | None = None) -> RunInterrupted:
    """Once a stopped run's processes are gone: ``summary.json`` marked ``interrupted`` (with
    the last finished round), and the :class:`RunInterrupted` to raise."""
    summary = mark_interrupted(run_dir, stopped.name)
    result = LaunchResult(run_dir, run_id, "interrupted", stopped.exit_code, seconds, timings, processes or {})
    log.warning("run %s interrupted by %s after round %s; run directory: %s", run_id, stopped.name,
                summary.get("last-finished-round"), run_dir)
    return RunInterrupted(stopped.signum, result)


class RunOutput:
    """Copies ``flwr run --stream``'s output to ``out`` and keeps the run id it announces
    (kept even when a signal cuts the copy short; ``copy`` may run in a thread of its own)."""

    def __init__(self, out) -> None:
        self.out = out
        self.run_id: int | None = None

    def copy(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.out.write(line)
            m = re.search(r"Successfully started run (\d+)", line)
            if m and self.run_id is None:
                self.run_id = int(m.group(1))
