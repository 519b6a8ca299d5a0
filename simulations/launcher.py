"""Run the Flower app through ``flwr run`` with a SuperLink of its own, and report honestly.

What ``flwr run . --stream`` leaves to the user, done here: a project-local ``FLWR_HOME``
with runtime dependency installation, telemetry and update checks off; a SuperLink on a
free port, started before and stopped after; the federation's size and per-client
resources; the config validated (and the clients' data checked) before Ray starts; the
run's real final status read back (``--stream`` exits 0 even when the run failed).
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fednas.config import KEY_BY_NAME, ConfigError, parse_config, toml_value
from fednas.data import check_federation, dataset_from_config
from fednas.rundir import atomic_write_text, new_run_dir

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
FEDERATION_KEYS = {"clients", "cpus-per-client", "gpus-per-client", "ray-cpus", "ray-gpus"}


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

    def flower_args(self) -> str:
        parts = [f"num-supernodes={self.clients}", f"client-resources-num-cpus={_num(self.cpus_per_client)}",
                 f"client-resources-num-gpus={_num(self.gpus_per_client)}"]
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


def parse_value(text: str) -> Any:
    """A ``--set`` value as TOML reads it (``3``, ``0.5``, ``true``, ``"x"``); bare words are strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_set(item: str) -> tuple[str, Any]:
    """One ``--set key=value`` item; a string key keeps the text as typed (fault-partitions=1 means "1")."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value")
    key, _, value = item.partition("=")
    key, value = key.strip(), value.strip()
    schema = KEY_BY_NAME.get(key)
    return key, value.strip('"') if schema is not None and schema.kind is str else parse_value(value)


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
    return data, fed


def pyproject_defaults(project: Path) -> dict[str, Any]:
    """The ``[tool.flwr.app.config]`` table of the app's pyproject.toml."""
    data = tomllib.loads((project / "pyproject.toml").read_text())
    return dict(data["tool"]["flwr"]["app"]["config"])


def flower_env(project: Path, port: int | None = None) -> dict[str, str]:
    """The environment ``flwr`` needs here (see DESIGN.md, Flower 1.42 facts)."""
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
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=0.5) as r:
            return 200 <= r.status < 300
    except OSError:
        return False


class SuperLink:
    """A local simulation SuperLink on a free port, in its own process group."""

    def __init__(self, project: Path, timeout: float = 60.0) -> None:
        self.port = free_port()
        self.dir = project / ".flwr" / "superlinks" / str(self.port)
        self.dir.mkdir(parents=True, exist_ok=True)
        cmd = ["flower-superlink", "--insecure", "--simulation", "--isolation", "subprocess",
               "--host", "127.0.0.1", "--port", str(self.port), "--database", str(self.dir / "state.db"),
               "--log-file", str(self.dir / "superlink.log")]
        self.env = flower_env(project, self.port)
        t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True, cwd=self.dir)
        while not _healthy(self.port):
            if self.proc.poll() is not None:
                raise LaunchError(f"flower-superlink exited with code {self.proc.returncode}; see {self.dir / 'superlink.log'}")
            if time.monotonic() - t0 > timeout:
                self.stop()
                raise LaunchError(f"flower-superlink did not become healthy in {timeout:.0f} s; see {self.dir}")
            time.sleep(0.2)
        self.startup_seconds = time.monotonic() - t0

    def stop(self) -> None:
        """Stop the SuperLink and everything it started (SuperExec, ServerApp, Ray)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def run_status(env: dict[str, str], run_id: int, project: Path) -> str:
    """The run's status as the SuperLink reports it (e.g. ``finished:completed``)."""
    out = subprocess.run(["flwr", "ls", "--run-id", str(run_id), "--format", "json"], env=env, cwd=project,
                         capture_output=True, text=True, timeout=60)
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
    overrides.update(parse_set(item) for item in sets)
    defaults = pyproject_defaults(project)
    unknown = [k for k in overrides if k not in defaults]
    cfg = parse_config({**defaults, **overrides})  # names every bad key and value
    if unknown:  # a schema key missing from pyproject.toml would be refused by flwr
        raise ConfigError(f"keys {unknown} are not in [tool.flwr.app.config] of {project / 'pyproject.toml'}")
    fed_values = {k.replace("-", "_"): v for k, v in fed_table.items()}
    fed_values.update({k: v for k, v in fed_overrides.items() if v is not None})
    federation = Federation(**fed_values)
    if federation.clients < 1:
        raise ConfigError(f"--clients must be >= 1, got {federation.clients}")
    if federation.cpus_per_client <= 0 or federation.gpus_per_client < 0:
        raise ConfigError("--cpus-per-client must be > 0 and --gpus-per-client >= 0")
    if federation.gpus_per_client > 0 and cfg.run.device == "cpu":
        raise ConfigError("--gpus-per-client > 0 but 'device' = 'cpu'; set device to auto or cuda")
    check_federation(dataset_from_config(cfg.data, cfg.run.seed), cfg.data, cfg.run.seed, federation.clients)
    return overrides, federation


def launch(experiment: str | Path | None = None, sets: list[str] | None = None, *,
           project: Path = PROJECT_ROOT, stream=None, **fed_overrides: Any) -> LaunchResult:
    """Validate, start a SuperLink, ``flwr run . --stream``, read the status, stop the SuperLink."""
    t0 = time.monotonic()
    project = Path(project).resolve()
    overrides, federation = prepare(project, experiment, list(sets or []), fed_overrides)
    cfg = parse_config({**pyproject_defaults(project), **overrides})
    run_dir = Path(overrides["run-dir"]) if overrides.get("run-dir") else new_run_dir(
        project / cfg.run.output_dir if not Path(cfg.run.output_dir).is_absolute() else Path(cfg.run.output_dir),
        cfg.run.run_name, cfg.run.seed)
    overrides["run-dir"] = str(run_dir.resolve())
    override_file = atomic_write_text(project / ".flwr" / "overrides" / f"{run_dir.name}.toml",
                                      "".join(f"{k} = {toml_value(v)}\n" for k, v in overrides.items()))
    link = SuperLink(project)
    timings = {"superlink-start": link.startup_seconds}
    run_id, returncode, status = None, 1, "not started"
    try:
        cmd = ["flwr", "run", ".", "--stream", "--run-config", str(override_file),
               "--federation-config", federation.flower_args()]
        t_run = time.monotonic()
        proc = subprocess.Popen(cmd, env=link.env, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            (stream or sys.stdout).write(line)
            m = re.search(r"Successfully started run (\d+)", line)
            if m:
                run_id = int(m.group(1))
        returncode = proc.wait()
        timings["flwr-run"] = time.monotonic() - t_run
        status = run_status(link.env, run_id, project) if run_id is not None else "not started"
    finally:
        link.stop()
    if run_dir.is_dir() and not any(run_dir.iterdir()):
        run_dir.rmdir()  # reserved for a run that never started: leave no empty folder behind
    ok = returncode == 0 and status.endswith("completed") and (run_dir / "summary.json").is_file()
    return LaunchResult(run_dir, run_id, status, 0 if ok else 1, time.monotonic() - t0, timings)
