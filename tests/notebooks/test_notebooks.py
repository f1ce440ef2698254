"""Execute every lesson notebook with papermill (profile ``ci``, fresh workspace) and assert on
the values it recorded; then re-execute the executed copy with nbval (lax) so the cells marked
``# NBVAL_CHECK_OUTPUT`` must print the same thing on a second run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from course_utils.config import KERNEL_NAME, load_settings
from course_utils.runner import collect_notebooks, run_notebook

Results = dict[str, Any]


def _check_00_course_overview(r: Results) -> None:
    assert r["java_major"] >= 17
    assert r["delta_rows_v0"] > 0 and r["delta_rows_latest"] == r["delta_rows_v0"] + 10
    assert r["delta_versions"] == 2
    assert 0.5 < r["mlflow_accuracy"] <= 1.0
    assert r["feast_entities"] == ["customer"]
    assert r["ml_code_share"] < 0.05
    assert r["pillars_with_evidence"] == 4


# One entry per lesson notebook: a notebook without expectations fails the suite on purpose.
EXPECTATIONS: dict[str, Callable[[Results], None]] = {
    "00_course_overview": _check_00_course_overview,
}

NOTEBOOKS = collect_notebooks([], load_settings())


def _notebook_id(path: Path) -> str:
    return path.stem


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=_notebook_id)
def test_notebook_runs_and_proves_its_claims(notebook: Path, course_settings) -> None:
    assert notebook.stem in EXPECTATIONS, f"add expectations for {notebook.stem} to {__file__}"
    run = run_notebook(notebook, course_settings, {"profile": "ci"})
    assert run.status == "passed", f"{notebook.name} failed; executed copy: {run.output}\n{run.error}"
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
