"""`course labs grade`: nbgrader autograde of a folder of lab submissions, with real execution.

The cheapest lab (04, monitor a batch: no Spark job, no model server) stands for all seven:
the solution gets full marks, the untouched lab gets zero with every check reported, and a lab
with only its first two exercises done gets exactly the checks those two exercises answer.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from course_utils.cli import main
from course_utils.labs import find_solutions, lab_path_for

LAB = "04_lab_monitor_a_batch"


def _solution_and_lab(notebooks: Path) -> tuple[Path, Path]:
    solution = next(path for path in find_solutions(notebooks) if path.stem == LAB)
    return solution, lab_path_for(solution)


def _answered(lab_path: Path, solution_path: Path, exercises: int | None) -> nbformat.NotebookNode:
    """The student lab with the first ``exercises`` answers (all when None) copied from the solution."""
    solution = nbformat.read(str(solution_path), as_version=4)
    answers = {
        cell.metadata["nbgrader"]["grade_id"]: cell.source
        for cell in solution.cells
        if cell.metadata.get("nbgrader", {}).get("solution")
    }
    lab = nbformat.read(str(lab_path), as_version=4)
    done = 0
    for cell in lab.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.metadata.get("nbgrader", {}).get("solution") and (exercises is None or done < exercises):
            cell.source = answers[grade_id]
            done += 1
    return lab


def _submit(folder: Path, student: str, notebook: nbformat.NotebookNode) -> None:
    path = folder / student / LAB / f"{LAB}.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(notebook, str(path))


@pytest.mark.slow
def test_course_labs_grade_scores_full_zero_and_partial(course_settings, tmp_path: Path, capsys) -> None:
    solution_path, lab_path = _solution_and_lab(course_settings.notebooks)
    submissions = tmp_path / "submitted"
    _submit(submissions, "alice", _answered(lab_path, solution_path, None))
    _submit(submissions, "bob", nbformat.read(str(lab_path), as_version=4))
    _submit(submissions, "carol", _answered(lab_path, solution_path, 2))

    assert main(["labs", "grade", str(submissions)]) == 0

    table = capsys.readouterr().out
    grades = json.loads((course_settings.build / "lab-grades.json").read_text())
    checks = [c.metadata["nbgrader"]["grade_id"] for c in nbformat.read(str(lab_path), as_version=4).cells
              if c.metadata.get("nbgrader", {}).get("grade")]
    assert len(checks) == 7
    by_student: dict[str, dict[str, float]] = {}
    for grade in grades:
        assert grade["lab"] == LAB and grade["max_score"] == 1
        by_student.setdefault(grade["student"], {})[grade["check"]] = grade["score"]
    assert set(by_student) == {"alice", "bob", "carol"}
    for student, scores in by_student.items():
        assert sorted(scores) == sorted(checks), f"{student}: every check is reported"
    assert all(score == 1 for score in by_student["alice"].values()), by_student["alice"]
    assert all(score == 0 for score in by_student["bob"].values()), by_student["bob"]
    # Exercises 1 and 2 answer checks 1 (the report's rows) and 2 (the drifted columns), nothing else.
    assert by_student["carol"] == {check: float(check.startswith(("check_1_", "check_2_"))) for check in checks}
    for student, total in (("alice", "7/7"), ("bob", "0/7"), ("carol", "2/7")):
        assert any(line.split()[0] == student and "TOTAL" in line and line.endswith(total) for line in table.splitlines()), table
