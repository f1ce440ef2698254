"""One pass of the course: every lesson and lab solution with `course run`'s runner, in a fresh
workspace with its own MLflow server, profile ``ci``: seconds, peak memory and the time breakdown
per notebook, beside the figures from before the speed work (``benchmarks/before.json``)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from unittest import mock

from course_utils.ports import free_port
from course_utils.runner import run_notebooks
from course_utils.services import MLFLOW, stop

BEFORE = Path(__file__).with_name("before.json")


def run(settings) -> dict:
    workspace = Path(tempfile.mkdtemp(prefix="course-bench-workspace-"))
    fresh = replace(settings, workspace=workspace, mlflow_port=free_port(), profile="ci")
    # The kernels read the workspace and port from the environment; patch.dict restores it afterwards.
    fresh_env = {"COURSE_WORKSPACE": str(workspace), "COURSE_MLFLOW_PORT": str(fresh.mlflow_port)}
    try:
        with mock.patch.dict(os.environ, fresh_env):
            runs = run_notebooks([], fresh)
    finally:
        stop(MLFLOW, fresh)
        shutil.rmtree(workspace, ignore_errors=True)
    before = json.loads(BEFORE.read_text())
    notebooks = {
        Path(r.notebook).stem: {
            **{k: v for k, v in asdict(r).items() if k in ("status", "seconds", "peak_python_mb", "peak_jvm_mb", "peak_total_mb", "breakdown")},
            "seconds_before": before["notebook_seconds"].get(Path(r.notebook).stem),
        }
        for r in runs
    }
    return {
        "profile": "ci",
        "fresh_workspace": True,
        "notebooks": notebooks,
        "total_seconds": round(sum(r.seconds for r in runs), 1),
        "total_seconds_before": before["course_pass_seconds"],
        "slowest_notebook_seconds": max(r.seconds for r in runs),
        "peak_memory_mb_max": max(r.peak_total_mb for r in runs),
        "all_passed": all(r.status == "passed" for r in runs),
    }
