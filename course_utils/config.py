"""Where everything lives, and which versions the course is pinned to.

One place for paths and settings. Everything is read from environment variables with
local defaults, so the same notebooks run on a laptop or, by configuration, against a
Spark cluster and a remote MLflow server:

- ``COURSE_WORKSPACE``      root of all state (default ``<repo>/workspace``)
- ``COURSE_SPARK_MASTER``   Spark master URL (default ``local[2]``)
- ``MLFLOW_TRACKING_URI``   a tracking server to use instead of the course's own
- ``COURSE_MLFLOW_PORT``    port of the course's own tracking server (default 5005)
- ``COURSE_PROFILE``        data size profile, ``ci`` or ``full`` (default ``ci``)

Example:
    >>> settings = load_settings()
    >>> settings.workspace.name
    'workspace'
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping


# Delta's jars must match the delta-spark Python package in requirements.lock.
DELTA_VERSION = "4.4.0"
SPARK_MINOR = "4.1"
SCALA_BINARY = "2.13"
DELTA_JARS: tuple[str, ...] = (
    f"io.delta:delta-spark_{SPARK_MINOR}_{SCALA_BINARY}:{DELTA_VERSION}",
    f"io.delta:delta-storage:{DELTA_VERSION}",
)
MIN_JAVA = 17
KERNEL_NAME = "ml-in-production"
PROFILES = ("ci", "full")
DEFAULT_MLFLOW_PORT = 5005
LOOPBACK = "127.0.0.1"
# Spark master URL forms (https://spark.apache.org/docs/latest/submitting-applications.html#master-urls).
SPARK_MASTER_PREFIXES = ("local", "spark://", "yarn", "k8s://", "mesos://", "sc://")
# Tracking URI forms the course supports for MLFLOW_TRACKING_URI.
TRACKING_URI_PREFIXES = ("http://", "https://", "file:", "sqlite:", "postgresql", "mysql", "mssql", "databricks")


def redact_uri(uri: str) -> str:
    """``uri`` with any password in it replaced by ``***``, for messages and logs.

    A team server's URI can carry credentials (``https://user:secret@host``; database URIs
    always can); MLflow's own way is ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``, but a message
    must never echo a secret either way.
    """
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(uri)
    except ValueError:
        return "<an unparsable URI>"
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def repo_root() -> Path:
    """The repository checkout that holds this package (installed editable)."""
    return Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    """Resolved paths and settings for one process."""

    root: Path
    workspace: Path
    spark_master: str
    mlflow_port: int
    external_tracking_uri: str | None
    profile: str

    @property
    def build(self) -> Path:
        return self.root / "build"

    @property
    def jar_cache(self) -> Path:
        return self.root / ".cache" / "jars"

    @property
    def datasets(self) -> Path:
        return self.root / "datasets"

    @property
    def notebooks(self) -> Path:
        return self.root / "notebooks"

    @property
    def run_dir(self) -> Path:
        """Pid files and logs of the services course_utils starts."""
        return self.workspace / "run"

    @property
    def mlflow_dir(self) -> Path:
        return self.workspace / "mlflow"

    @property
    def results_dir(self) -> Path:
        """Values each lesson records for the tests (one JSON file per lesson)."""
        return self.workspace / "results"

    @property
    def tracking_uri(self) -> str:
        return self.external_tracking_uri or f"http://{LOOPBACK}:{self.mlflow_port}"

    @property
    def uses_own_tracking_server(self) -> bool:
        return self.external_tracking_uri is None


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the settings from the environment (or from ``environ`` in tests)."""
    env = os.environ if environ is None else environ
    root = repo_root()
    profile = env.get("COURSE_PROFILE", "ci")
    if profile not in PROFILES:
        raise ValueError(
            f"COURSE_PROFILE={profile!r} is not a data profile; use one of {', '.join(PROFILES)}."
        )
    port_text = env.get("COURSE_MLFLOW_PORT", str(DEFAULT_MLFLOW_PORT))
    if not port_text.isdigit() or not 1024 <= int(port_text) <= 65535:
        raise ValueError(
            f"COURSE_MLFLOW_PORT={port_text!r} is not a usable port; give a number from 1024 to 65535."
        )
    workspace = Path(env.get("COURSE_WORKSPACE", root / "workspace")).expanduser().resolve()
    if workspace.exists() and not workspace.is_dir():
        raise ValueError(f"COURSE_WORKSPACE={str(workspace)!r} is a file, not a folder; point it at a folder "
                         "the course may create and own, e.g. unset it to use <repo>/workspace.")
    external_uri = env.get("MLFLOW_TRACKING_URI") or None
    if external_uri and not external_uri.startswith(TRACKING_URI_PREFIXES):
        raise ValueError(f"MLFLOW_TRACKING_URI={redact_uri(external_uri)!r} is not a tracking URI; give a server URL such as "
                         "http://host:5000, or unset it to use the course's own server.")
    if external_uri and external_uri.rstrip("/") == f"http://{LOOPBACK}:{port_text}":
        # mlflow.set_tracking_uri() exports the variable: pointing it at the course's own server
        # (as every lesson does) must not turn that server into an "external" one nobody starts.
        external_uri = None
    spark_master = env.get("COURSE_SPARK_MASTER", "local[2]")
    if not spark_master.startswith(SPARK_MASTER_PREFIXES):
        raise ValueError(f"COURSE_SPARK_MASTER={spark_master!r} is not a Spark master URL; use local[2], "
                         "spark://host:7077 (a standalone cluster) or sc://host:15002 (Spark Connect), or unset it.")
    return Settings(
        root=root,
        workspace=workspace,
        spark_master=spark_master,
        mlflow_port=int(port_text),
        external_tracking_uri=external_uri,
        profile=profile,
    )


def loopback_proxy_bypass(environ: Mapping[str, str]) -> dict[str, str]:
    """``NO_PROXY``/``no_proxy`` with 127.0.0.1 and localhost added: the course's own traffic never uses a proxy.

    Corporate laptops often set ``HTTP(S)_PROXY`` without ``NO_PROXY``; requests (and so MLflow's
    client) would then send even loopback calls to the proxy, which cannot reach them.
    """
    merged = {}
    for key in ("NO_PROXY", "no_proxy"):
        entries = [entry.strip() for entry in environ.get(key, "").split(",") if entry.strip()]
        merged[key] = ",".join(entries + [host for host in (LOOPBACK, "localhost") if host not in entries])
    return {**dict(environ), **merged}
