"""`course doctor` wall time and the time of each check."""

from __future__ import annotations

import time

from course_utils.doctor import run_doctor
from course_utils.services import MLFLOW, status, stop


def run(settings) -> dict:
    was_running = status(MLFLOW, settings).running
    started = time.perf_counter()
    try:
        results = run_doctor(settings)
    finally:
        if not was_running:
            stop(MLFLOW, settings)
    return {
        "doctor_seconds": round(time.perf_counter() - started, 2),
        "all_passed": all(r.ok for r in results),
        "checks_seconds": {r.name: r.seconds for r in results},
    }
