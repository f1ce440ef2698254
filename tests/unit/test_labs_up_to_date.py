"""The committed labs are what nbgrader generates from their solutions now (edit the solution, never the lab)."""

from __future__ import annotations

from pathlib import Path

from course_utils.labs import find_solutions, stale_labs

REPO_ROOT = Path(__file__).parents[2]
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"


def test_generated_labs_are_up_to_date() -> None:
    assert find_solutions(NOTEBOOKS_DIR), "no solution notebooks found"
    stale = stale_labs(NOTEBOOKS_DIR)
    listing = "\n".join(f"  {path.relative_to(REPO_ROOT)}" for path in stale)
    assert not stale, (
        f"These labs are missing or out of date with their solutions:\n{listing}\n"
        "Run `.venv/bin/course labs build` and commit the regenerated labs."
    )
