"""The one seam for every background process the course starts on 127.0.0.1.

MLflow tracking and registry servers, JupyterLab, model servers, webhook receivers (and the
routers and monitors of module 04) are all started, found, health-checked and stopped here:

- :func:`start_process` starts a command in its own process group, marked with two environment
  variables (``COURSE_SERVICE`` = its name, ``COURSE_SERVICE_WORKSPACE`` = the workspace) that
  its children inherit, records pid, process group, create time, port and command line in
  ``workspace/run/<name>.json`` (mode 0600), and waits until it is ready;
- :func:`find_processes` finds a service's processes again when that file is gone, damaged or
  names a dead pid (e.g. after ``kill -9`` of the leader, uvicorn's workers keep serving): by the
  marker, and by the process listening on the service's port whose command line names the port;
- :func:`stop` / :func:`stop_all` signal only processes found that way, never anything else;
- :func:`status_all` lists every course process of this workspace.

Example:
    >>> status = ensure_tracking_server()        # doctest: +SKIP
    >>> status.url                               # doctest: +SKIP
    'http://127.0.0.1:5005'
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from course_utils.config import LOOPBACK, Settings, load_settings, loopback_proxy_bypass, redact_uri
from course_utils.errors import CourseError
from course_utils.ports import PortInUseError, is_port_free, wait_until_listening
from course_utils.timing import timed
from course_utils.workspace import claim_workspace, write_private

logger = logging.getLogger(__name__)

MLFLOW = "mlflow"
SERVICE_ENV = "COURSE_SERVICE"
WORKSPACE_ENV = "COURSE_SERVICE_WORKSPACE"
TIMEOUT_ENV = "COURSE_SERVICE_TIMEOUT"
# ~9 s on an idle laptop; generous for a loaded 2-core machine; COURSE_SERVICE_TIMEOUT overrides it.
STARTUP_TIMEOUT_S = 240.0


class ServiceError(CourseError, RuntimeError):
    """A course service could not be started, reached or stopped."""


@dataclass(frozen=True)
class ServiceStatus:
    """What is known about one service.

    ``running`` means its recorded leader process is alive; ``orphans`` are course processes of
    this service left without that leader (found by marker or port), which ``stop`` ends.
    """

    name: str
    running: bool
    pid: int | None
    url: str | None
    log: Path | None
    port: int | None = None
    orphans: tuple[int, ...] = field(default=())

    def describe(self) -> str:
        """One line for ``course services status``."""
        if self.running:
            return f"{self.name}: running at {self.url} (pid {self.pid}, log {self.log})"
        if self.orphans:
            return (f"{self.name}: not running properly: its leader process is gone but pid(s) "
                    f"{', '.join(map(str, self.orphans))} of it remain"
                    f"{f' on port {self.port}' if self.port else ''}; `course services down` stops them")
        return f"{self.name}: not running"


def _pid_file(settings: Settings, name: str) -> Path:
    return settings.run_dir / f"{name}.json"


def _read_record(settings: Settings, name: str) -> dict | None:
    """The pid file's record, or None when it is missing or damaged (then the service is found by marker)."""
    path = _pid_file(settings, name)
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def _write_record(settings: Settings, name: str, record: dict) -> None:
    """Write the pid file readable by the owner only (it names URLs, logs and command lines)."""
    write_private(_pid_file(settings, name), json.dumps(record, indent=2))


def _owned_process(record: dict | None) -> psutil.Process | None:
    """The recorded process if it is still alive and is the one we started (same create time)."""
    if not record:
        return None
    try:
        process = psutil.Process(int(record["pid"]))
        if abs(process.create_time() - float(record["create_time"])) > 1.0:
            return None  # the pid was reused by an unrelated process
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process
    except (psutil.Error, KeyError, TypeError, ValueError):
        return None


def _marker(process: psutil.Process) -> tuple[str, str] | None:
    """(service name, workspace) from the process's environment, or None if it is not a course service."""
    try:
        environ = process.environ()
    except (psutil.Error, OSError):
        return None  # another user's process, or gone
    name, workspace = environ.get(SERVICE_ENV), environ.get(WORKSPACE_ENV)
    return (name, workspace) if name and workspace else None


def _marked_processes(settings: Settings) -> dict[str, list[psutil.Process]]:
    """Every live process carrying this workspace's service marker, by service name."""
    found: dict[str, list[psutil.Process]] = {}
    for process in psutil.process_iter():
        marker = _marker(process)
        if marker and marker[1] == str(settings.workspace):
            try:
                if process.status() == psutil.STATUS_ZOMBIE:
                    continue
            except psutil.Error:
                continue
            found.setdefault(marker[0], []).append(process)
    return found


def listener_on(port: int) -> psutil.Process | None:
    """The process listening on 127.0.0.1:port (or all interfaces), if this user may see it."""
    for conn in psutil.net_connections(kind="tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
            try:
                return psutil.Process(conn.pid)
            except psutil.Error:
                return None
    return None


def _serves_recorded_port(process: psutil.Process, record: dict | None) -> bool:
    """Is ``process`` the one listening on the record's port, with that port in its command line?

    This finds a service started before processes were marked, or whose marker cannot be read.
    """
    port = (record or {}).get("port")
    if not isinstance(port, int):
        return False
    try:
        cmdline = " ".join(process.cmdline())
    except psutil.Error:
        return False
    program = " ".join((record or {}).get("command", [])[1:3])  # e.g. "-m mlflow"
    return str(port) in cmdline and (not program or program in cmdline)


def _leader(record: dict | None, name: str, settings: Settings) -> psutil.Process | None:
    """The service's live leader: the recorded process, by create time or by its marker."""
    return _owned_process(record) or (_marked_leader(record, name, settings) if record else None)


def _marked_leader(record: dict, name: str, settings: Settings) -> psutil.Process | None:
    """The recorded pid when it still carries this service's marker, even if its create time reads differently.

    The marker proves ownership on its own; a clock step can shift psutil's create time by more than
    the tolerance, and a live server must then not be taken for a leftover and restarted.
    """
    try:
        process = psutil.Process(int(record["pid"]))
    except (psutil.Error, KeyError, TypeError, ValueError):
        return None
    return process if _marker(process) == (name, str(settings.workspace)) else None


def find_processes(name: str, settings: Settings) -> list[psutil.Process]:
    """All live processes of service ``name``: its recorded leader, marked processes, its port's listener."""
    record = _read_record(settings, name)
    found: dict[int, psutil.Process] = {}
    leader = _owned_process(record)
    if leader is not None:
        found[leader.pid] = leader
        try:
            found.update({child.pid: child for child in leader.children(recursive=True)})
        except psutil.Error:
            pass
    found.update({process.pid: process for process in _marked_processes(settings).get(name, [])})
    port = (record or {}).get("port")
    listener = listener_on(port) if isinstance(port, int) else None
    if listener is not None and listener.pid not in found and _serves_recorded_port(listener, record):
        marker = _marker(listener)
        if marker is None or marker == (name, str(settings.workspace)):
            found[listener.pid] = listener
    return list(found.values())


def status(name: str, settings: Settings | None = None) -> ServiceStatus:
    """Is the named service (started by course_utils) running, and is anything of it left over?"""
    settings = settings or load_settings()
    record = _read_record(settings, name) or {}
    leader = _leader(record, name, settings)
    log = Path(record["log"]) if isinstance(record.get("log"), str) else None
    port = record.get("port") if isinstance(record.get("port"), int) else None
    if leader is not None:
        return ServiceStatus(name, True, leader.pid, record.get("url"), log, port)
    orphans = tuple(sorted(p.pid for p in find_processes(name, settings)))
    return ServiceStatus(name, False, None, None, log, port, orphans)


def service_names(settings: Settings) -> list[str]:
    """Every service this workspace has a pid file for, or a live marked process of."""
    names = {path.stem for path in settings.run_dir.glob("*.json")} if settings.run_dir.is_dir() else set()
    return sorted(names | set(_marked_processes(settings)))


def status_all(settings: Settings) -> list[ServiceStatus]:
    """The status of every course service of this workspace (running, or with processes left over)."""
    return [status(name, settings) for name in service_names(settings)]


def service_timeout_s(environ: dict[str, str] | None = None) -> float:
    """Start-up timeout: ``COURSE_SERVICE_TIMEOUT`` seconds, or the default."""
    text = (os.environ if environ is None else environ).get(TIMEOUT_ENV)
    if text is None:
        return STARTUP_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise ValueError(f"{TIMEOUT_ENV}={text!r} is not a number of seconds; give e.g. {TIMEOUT_ENV}=300, or unset it.")
    return value


def start_process(
    name: str,
    command: list[str],
    port: int,
    url: str,
    settings: Settings,
    env: dict[str, str] | None = None,
    ready_path: str | None = None,
    *,
    port_setting: str | None = None,
    stop_at_exit: bool = False,
) -> ServiceStatus:
    """Start ``command`` in the background as service ``name``, record it, and wait until it is ready.

    Ready means ``port`` listens and, when ``ready_path`` is given, ``GET url+ready_path``
    answers 200 (a port can listen before the application behind it has loaded). A service
    that already runs is reused; processes left over from a crashed one are stopped first.

    Args:
        port_setting: what a learner changes when ``port`` is taken (named in the error).
        stop_at_exit: also stop it when this Python process exits (e.g. a notebook kernel).

    Raises:
        PortInUseError: another program listens on ``port`` (the message names it).
        ServiceError: the process exited, or was not ready within ``COURSE_SERVICE_TIMEOUT`` s.
    """
    timeout_s = service_timeout_s()  # a bad value fails before anything starts
    current = status(name, settings)
    if current.running:
        return current
    if current.orphans:
        logger.warning("stopping leftover processes %s of %s before starting it again", current.orphans, name)
        stop(name, settings)
    if not is_port_free(port):
        raise PortInUseError(_port_taken_message(port, name, settings, port_setting))
    claim_workspace(settings)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.run_dir / f"{name}.log"
    marker = {SERVICE_ENV: name, WORKSPACE_ENV: str(settings.workspace)}
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**loopback_proxy_bypass(os.environ), **(env or {}), **marker},
            start_new_session=True,  # its own process group, so stop() ends its workers too
        )
    record = {
        "pid": process.pid,
        "pgid": os.getpgid(process.pid),
        "create_time": psutil.Process(process.pid).create_time(),
        "url": url,
        "port": port,
        "log": str(log_path),
        "command": command,
    }
    _write_record(settings, name, record)
    if stop_at_exit:
        atexit.register(_stop_if_still_ours, name, settings, process.pid)
    ready_url = f"http://{LOOPBACK}:{port}{ready_path}" if ready_path else None
    with timed(f"server start: {name}"):
        started = _wait_for_start(process, port, timeout_s, ready_url)
    if not started:
        stop(name, settings)
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        raise ServiceError(f"{name} did not start on port {port} within {timeout_s:.0f} s "
                           f"({TIMEOUT_ENV}); last lines of {log_path}:\n{tail}")
    return status(name, settings)


def _wait_for_start(process: subprocess.Popen, port: int, timeout_s: float, ready_url: str | None) -> bool:
    """Wait until the port listens (and ``ready_url`` answers 200); give up early if the process exits."""
    import requests

    session = requests.Session()
    session.trust_env = False  # loopback never goes through a proxy
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if wait_until_listening(port, 0.5):
            if ready_url is None:
                return True
            try:
                if session.get(ready_url, timeout=10).status_code == 200:
                    return True
            except requests.RequestException:
                pass  # still loading
            time.sleep(0.5)
    return False


def stop(name: str, settings: Settings | None = None, timeout_s: float = 20.0) -> bool:
    """Stop every process of service ``name``; True when something was stopped.

    Only processes :func:`find_processes` attributes to the service are signalled: the recorded
    leader (same pid and create time) and its process group, marked processes, and its port's
    listener when its command line names that port. A pid file naming a stranger stops nothing.
    """
    settings = settings or load_settings()
    with timed(f"server stop: {name}"):
        record = _read_record(settings, name)
        processes = find_processes(name, settings)
        leader = _leader(record, name, settings)
        if leader is not None:
            try:
                os.killpg(int(record["pgid"]) if record and "pgid" in record else leader.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
        _terminate_then_kill(processes, timeout_s)
        _pid_file(settings, name).unlink(missing_ok=True)
    return bool(processes)


def stop_all(settings: Settings) -> dict[str, bool]:
    """Stop every course service of this workspace; returns {name: whether something was stopped}."""
    return {name: stop(name, settings) for name in service_names(settings)}


def stop_child_processes(timeout_s: float = 20.0) -> list[int]:
    """Stop every process this one started, directly or not (kernels, their JVMs); returns their pids.

    ``course run`` calls it last, so an interrupted or failed run leaves nothing behind.
    """
    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return []
    _terminate_then_kill(children, timeout_s)
    return [child.pid for child in children]


def _terminate_then_kill(processes: list[psutil.Process], timeout_s: float) -> None:
    """SIGTERM each process, wait up to ``timeout_s`` for all, then SIGKILL the survivors."""
    for process in processes:
        try:
            process.terminate()
        except psutil.Error:
            pass
    alive = _wait_until_gone(processes, timeout_s)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            pass
    _wait_until_gone(alive, 5)


def _wait_until_gone(processes: list[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """Wait up to ``timeout_s`` for ``processes`` to end; returns the ones still running.

    A process that has exited but whose parent has not reaped it yet (a zombie) counts as gone:
    when ``course services down`` stops a server that a notebook kernel started, only the kernel
    can reap it, and waiting for that would cost the whole timeout for every such server.
    """
    deadline = time.monotonic() + timeout_s
    alive = list(processes)
    while alive:
        _, alive = psutil.wait_procs(alive, timeout=0.1)  # reaps the ones that are our own children
        alive = [process for process in alive if not _is_zombie(process)]
        if time.monotonic() >= deadline:
            break
    return alive


def _is_zombie(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def stop_at_exit(name: str, settings: Settings) -> None:
    """Stop service ``name`` when this Python process ends, even after a failing cell (kernel shutdown)."""
    atexit.register(_stop_quietly, name, settings)


def _stop_quietly(name: str, settings: Settings) -> None:
    try:
        stop(name, settings)
    except Exception:  # noqa: BLE001 - interpreter shutdown: log and move on
        logger.warning("could not stop %s at exit", name, exc_info=True)


def _stop_if_still_ours(name: str, settings: Settings, pid: int) -> None:
    """atexit hook: stop the service if it is still the process we started; never raise at exit."""
    try:
        if status(name, settings).pid == pid:
            stop(name, settings)
    except Exception:  # noqa: BLE001 - interpreter shutdown: log and move on
        logger.warning("could not stop %s at exit", name, exc_info=True)


def _port_taken_message(port: int, name: str, settings: Settings, port_setting: str | None) -> str:
    owner = listener_on(port)
    description = ""
    if owner is not None:
        try:
            description = f" by pid {owner.pid} ({' '.join(owner.cmdline()[:4])})"
        except psutil.Error:
            description = f" by pid {owner.pid}"
        marker = _marker(owner)
        if marker and marker[1] == str(settings.workspace):
            description += f", the course's own {marker[0]!r} service (`course services down` stops it)"
    fix = f"or choose another port: {port_setting}" if port_setting else "or let the course pick a free port"
    return f"Port {port} on {LOOPBACK} is already taken{description}, so {name} cannot start there. Stop that process, {fix}."


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
    claim_workspace(settings)
    settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
    return start_process(
        MLFLOW,
        tracking_server_command(settings),
        settings.mlflow_port,
        settings.tracking_uri,
        settings,
        env=tracking_server_env(),
        ready_path="/health",
        port_setting=f"`export COURSE_MLFLOW_PORT={settings.mlflow_port + 1}`",
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
    os.environ.update(loopback_proxy_bypass(os.environ))  # MLflow's client reads these at each request
    if not settings.uses_own_tracking_server:
        return settings.tracking_uri
    start_tracking_server(settings)
    return settings.tracking_uri


def check_tracking_server(uri: str, timeout_s: float = 30.0) -> None:
    """Raise ServiceError with the fix when the tracking server at ``uri`` does not answer."""
    import requests

    if not uri.startswith("http"):
        return  # a file or database store needs no server
    os.environ.update(loopback_proxy_bypass(os.environ))  # MLflow's client reads these at each request
    try:
        response = requests.get(f"{uri.rstrip('/')}/health", timeout=timeout_s)
        response.raise_for_status()
    except requests.RequestException as error:
        raise ServiceError(
            f"The MLflow tracking server at {redact_uri(uri)} is not answering ({type(error).__name__}). "
            "Start it with `.venv/bin/course services up` (or fix MLFLOW_TRACKING_URI)."
        ) from None

