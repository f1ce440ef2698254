"""House rules a maintainer would otherwise check by hand."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbstripout import strip_output

from course_utils.config import KERNEL_NAME, DELTA_VERSION, load_settings

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted(p for p in (ROOT / "notebooks").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def _load_sync_environment():
    spec = importlib.util.spec_from_file_location("sync_environment", ROOT / "tools" / "sync_environment.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_environment_yml_has_the_lock_pins() -> None:
    sync = _load_sync_environment()
    lock = sync.read_pins((ROOT / "requirements.lock").read_text())
    env_text = (ROOT / "environment.yml").read_text()
    assert sync.read_pins(env_text) == lock, "run .venv/bin/python tools/sync_environment.py"
    assert "python=3.11" in env_text and "openjdk=17" in env_text


def test_lock_pins_every_package_exactly() -> None:
    lines = [l for l in (ROOT / "requirements.lock").read_text().splitlines() if l and not l.startswith((" ", "#"))]
    loose = [l for l in lines if "==" not in l]
    assert lines and not loose, f"unpinned lines in requirements.lock: {loose}"


def test_python_delta_matches_the_delta_jars() -> None:
    pins = _load_sync_environment().read_pins((ROOT / "requirements.lock").read_text())
    assert pins["delta-spark"] == DELTA_VERSION, "delta-spark in the lock must equal the jar version setup.sh fetches"
    assert pins["pyspark"] == "4.1.4"


def test_installed_packages_match_the_lock() -> None:
    from importlib.metadata import version

    for name in ("pyspark", "delta-spark", "mlflow", "pandas", "feast", "scikit-learn", "papermill"):
        pins = _load_sync_environment().read_pins((ROOT / "requirements.lock").read_text())
        assert version(name) == pins[name], f"{name} differs from requirements.lock: re-run ./setup.sh"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT / "notebooks")))
def test_notebook_is_committed_clean(notebook: Path) -> None:
    nb = nbformat.read(notebook, as_version=4)
    stripped = strip_output(nbformat.read(notebook, as_version=4), keep_output=False, keep_count=False, keep_id=True)
    assert nb == stripped, f"{notebook.name} has outputs: commit it through the nbstripout filter (./setup.sh installs it)"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT / "notebooks")))
def test_notebook_follows_the_skeleton(notebook: Path) -> None:
    nb = nbformat.read(notebook, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == KERNEL_NAME
    first = nb.cells[1] if nb.metadata.get("lab") else nb.cells[0]  # a lab opens with its "generated from" note
    assert first.cell_type == "markdown" and first.source.startswith("# "), "a markdown title comes first"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged `parameters`"
    assert any(c.cell_type == "markdown" and c.source.startswith("## Checks") for c in nb.cells), "a final ## Checks section"
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "%run" not in code, "no %run chains: import from course_utils instead"
    assert re.search(r"start_lesson\(\s*\"" + re.escape(notebook.stem) + '"', code), "starts its own lesson by name"


def test_importing_course_utils_starts_nothing() -> None:
    """No import-time side effects: no Spark, MLflow or pandas import, no files written."""
    code = (
        "import sys, course_utils, course_utils.cli, course_utils.lesson, course_utils.services;"
        "heavy = [m for m in ('pyspark', 'mlflow', 'pandas', 'feast') if m in sys.modules];"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_generated_state_is_ignored_by_git() -> None:
    ignored = (ROOT / ".gitignore").read_text().split()
    for folder in ("workspace/", "build/", ".cache/", ".venv/", "datasets/generated/"):
        assert folder in ignored
    assert load_settings({}).workspace == ROOT / "workspace"


def test_test_module_names_are_unique() -> None:
    """tests/ has no __init__.py files: two test modules with one basename break collection for the whole suite."""
    names = [path.name for path in (ROOT / "tests").rglob("test_*.py")]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    assert not duplicated, f"rename one of each: {duplicated}"
