"""What `course lab` starts and links to, checked without starting it (tests/e2e/test_browser.py starts it)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jsonschema

from course_utils.config import KERNEL_NAME, load_settings
from course_utils.jupyter import (
    COURSE_OVERVIEW, LAB_OVERRIDES, LAB_OVERRIDES_TARGET, jupyterlab_command, jupyterlab_url,
)
from course_utils.tracking import mlflow_ui_url

ROOT = Path(__file__).resolve().parents[2]
NOTIFICATION_PLUGIN = "@jupyterlab/apputils-extension:notification"


def test_jupyterlab_opens_the_course_overview_with_only_the_course_kernel() -> None:
    command = jupyterlab_command(load_settings({}), 8899)
    assert (ROOT / COURSE_OVERVIEW).is_file()
    assert f"--LabApp.default_url=/lab/tree/{COURSE_OVERVIEW}" in command
    assert f"--KernelSpecManager.allowed_kernelspecs={KERNEL_NAME}" in command
    assert f"--MappingKernelManager.default_kernel_name={KERNEL_NAME}" in command
    assert "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate" in command
    assert not any("token" in part.lower() for part in command), "the token goes through JUPYTER_TOKEN, not `ps`"


def test_the_printed_jupyterlab_url_opens_the_course_overview() -> None:
    assert jupyterlab_url(8899, "abc") == (
        "http://127.0.0.1:8899/lab/tree/notebooks/00_intro/00_course_overview.ipynb?token=abc")


def test_the_mlflow_link_asks_for_the_model_training_view_of_the_experiment_list() -> None:
    expected = "http://127.0.0.1:5005/#/experiments?workflowType=machine_learning"
    assert mlflow_ui_url("http://127.0.0.1:5005") == expected
    assert mlflow_ui_url("http://127.0.0.1:5005/") == expected
    assert mlflow_ui_url("http://127.0.0.1:5005", "experiments/3/runs/ab") == (
        "http://127.0.0.1:5005/#/experiments/3/runs/ab?workflowType=machine_learning")


def test_lab_overrides_turn_news_and_update_checks_off_in_settings_jupyterlab_accepts() -> None:
    overrides = json.loads((ROOT / LAB_OVERRIDES).read_text())
    assert overrides == {NOTIFICATION_PLUGIN: {"fetchNews": "false", "checkForUpdates": False}}
    # Validated against the installed JupyterLab's own schema: a misspelt key or value is refused there.
    schema_file = Path(sys.prefix) / "share/jupyter/lab/schemas/@jupyterlab/apputils-extension/notification.json"
    schema = json.loads(schema_file.read_text())
    jsonschema.validate(overrides[NOTIFICATION_PLUGIN], schema)


def test_setup_installs_the_lab_overrides_where_course_utils_says() -> None:
    setup = (ROOT / "setup.sh").read_text()
    assert f"install -D -m 644 {LAB_OVERRIDES} .venv/{LAB_OVERRIDES_TARGET}\n" in setup
