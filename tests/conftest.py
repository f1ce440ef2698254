"""Shared fixtures: every test session gets a fresh workspace and its own MLflow port.

The developer's own ``workspace/`` and a tracking server they may have running are never
touched: the suite points ``COURSE_WORKSPACE`` at a temporary folder and
``COURSE_MLFLOW_PORT`` at a free port, and stops what it started at the end.

The network is cut for everything the suite runs (notebooks included): HTTP(S) proxies point
at a closed local port and pip may not reach an index, so anything that tries to download
at run time fails loudly instead of passing by luck. Loopback stays reachable.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from course_utils.config import Settings, load_settings
from course_utils.ports import free_port


CLOSED_PORT_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens there
OFFLINE_ENV = {
    "HTTP_PROXY": CLOSED_PORT_PROXY,
    "HTTPS_PROXY": CLOSED_PORT_PROXY,
    "http_proxy": CLOSED_PORT_PROXY,
    "https_proxy": CLOSED_PORT_PROXY,
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
    "PIP_NO_INDEX": "1",
    "UV_OFFLINE": "1",
}


@pytest.fixture(scope="session")
def course_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings for a fresh, isolated workspace; services started under it are stopped afterwards."""
    from course_utils.services import MLFLOW, stop

    saved = {key: os.environ.get(key) for key in (*OFFLINE_ENV, "COURSE_WORKSPACE", "COURSE_MLFLOW_PORT", "MLFLOW_TRACKING_URI", "COURSE_PROFILE")}
    os.environ.update(OFFLINE_ENV)
    os.environ["COURSE_WORKSPACE"] = str(tmp_path_factory.mktemp("workspace"))
    os.environ["COURSE_MLFLOW_PORT"] = str(free_port())
    os.environ["COURSE_PROFILE"] = "ci"
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    settings = load_settings()
    try:
        yield settings
    finally:
        for name in (MLFLOW, "jupyterlab"):
            stop(name, settings)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_tracking_uri_leaks() -> Iterator[None]:
    """A test that points MLflow somewhere must put it back: kernels and later tests inherit the variable.

    (A leaked ``MLFLOW_TRACKING_URI`` once sent every later notebook to a stopped test server.)
    """
    import sys

    def tracking_uri() -> tuple[str | None, str | None]:
        module = sys.modules.get("mlflow.tracking._tracking_service.utils")
        return os.environ.get("MLFLOW_TRACKING_URI"), getattr(module, "_tracking_uri", None)

    before = tracking_uri()
    yield
    after = tracking_uri()
    assert after == before, f"the test changed MLflow's tracking URI from {before} to {after} and left it so"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Notebook tests first, in their course order (a stable sort keeps it).

    They are one file of about 25 minutes; with pytest-xdist's ``--dist loadfile`` the file that
    comes first goes to the first worker at once, and the other worker takes every other file
    meanwhile. Collected later, it would start only after a batch of unit files.
    """
    items.sort(key=lambda item: 0 if item.nodeid.startswith("tests/notebooks/") else 1)
