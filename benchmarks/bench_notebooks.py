"""Each notebook's run time and peak memory (Python kernel and JVM), via `course run`'s runner."""

from __future__ import annotations

from dataclasses import asdict

from course_utils.runner import run_notebooks
from course_utils.services import MLFLOW, status, stop


def run(settings) -> dict:
    was_running = status(MLFLOW, settings).running
    try:
        runs = run_notebooks([], settings)
    finally:
        if not was_running:
            stop(MLFLOW, settings)
    return {
        "profile": settings.profile,
        "notebooks": {
            r.notebook: {k: v for k, v in asdict(r).items() if k in ("status", "seconds", "peak_python_mb", "peak_jvm_mb", "peak_total_mb")}
            for r in runs
        },
        "total_seconds": round(sum(r.seconds for r in runs), 1),
    }
