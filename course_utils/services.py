"""Background services the course starts on 127.0.0.1: the MLflow tracking server, JupyterLab.

Each service is started with a pid file under ``workspace/run/``; ``stop`` only ever
signals the process recorded there (and checks it is still the process we started),
never anything else that happens to use the port.

Example:
    >>> status = ensure_tracking_server()        # doctest: +SKIP
    >>> status.url                               # doctest: +SKIP
    'http://127.0.0.1:5005'
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from course_utils.config import LOOPBACK, Settings, load_settings
from course_utils.ports import PortInUseError, is_port_free, wait_until_listening
from course_utils.timing import timed

logger = logging.getLogger(__name__)

MLFLOW = "mlflow"
# ~9 s on an idle laptop; generous for a loaded 2-core machine; COURSE_SERVICE_TIMEOUT overrides it.
STARTUP_TIMEOUT_S = 240.0


class ServiceError(RuntimeError):
    """A course service could not be started, reached or stopped."""


@dataclass(frozen=True)
class ServiceStatus:
    """What is known about one service."""

    name: str
    running: bool
    pid: int | None
    url: str | None
    log: Path | None


def _pid_file(settings: Settings, name: str) -> Path:
    return settings.run_dir / f"{name}.json"


def _read_record(settings: Settings, name: str) -> dict | None:
    path = _pid_file(settings, name)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def _owned_process(record: dict | None) -> psutil.Process | None:
    """The recorded process if it is still alive and is the one we started (same create time)."""
    if not record:
        return None
    try:
        process = psutil.Process(record["pid"])
        if abs(process.create_time() - record["create_time"]) > 1.0:
            return None  # the pid was reused by an unrelated process
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process
    except (psutil.NoSuchProcess, KeyError, TypeError):
        return None


def status(name: str, settings: Settings | None = None) -> ServiceStatus:
    """Is the named service (started by course_utils) running?"""
    settings = settings or load_settings()
    record = _read_record(settings, name)
    process = _owned_process(record)
    if process is None:
        return ServiceStatus(name, False, None, None, None)
    return ServiceStatus(name, True, process.pid, record.get("url"), Path(record["log"]))


def start_process(
    name: str,
    command: list[str],
    port: int,
    url: str,
    settings: Settings,
    env: dict[str, str] | None = None,
    ready_path: str | None = None,
) -> ServiceStatus:
    """Start ``command`` in the background, record its pid, and wait until it is ready.

    Ready means ``port`` listens and, when ``ready_path`` is given, ``GET url+ready_path``
    answers 200 (a port can listen before the application behind it has loaded).
    """
    current = status(name, settings)
    if current.running:
        return current
    if not is_port_free(port):
        raise PortInUseError(_port_taken_message(port, name))
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.run_dir / f"{name}.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # its own process group, so stop() ends its workers too
        )
    record = {
        "pid": process.pid,
        "create_time": psutil.Process(process.pid).create_time(),
        "url": url,
        "port": port,
        "log": str(log_path),
        "command": command,
    }
    _pid_file(settings, name).write_text(json.dumps(record, indent=2))
    ready_url = f"http://{LOOPBACK}:{port}{ready_path}" if ready_path else None
    timeout_s = float(os.environ.get("COURSE_SERVICE_TIMEOUT", STARTUP_TIMEOUT_S))
    with timed(f"server start: {name}"):
        started = _wait_for_start(process, port, timeout_s, ready_url)
    if not started:
        stop(name, settings)
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        raise ServiceError(f"{name} did not start on port {port}; last lines of {log_path}:\n{tail}")
    return status(name, settings)


def _wait_for_start(process: subprocess.Popen, port: int, timeout_s: float, ready_url: str | None) -> bool:
    """Wait until the port listens (and ``ready_url`` answers 200); give up early if the process exits."""
    import requests

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if wait_until_listening(port, 0.5):
            if ready_url is None:
                return True
            try:
                if requests.get(ready_url, timeout=10).status_code == 200:
                    return True
            except requests.RequestException:
                pass  # still loading
            time.sleep(0.5)
    return False


def stop(name: str, settings: Settings | None = None, timeout_s: float = 20.0) -> bool:
    """Stop the service recorded in its pid file; returns True when something was stopped."""
    settings = settings or load_settings()
    record = _read_record(settings, name)
    process = _owned_process(record)
    stopped = False
    if process is not None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout_s)
        except psutil.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
        stopped = True
    _pid_file(settings, name).unlink(missing_ok=True)
    return stopped


def _port_taken_message(port: int, name: str) -> str:
    owner = ""
    for conn in psutil.net_connections(kind="tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
            try:
                owner = f" by pid {conn.pid} ({' '.join(psutil.Process(conn.pid).cmdline()[:3])})"
            except psutil.Error:
                owner = f" by pid {conn.pid}"
            break
    return (
        f"Port {port} on {LOOPBACK} is already taken{owner}, so {name} cannot start there. "
        f"Stop that process, or choose another port, e.g. `export COURSE_MLFLOW_PORT={port + 1}`."
    )


# --- MLflow tracking server -------------------------------------------------------------------


def tracking_server_command(settings: Settings) -> list[str]:
    """The ``mlflow server`` command line: SQLite backend, local artifact root, one worker."""
    mlflow_dir = settings.mlflow_dir
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        LOOPBACK,
        "--port",
        str(settings.mlflow_port),
        "--workers",
        "1",  # ~9 s to start instead of ~22 s with the default 4; plenty for one learner
        "--backend-store-uri",
        f"sqlite:///{mlflow_dir / 'mlflow.db'}",
        "--artifacts-destination",
        str(mlflow_dir / "artifacts"),
    ]


def start_tracking_server(settings: Settings | None = None) -> ServiceStatus:
    """Start the course's MLflow tracking server (no-op when it already runs)."""
    settings = settings or load_settings()
    settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
    return start_process(
        MLFLOW,
        tracking_server_command(settings),
        settings.mlflow_port,
        settings.tracking_uri,
        settings,
        env=tracking_server_env(),
        ready_path="/health",
    )


def tracking_server_env() -> dict[str, str]:
    """Environment for the server: no telemetry, nothing phoned home, no job runner.

    MLflow's job runner (six ``huey_consumer`` processes, ~1.5 GB per server) executes server-side
    jobs such as trace roll-ups, which the course never uses; webhooks are delivered by the web
    worker's own thread pool and do not need it (lesson 02c proves they still arrive).
    """
    return {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def ensure_tracking_server(settings: Settings | None = None) -> str:
    """The tracking URI to use: ``MLFLOW_TRACKING_URI`` if set, else the course's server (started if needed)."""
    settings = settings or load_settings()
    if not settings.uses_own_tracking_server:
        return settings.tracking_uri
    start_tracking_server(settings)
    return settings.tracking_uri


def check_tracking_server(uri: str, timeout_s: float = 30.0) -> None:
    """Raise ServiceError with the fix when the tracking server at ``uri`` does not answer."""
    import requests

    if not uri.startswith("http"):
        return  # a file or database store needs no server
    try:
        response = requests.get(f"{uri.rstrip('/')}/health", timeout=timeout_s)
        response.raise_for_status()
    except requests.RequestException as error:
        raise ServiceError(
            f"The MLflow tracking server at {uri} is not answering ({type(error).__name__}). "
            "Start it with `.venv/bin/course services up` (or fix MLFLOW_TRACKING_URI)."
        ) from None

