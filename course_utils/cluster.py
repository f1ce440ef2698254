"""A real Spark standalone cluster on 127.0.0.1: one master and two workers from the installed PySpark.

The pip package has no ``sbin/start-master.sh``, but its ``bin/spark-class`` starts the same
daemons (``org.apache.spark.deploy.master.Master`` and ``...worker.Worker``). Each daemon is a
course service started through :func:`course_utils.services.start_process`, so
``course services status|down`` and ``course reset`` see and stop them like every other server.

Everything the daemons write stays in the workspace (``run/spark/``): logs (``SPARK_LOG_DIR``),
pid files (``SPARK_PID_DIR``), each worker's work folder (executor logs, the jars and files an
application ships) and scratch space. Executors get the Delta jars from the driver, which serves
the jar cache listed in ``spark.jars`` (nothing is downloaded).

Point the course at it with ``COURSE_SPARK_MASTER`` (``course cluster up`` prints the value)::

    .venv/bin/course cluster up          # master + 2 workers, 1 core and 1 GiB each
    export COURSE_SPARK_MASTER=spark://127.0.0.1:<port>
    .venv/bin/course cluster down

Example:
    >>> worker_command(7077, 8081, "spark://127.0.0.1:7078", Path("/w"))[1:3]
    ['org.apache.spark.deploy.worker.Worker', '--host']
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from course_utils.config import LOOPBACK, Settings
from course_utils.errors import CourseError

logger = logging.getLogger(__name__)

MASTER = "spark-master"
WORKER_PREFIX = "spark-worker-"
DEFAULT_WORKERS = 2
WORKER_CORES = 1
WORKER_MEMORY = "1g"
EXECUTOR_MEMORY_MIB = 1024  # spark.executor.memory's default, which the course does not change
# The daemons only schedule; executors (launched by the workers) do the work.
DAEMON_MEMORY = "256m"
DAEMON_JAVA_OPTS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"


class ClusterError(CourseError, RuntimeError):
    """The local Spark cluster could not be started or reached, or a master URL does not answer."""


@dataclass(frozen=True)
class ClusterStatus:
    """What is known about the local cluster: the master's URLs and each worker's state."""

    master_url: str | None
    ui_url: str | None
    workers: tuple[dict, ...]
    running: bool

    def describe(self) -> str:
        """Lines for ``course cluster status``."""
        if not self.running:
            return "Spark cluster: not running (`.venv/bin/course cluster up` starts it)"
        lines = [f"Spark master: {self.master_url}  (UI {self.ui_url})",
                 f"  use it with: export COURSE_SPARK_MASTER={self.master_url}"]
        lines += [f"  worker {w['id']}: {w['state']}, {w['cores']} core(s), {w['memory']} MiB, UI {w['webuiaddress']}"
                  for w in self.workers]
        return "\n".join(lines)


def spark_home() -> Path:
    """The installed PySpark, which carries Spark's jars and ``bin/spark-class``."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def cluster_dir(settings: Settings) -> Path:
    """Where the cluster's logs, pid files, work and scratch folders live (inside ``run/``, so reset clears it)."""
    return settings.run_dir / "spark"


def worker_name(index: int) -> str:
    return f"{WORKER_PREFIX}{index}"


def master_command(port: int, webui_port: int) -> list[str]:
    """``spark-class ...Master`` bound to 127.0.0.1 on the given ports."""
    return [str(spark_home() / "bin" / "spark-class"), MASTER_CLASS, "--host", LOOPBACK,
            "--port", str(port), "--webui-port", str(webui_port)]


def worker_command(port: int, webui_port: int, master_url: str, work_dir: Path,
                   cores: int = WORKER_CORES, memory: str = WORKER_MEMORY) -> list[str]:
    """``spark-class ...Worker`` on 127.0.0.1 with its own work folder, registering with ``master_url``."""
    return [str(spark_home() / "bin" / "spark-class"), WORKER_CLASS, "--host", LOOPBACK,
            "--port", str(port), "--webui-port", str(webui_port), "--cores", str(cores), "--memory", memory,
            "--work-dir", str(work_dir), master_url]


def daemon_env(settings: Settings) -> dict[str, str]:
    """Environment of the daemons: loopback only, every file in the workspace, small JVMs.

    ``SPARK_CONF_DIR`` points at an empty folder of the workspace so that no ``spark-env.sh`` or
    ``spark-defaults.conf`` from elsewhere changes the cluster.
    """
    import sys

    from course_utils.spark import java_executable

    base = cluster_dir(settings)
    folders = {key: base / name for key, name in
               (("SPARK_LOG_DIR", "logs"), ("SPARK_PID_DIR", "pids"), ("SPARK_LOCAL_DIRS", "scratch"), ("SPARK_CONF_DIR", "conf"))}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    env = {key: str(folder) for key, folder in folders.items()}
    env.update({
        "SPARK_HOME": str(spark_home()),
        "SPARK_LOCAL_IP": LOOPBACK,  # RPC and web UIs bind to loopback only
        "SPARK_DAEMON_MEMORY": DAEMON_MEMORY,
        "SPARK_DAEMON_JAVA_OPTS": DAEMON_JAVA_OPTS,
        "PYSPARK_PYTHON": sys.executable,  # executors' Python workers: the course's interpreter
    })
    java = java_executable()
    if java and "JAVA_HOME" not in os.environ:
        env["JAVA_HOME"] = str(Path(os.path.realpath(java)).parent.parent)
    return env


def _record_port(settings: Settings, name: str) -> int | None:
    try:
        record = json.loads((settings.run_dir / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None
    port = record.get("port") if isinstance(record, dict) else None
    return port if isinstance(port, int) else None


def _webui_port(command: list[str] | None) -> int | None:
    if command and "--webui-port" in command:
        return int(command[command.index("--webui-port") + 1])
    return None


def _record_command(settings: Settings, name: str) -> list[str] | None:
    try:
        record = json.loads((settings.run_dir / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None
    command = record.get("command") if isinstance(record, dict) else None
    return command if isinstance(command, list) else None


def master_state(ui_url: str, timeout_s: float = 5.0) -> dict:
    """The master's own status page as JSON (``<ui>/json/``): workers, applications, state."""
    import requests

    session = requests.Session()
    session.trust_env = False  # loopback never goes through a proxy
    response = session.get(f"{ui_url.rstrip('/')}/json/", timeout=timeout_s)
    response.raise_for_status()
    return response.json()


def cluster_status(settings: Settings) -> ClusterStatus:
    """The local cluster's master URL, UI and workers as the master reports them."""
    from course_utils.services import status

    master = status(MASTER, settings)
    if not master.running or master.port is None:
        return ClusterStatus(None, None, (), False)
    ui_url = master.url
    try:
        workers = tuple(master_state(ui_url)["workers"])
    except Exception:  # noqa: BLE001 - a starting master: report it without workers
        workers = ()
    return ClusterStatus(f"spark://{LOOPBACK}:{master.port}", ui_url, workers, True)


def start_cluster(settings: Settings, workers: int = DEFAULT_WORKERS, port: int | None = None,
                  webui_port: int | None = None, cores: int = WORKER_CORES, memory: str = WORKER_MEMORY,
                  timeout_s: float = 120.0) -> ClusterStatus:
    """Start (or reuse) the master and ``workers`` workers; returns once every worker is ALIVE.

    Args:
        port: the master's RPC port (default: a free one); ``webui_port`` likewise for its UI.
        cores, memory: what each worker offers to executors (``memory`` like ``1g``; at least one executor's 1g).

    Raises:
        PortInUseError: a port given is taken (the message names its owner).
        ClusterError: bad arguments, or the workers did not register within ``timeout_s``.
    """
    from course_utils.ports import free_port
    from course_utils.services import start_process, status
    from course_utils.spark import require_java
    from course_utils.workspace import claim_workspace

    _validate(workers, cores, memory)
    require_java()
    claim_workspace(settings)
    env = daemon_env(settings)
    master = status(MASTER, settings)
    if master.running and port is not None and master.port != port:
        raise ClusterError(f"The course's Spark master already runs on port {master.port}, not {port}; "
                           "`.venv/bin/course cluster down` first to move it.")
    master_port = master.port if master.running else (port or free_port())
    ui_port = (_webui_port(_record_command(settings, MASTER)) if master.running else None) or webui_port or free_port()
    started = start_process(MASTER, master_command(master_port, ui_port), master_port,
                            f"http://{LOOPBACK}:{ui_port}", settings, env=env,
                            port_setting="`course cluster up --port N` (or leave --port out for a free one)")
    master_url = f"spark://{LOOPBACK}:{master_port}"
    for index in range(1, workers + 1):
        work_dir = cluster_dir(settings) / f"work-{index}"
        work_dir.mkdir(parents=True, exist_ok=True)
        worker_port = _record_port(settings, worker_name(index)) if status(worker_name(index), settings).running else None
        worker_port = worker_port or free_port()
        worker_ui = free_port()
        start_process(worker_name(index), worker_command(worker_port, worker_ui, master_url, work_dir, cores, memory),
                      worker_port, f"http://{LOOPBACK}:{worker_ui}", settings, env=env)
    _wait_for_workers(started.url, workers, timeout_s)
    return cluster_status(settings)


def _validate(workers: int, cores: int, memory: str) -> None:
    if not isinstance(workers, int) or not 1 <= workers <= 8:
        raise ClusterError(f"workers={workers!r}: give 1 to 8 workers (each is a JVM on this machine).")
    if not isinstance(cores, int) or cores < 1:
        raise ClusterError(f"cores={cores!r}: each worker needs at least 1 core.")
    if not isinstance(memory, str) or not memory[:-1].isdigit() or memory[-1].lower() not in "mg" or int(memory[:-1]) == 0:
        raise ClusterError(f"memory={memory!r} is not a memory size; give e.g. 1g or 2g.")
    mib = int(memory[:-1]) * (1024 if memory[-1].lower() == "g" else 1)
    if mib < EXECUTOR_MEMORY_MIB:
        raise ClusterError(f"memory={memory!r} is less than the 1g each executor asks for (Spark's spark.executor.memory "
                           "default), so no executor would ever start on such a worker; give 1g or more.")


def _wait_for_workers(ui_url: str, expected: int, timeout_s: float) -> None:
    """Wait until the master lists ``expected`` ALIVE workers."""
    deadline = time.monotonic() + timeout_s
    alive = 0
    while time.monotonic() < deadline:
        try:
            alive = sum(1 for w in master_state(ui_url)["workers"] if w.get("state") == "ALIVE")
        except Exception:  # noqa: BLE001 - still starting
            alive = 0
        if alive >= expected:
            return
        time.sleep(0.5)
    raise ClusterError(f"Only {alive} of {expected} Spark workers registered with the master ({ui_url}) within "
                       f"{timeout_s:.0f} s; see the logs in the workspace's run/ folder (spark-worker-*.log).")


def cluster_services(settings: Settings) -> list[str]:
    """Names of the cluster's services this workspace knows of (master first)."""
    from course_utils.services import service_names

    names = service_names(settings)
    return [name for name in names if name == MASTER] + sorted(n for n in names if n.startswith(WORKER_PREFIX))


def stop_cluster(settings: Settings) -> dict[str, bool]:
    """Stop the workers (and their executors), then the master; {service: whether something was stopped}."""
    from course_utils.services import stop

    names = cluster_services(settings)
    return {name: stop(name, settings) for name in [*names[1:], *names[:1]] if name}


def check_master(master_url: str, timeout_s: float = 3.0) -> None:
    """Raise ClusterError with the fix when a ``spark://host:port`` master does not accept connections.

    Without this check Spark's client retries for about a minute and then reports "All masters
    are unresponsive" deep in a stack trace.
    """
    if not master_url.startswith("spark://"):
        return
    hosts = master_url[len("spark://"):].split(",")  # spark://h1:7077,h2:7077 (standby masters)
    problems = []
    for host_port in hosts:
        parsed = urlparse(f"spark://{host_port}")
        if parsed.hostname is None or parsed.port is None:
            raise ClusterError(f"COURSE_SPARK_MASTER={master_url!r} has no host:port; give e.g. spark://127.0.0.1:7077.")
        try:
            with socket.create_connection((parsed.hostname, parsed.port), timeout=timeout_s):
                return
        except OSError as error:
            problems.append(f"{parsed.hostname}:{parsed.port} ({error.strerror or type(error).__name__})")
    raise ClusterError(
        f"The Spark master COURSE_SPARK_MASTER={master_url} does not answer: nothing accepts connections at "
        f"{', '.join(problems)}. Start the course's cluster with `.venv/bin/course cluster up` and export the URL it "
        "prints, fix the address, or unset COURSE_SPARK_MASTER to run locally (local[2])."
    )
