"""Shared fixtures: every test session gets a fresh workspace and its own MLflow port.

The developer's own ``workspace/`` and a tracking server they may have running are never
touched: the suite points ``COURSE_WORKSPACE`` at a temporary folder and
``COURSE_MLFLOW_PORT`` at a free port, and stops what it started at the end.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from course_utils.config import Settings, load_settings
from course_utils.ports import free_port


@pytest.fixture(scope="session")
def course_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings for a fresh, isolated workspace; services started under it are stopped afterwards."""
    from course_utils.services import MLFLOW, stop

    saved = {key: os.environ.get(key) for key in ("COURSE_WORKSPACE", "COURSE_MLFLOW_PORT", "MLFLOW_TRACKING_URI", "COURSE_PROFILE")}
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
