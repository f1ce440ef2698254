"""Execute every lesson notebook (profile ``ci``, fresh workspace) twice in a row and assert on
the values each run recorded.

Both runs happen in one kernel: "Run All", then "Run All" again, as an instructor re-running a
demo does. The first run starts from a fresh kernel; the second starts from everything the
first left behind (tables, runs, registered models, servers' state, the kernel's own state), so
a notebook that is not idempotent fails here. Each run's recorded results must meet the
notebook's expectations, and the cells marked ``# NBVAL_CHECK_OUTPUT`` must print the same
thing in both runs. See the README's "How the tests work" for why one kernel.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any, Callable

import psutil
import pytest

from course_utils.runner import collect_notebooks, run_twice_in_one_kernel
from course_utils.config import load_settings
from course_utils.services import MLFLOW, status

Results = dict[str, Any]


def _load_expectations() -> dict[str, Callable[[Results], None]]:
    """Collect ``EXPECTATIONS`` from every ``expect_*.py`` beside this file (one per module)."""
    expectations: dict[str, Callable[[Results], None]] = {}
    for path in sorted(Path(__file__).parent.glob("expect_*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        expectations.update(module.EXPECTATIONS)
    return expectations


# One entry per lesson notebook: a notebook without expectations fails the suite on purpose.
EXPECTATIONS = _load_expectations()
NOTEBOOKS = collect_notebooks([], load_settings())


def _stray_listeners(settings) -> list[str]:
    """Listening sockets of processes started under this test workspace, except the course's MLflow server."""
    server = status(MLFLOW, settings)
    allowed = set()
    if server.running:
        allowed = {server.pid, *(c.pid for c in psutil.Process(server.pid).children(recursive=True))}
    strays = []
    for conn in psutil.net_connections("tcp"):
        if conn.status != psutil.CONN_LISTEN or not conn.pid or conn.pid in allowed:
            continue
        try:
            process = psutil.Process(conn.pid)
            if process.environ().get("COURSE_WORKSPACE") == str(settings.workspace):
                strays.append(f"pid {conn.pid} port {conn.laddr.port}: {' '.join(process.cmdline()[:6])}")
        except psutil.Error:
            continue
    return strays


def _notebook_id(path: Path) -> str:
    return path.stem


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=_notebook_id)
def test_notebook_runs_twice_and_proves_its_claims(notebook: Path, course_settings) -> None:
    assert notebook.stem in EXPECTATIONS, f"add expectations for {notebook.stem} to tests/notebooks/expect_<module>.py"
    # Listeners from before (e.g. the Spark JVM of an earlier in-process test) are not the notebook's.
    listening_before = set(_stray_listeners(course_settings))
    outcome = run_twice_in_one_kernel(notebook, course_settings, {"profile": "ci"})
    assert outcome.error is None, f"{notebook.name} failed; first run's executed copy: {outcome.first_executed}\n{outcome.error}"
    started_and_left = sorted(set(_stray_listeners(course_settings)) - listening_before)
    assert not started_and_left, f"servers the notebook started must be stopped by its end: {started_and_left}"
    for number, run in enumerate(outcome.runs, start=1):
        results = run["results"]
        assert results.get("params", {}).get("profile") == "ci", f"run {number} recorded no results"
        EXPECTATIONS[notebook.stem](results)
    assert not outcome.mismatched_outputs, "the second run printed something else:\n" + "\n".join(outcome.mismatched_outputs)
    _report_times(course_settings.build / "notebook-tests.json", notebook.stem, outcome)


def _report_times(report: Path, stem: str, outcome) -> None:
    """Each notebook's first- and second-run seconds, for the README and the closing notes (never asserted)."""
    times = json.loads(report.read_text()) if report.is_file() else {}
    times[stem] = {"first_run_seconds": outcome.runs[0]["seconds"], "second_run_seconds": outcome.runs[1]["seconds"]}
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(times, indent=2))


def test_every_notebook_has_expectations() -> None:
    missing = sorted({p.stem for p in NOTEBOOKS} - set(EXPECTATIONS))
    assert not missing, f"notebooks without expectations in tests/notebooks: {missing}"
    assert NOTEBOOKS, "no notebooks found"
