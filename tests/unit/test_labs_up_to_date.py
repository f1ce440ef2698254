"""The generated labs in the repository match their solution notebooks."""

from __future__ import annotations

from pathlib import Path

from course_utils.labs import find_solutions, stale_labs

REPO_ROOT = Path(__file__).parents[2]
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"


def test_generated_labs_are_up_to_date() -> None:
    stale = stale_labs(NOTEBOOKS_DIR)
    assert isinstance(stale, list)
    if not find_solutions(NOTEBOOKS_DIR):
        return  # no solution notebooks yet: nothing can be stale, but the check itself ran
    listing = "\n".join(f"  {path.relative_to(REPO_ROOT)}" for path in stale)
    assert not stale, (
        "These labs are missing or out of date with their solutions:\n"
        f"{listing}\n"
        "Run `.venv/bin/course labs build` and commit the regenerated labs "
        "(edit the solution, never the lab)."
    )
