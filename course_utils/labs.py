"""The labs on nbgrader: student versions generated from the solutions, and autograding.

A solution notebook (``notebooks/<module>/solutions/<name>.ipynb``) is the single source, marked
up the nbgrader way (the instructor's "Create Assignment" toolbar writes the same metadata):

- an exercise is a *solution cell* (``metadata.nbgrader.solution``) whose answer sits between
  ``### BEGIN SOLUTION`` and ``### END SOLUTION``;
- each graded check is an *autograder test cell* (``grade: true``, ``points``), read-only;
- the given code is *read-only* (``locked: true``).

``nbgrader generate_assignment`` makes the student version (``notebooks/<module>/labs/<name>.ipynb``),
with one small layer on top, :class:`LabHints`, for what nbgrader lacks: each solution cell
carries ``metadata.lab = {"exercise": title, "hints": [nudge, where to look]}``; in the lab its
answer becomes ``raise NotImplementedError("<title> is not done yet ... Hint: <nudge> ...")``
(so "Run All" stops at the first exercise, naming it), and a markdown cell below it holds the
two hints, folded. Cells tagged ``solution-only`` (the solution's own records for CI) are left out.

:func:`grade_submissions` runs ``nbgrader autograde`` on a folder of submissions laid out as
nbgrader's ``submitted/`` folder (``<student>/<lab name>/<lab name>.ipynb``) and returns the points
of every test cell per student.

Example:
    >>> build_labs(Path("notebooks"))  # doctest: +SKIP
    [PosixPath('notebooks/01_experimentation/labs/01_lab_tuning.ipynb'), ...]
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import nbformat

from course_utils.config import Settings
from course_utils.errors import CourseError

__all__ = [
    "LabGrade",
    "LabSourceError",
    "SOLUTION_ONLY_TAG",
    "build_labs",
    "find_solutions",
    "grade_submissions",
    "grade_table",
    "lab_path_for",
    "render_labs",
    "stale_labs",
]

SOLUTION_ONLY_TAG = "solution-only"
# nbgrader's code stub for a cleared answer; LabHints replaces it by the exercise's own message.
_STUB_PLACEHOLDER = "raise NotImplementedError()  # course-lab-stub"
_SOLUTIONS_DIR = "solutions"
_LABS_DIR = "labs"
_CELL_TIMEOUT_S = 600  # one lab cell (a Spark job, a model server's start) in autograde


class LabSourceError(CourseError, ValueError):
    """A solution notebook whose markup cannot be turned into a lab."""


def lab_path_for(solution_path: Path) -> Path:
    """The lab written for a solution: ``<module>/solutions/x.ipynb`` -> ``<module>/labs/x.ipynb``."""
    solution_path = Path(solution_path)
    if solution_path.parent.name != _SOLUTIONS_DIR or solution_path.suffix != ".ipynb":
        raise ValueError(
            f"{solution_path} is not a solution notebook: solutions are "
            f"notebooks/<module>/{_SOLUTIONS_DIR}/<name>.ipynb"
        )
    return solution_path.parent.parent / _LABS_DIR / solution_path.name


def find_solutions(notebooks_dir: Path) -> list[Path]:
    """Solution notebooks (``*/solutions/*.ipynb``) under ``notebooks_dir``, sorted; none if it is absent."""
    notebooks_dir = Path(notebooks_dir)
    if notebooks_dir.exists() and not notebooks_dir.is_dir():
        raise NotADirectoryError(f"{notebooks_dir} is a file: pass the course's notebooks/ folder")
    return sorted(
        path
        for path in notebooks_dir.rglob("*.ipynb")
        if path.parent.name == _SOLUTIONS_DIR and ".ipynb_checkpoints" not in path.parts
    )


def _lab_hints_class() -> type:
    """The LabHints preprocessor (defined lazily: importing nbgrader takes a second)."""
    from nbgrader.preprocessors import NbGraderPreprocessor

    class LabHints(NbGraderPreprocessor):
        """Per-exercise stub messages and two-level hints; drops ``solution-only`` cells."""

        def preprocess(self, nb: nbformat.NotebookNode, resources: dict) -> tuple[nbformat.NotebookNode, dict]:
            name = resources.get("unique_key", "the lab")
            cells = [nbformat.v4.new_markdown_cell(
                f"> Generated from `{_SOLUTIONS_DIR}/{name}.ipynb` by `course labs build` "
                "(nbgrader generate_assignment): edit the solution, not this file."
            )]
            for index, cell in enumerate(nb.cells):
                if SOLUTION_ONLY_TAG in cell.get("metadata", {}).get("tags", []):
                    continue
                grading = cell.get("metadata", {}).get("nbgrader", {})
                if cell.cell_type == "code" and grading.get("solution"):
                    lab = cell.metadata.get("lab")
                    if not lab or not lab.get("exercise") or len(lab.get("hints", [])) != 2:
                        raise LabSourceError(
                            f"{name}, cell {index}: a solution cell needs metadata "
                            '"lab": {"exercise": "<title>", "hints": ["<a nudge>", "<where to look>"]}'
                        )
                    if _STUB_PLACEHOLDER not in cell.source:
                        raise LabSourceError(f"{name}, cell {index}: a solution cell without ### BEGIN SOLUTION")
                    cell.source = cell.source.replace(_STUB_PLACEHOLDER, _stub(lab["exercise"], lab["hints"][0]))
                    cells.append(cell)
                    cells.append(nbformat.v4.new_markdown_cell(_hints_markdown(lab["hints"])))
                    continue
                cells.append(cell)
            nb.cells = cells
            nb.metadata["lab"] = True  # a generated lab (it opens with the note above, not its title)
            # Ids are positions, as the nbstripout filter writes them on commit: a fresh build
            # is byte-identical to the committed lab.
            for position, kept in enumerate(nb.cells):
                kept.id = str(position)
            return nb, resources

    return LabHints


def _stub(exercise: str, nudge: str) -> str:
    message = f"{exercise} is not done yet: replace this line with your code. Hint: {nudge} (a second hint is below the cell)"
    return f"raise NotImplementedError({message!r})"


def _hints_markdown(hints: list[str]) -> str:
    nudge, where = hints
    return (
        f"<details><summary>Hint 1 · a nudge</summary>\n\n{nudge}\n\n</details>\n"
        f"<details><summary>Hint 2 · where to look</summary>\n\n{where}\n\n</details>"
    )


def _nbgrader_config(course_root: Path) -> Any:
    """nbgrader's configuration for a course folder: our stub, the LabHints layer, a long cell timeout."""
    from nbgrader.converters import GenerateAssignment
    from nbgrader.preprocessors import ClearSolutions
    from traitlets.config import Config

    config = Config()
    config.CourseDirectory.root = str(course_root)
    config.ClearSolutions.code_stub = {"python": _STUB_PLACEHOLDER}
    config.ClearSolutions.enforce_metadata = True
    preprocessors = GenerateAssignment.class_traits()["preprocessors"].make_dynamic_default()
    # Right after nbgrader clears the answers, so the checksums and the gradebook see the final cells.
    preprocessors.insert(preprocessors.index(ClearSolutions) + 1, _lab_hints_class())
    config.GenerateAssignment.preprocessors = preprocessors
    config.Execute.timeout = _CELL_TIMEOUT_S
    config.Execute.allow_errors = True  # every check is graded, even after a failing exercise
    return config


def _nbgrader_api(course_root: Path) -> Any:
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    config = _nbgrader_config(course_root)
    return NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)


@contextmanager
def _venv_tools_on_path() -> Iterator[None]:
    """nbgrader runs the ``alembic`` command to create a gradebook: find the one beside this Python."""
    tools = str(Path(sys.executable).parent)
    with mock.patch.dict(os.environ, {"PATH": os.pathsep.join([tools, os.environ.get("PATH", "")])}):
        yield


def _generate(api: Any, course_root: Path, solutions: list[Path]) -> dict[Path, Path]:
    """Run ``generate_assignment`` (one assignment per lab, named after it); return solution -> release."""
    released: dict[Path, Path] = {}
    for solution in solutions:
        source = course_root / "source" / solution.stem / solution.name
        source.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(solution, source)
        with _venv_tools_on_path():
            outcome = api.generate_assignment(solution.stem)
        if not outcome["success"]:
            raise LabSourceError(
                f"nbgrader generate_assignment failed for {solution}:\n{outcome.get('log')}\n{outcome.get('error')}"
            )
        released[solution] = course_root / "release" / solution.stem / solution.name
    return released


def render_labs(solutions: list[Path]) -> dict[Path, str]:
    """The student version (notebook JSON text) of each solution, generated by nbgrader."""
    with tempfile.TemporaryDirectory(prefix="course-labs-") as tmp:
        course_root = Path(tmp)
        released = _generate(_nbgrader_api(course_root), course_root, list(solutions))
        return {
            solution: nbformat.writes(nbformat.read(str(path), as_version=4)) + "\n"
            for solution, path in released.items()
        }


def build_labs(notebooks_dir: Path) -> list[Path]:
    """Write the lab of every solution under ``notebooks_dir``; return the written paths."""
    written = []
    for solution, text in render_labs(find_solutions(notebooks_dir)).items():
        lab = lab_path_for(solution)
        lab.parent.mkdir(parents=True, exist_ok=True)
        lab.write_text(text, encoding="utf-8")
        written.append(lab)
    return written


def stale_labs(notebooks_dir: Path) -> list[Path]:
    """Labs that are missing or differ from what nbgrader generates from their solution now."""
    stale = []
    for solution, text in render_labs(find_solutions(notebooks_dir)).items():
        lab = lab_path_for(solution)
        try:
            current = json.loads(lab.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            stale.append(lab)
            continue
        if current != json.loads(text):
            stale.append(lab)
    return stale


@dataclass(frozen=True)
class LabGrade:
    """One graded check of one student's lab."""

    student: str
    lab: str
    check: str  # the test cell's grade_id
    score: float
    max_score: float


def grade_submissions(submitted_dir: Path, settings: Settings, course_root: Path | None = None) -> list[LabGrade]:
    """Autograde ``submitted_dir/<student>/<lab>/<lab>.ipynb`` with nbgrader; every test cell's points.

    ``course_root`` (default ``build/nbgrader``) is nbgrader's course folder for this grading,
    emptied first: the gradebook and the autograded copies stay there for formgrader or a closer
    look. A server a submission started and did not stop (a model server of the 03 lab) is stopped
    afterwards; the MLflow tracking server stays, as after any lesson.
    """
    from nbgrader.api import Gradebook

    from course_utils.services import MLFLOW, status_all, stop

    notebooks_dir = settings.notebooks
    course_root = Path(course_root) if course_root is not None else settings.build / "nbgrader"

    submitted_dir = Path(submitted_dir)
    submissions = sorted(p for p in submitted_dir.glob("*/*/*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    if not submissions:
        raise CourseError(
            f"No submissions under {submitted_dir}: lay them out as nbgrader's submitted/ folder, "
            "<student>/<lab name>/<lab name>.ipynb, e.g. alice/04_lab_monitor_a_batch/04_lab_monitor_a_batch.ipynb"
        )
    solutions = {path.stem: path for path in find_solutions(notebooks_dir)}
    unknown = sorted({p.parent.name for p in submissions} - set(solutions))
    if unknown:
        raise CourseError(f"Submissions for unknown labs {unknown}: the labs are {sorted(solutions)}")
    misnamed = [str(p) for p in submissions if p.stem != p.parent.name]
    if misnamed:
        raise CourseError(f"Each lab's notebook keeps its name (<lab>/<lab>.ipynb); rename: {misnamed}")

    if submitted_dir.resolve().is_relative_to(course_root.resolve()):
        raise CourseError(
            f"{submitted_dir} is inside nbgrader's course folder {course_root}, which grading empties first: "
            "grade a copy of the submissions kept elsewhere"
        )
    shutil.rmtree(course_root, ignore_errors=True)
    shutil.copytree(submitted_dir, course_root / "submitted")
    _write_course_config(course_root)
    api = _nbgrader_api(course_root)
    labs = sorted({p.parent.name for p in submissions})
    _generate(api, course_root, [solutions[lab] for lab in labs])
    running_before = {service.name for service in status_all(settings) if service.running}
    try:
        for submission in submissions:
            student, lab = submission.parent.parent.name, submission.parent.name
            with _venv_tools_on_path():
                outcome = api.autograde(lab, student)
            if not outcome["success"]:
                raise CourseError(f"nbgrader autograde failed for {student}/{lab}:\n{outcome.get('log')}\n{outcome.get('error')}")
    finally:
        for service in status_all(settings):
            if service.running and service.name not in running_before and service.name != MLFLOW:
                stop(service.name, settings)

    grades = []
    with Gradebook(f"sqlite:///{course_root / 'gradebook.db'}") as gradebook:
        for submission in submissions:
            student, lab = submission.parent.parent.name, submission.parent.name
            order = _check_order(solutions[lab])
            notebook = gradebook.find_submission_notebook(lab, lab, student)
            for grade in sorted(notebook.grades, key=lambda g: order.index(g.name) if g.name in order else len(order)):
                score = grade.score if grade.score is not None else 0.0
                grades.append(LabGrade(student, lab, grade.name, float(score), float(grade.max_score)))
    return grades


def _check_order(solution: Path) -> list[str]:
    """The grade ids of a lab's test cells, in notebook order."""
    cells = nbformat.read(str(solution), as_version=4).cells
    return [c.metadata["nbgrader"]["grade_id"] for c in cells if c.metadata.get("nbgrader", {}).get("grade")]


def _write_course_config(course_root: Path) -> None:
    """An ``nbgrader_config.py``, so nbgrader's own commands and formgrader work on the same course folder."""
    (course_root / "nbgrader_config.py").write_text(
        "# Written by `course labs grade`: nbgrader's commands (generate_feedback, formgrader) run from here.\n"
        "c = get_config()  # noqa: F821 (nbgrader provides it)\n"
        f"c.CourseDirectory.root = {str(course_root)!r}\n"
        f"c.Execute.timeout = {_CELL_TIMEOUT_S}\n"
        "c.Execute.allow_errors = True\n",
        encoding="utf-8",
    )


def grade_table(grades: list[LabGrade]) -> str:
    """A per-check score table (student, lab, check, points), with each student's total per lab."""
    totals: dict[tuple[str, str], list[float]] = {}
    for grade in grades:
        total = totals.setdefault((grade.student, grade.lab), [0.0, 0.0])
        total[0] += grade.score
        total[1] += grade.max_score
    rows = [("student", "lab", "check", "points")]
    rows += [(g.student, g.lab, g.check, f"{g.score:g}/{g.max_score:g}") for g in grades]
    rows += [(student, lab, "TOTAL", f"{score:g}/{top:g}") for (student, lab), (score, top) in totals.items()]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    return "\n".join(
        "  ".join(value.ljust(width) for value, width in zip(row[:3], widths)) + "  " + row[3] for row in rows
    )


def write_grades_json(grades: list[LabGrade], path: Path) -> Path:
    """The grades as JSON: a list of {student, lab, check, score, max_score}."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([asdict(grade) for grade in grades], indent=2) + "\n", encoding="utf-8")
    return path

