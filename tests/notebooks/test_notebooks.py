"""Execute every lesson notebook with papermill (profile ``ci``, fresh workspace) and assert on
the values it recorded; then re-execute the executed copy with nbval (lax) so the cells marked
``# NBVAL_CHECK_OUTPUT`` must print the same thing on a second run.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import psutil
import pytest

from course_utils.config import KERNEL_NAME, load_settings
from course_utils.runner import collect_notebooks, run_notebook
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
def test_notebook_runs_and_proves_its_claims(notebook: Path, course_settings) -> None:
    assert notebook.stem in EXPECTATIONS, f"add expectations for {notebook.stem} to tests/notebooks/expect_<module>.py"
    # Listeners from before (e.g. the Spark JVM of an earlier in-process test) are not the notebook's.
    listening_before = set(_stray_listeners(course_settings))
    run = run_notebook(notebook, course_settings, {"profile": "ci"})
    assert run.status == "passed", f"{notebook.name} failed; executed copy: {run.output}\n{run.error}"
    started_and_left = sorted(set(_stray_listeners(course_settings)) - listening_before)
    assert not started_and_left, f"servers the notebook started must be stopped by its end: {started_and_left}"
    results_file = course_settings.results_dir / f"{notebook.stem}.json"
    results = json.loads(results_file.read_text())
    assert results["params"]["profile"] == "ci"
    EXPECTATIONS[notebook.stem](results)

    # The same executed notebook, run again by nbval: marked cells must give identical output.
    rerun = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
         "--nbval-kernel-name", KERNEL_NAME, run.output],
        capture_output=True, text=True, cwd=course_settings.root,
    )
    assert rerun.returncode == 0, f"second run differs or fails:\n{rerun.stdout[-3000:]}"


def test_every_notebook_has_expectations() -> None:
    missing = sorted({p.stem for p in NOTEBOOKS} - set(EXPECTATIONS))
    assert not missing, f"notebooks without expectations in tests/notebooks: {missing}"
    assert NOTEBOOKS, "no notebooks found"
