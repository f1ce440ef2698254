"""The labs on nbgrader (course_utils.labs): solutions marked up for nbgrader, student versions it generates."""

from __future__ import annotations

import ast
import builtins
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from course_utils.config import load_settings
from course_utils.errors import CourseError
from course_utils.labs import (
    LabGrade,
    LabSourceError,
    find_solutions,
    grade_submissions,
    grade_table,
    lab_path_for,
    render_labs,
)

REPO_ROOT = Path(__file__).parents[2]
NOTEBOOKS = REPO_ROOT / "notebooks"
SOLUTIONS = find_solutions(NOTEBOOKS)
SOLUTION_RE = re.compile(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", re.DOTALL)


def _grading(cell: nbformat.NotebookNode) -> dict:
    return cell.metadata.get("nbgrader", {})


def _answer_lines(solution: nbformat.NotebookNode) -> list[str]:
    """The code lines of every answer, stripped (short ones like `search_space,` say nothing)."""
    lines = []
    for cell in solution.cells:
        for region in SOLUTION_RE.findall(cell.source):
            lines += [line.strip() for line in region.split("\n") if len(line.strip()) >= 20]
    return lines


def test_there_are_seven_labs() -> None:
    assert [path.stem for path in SOLUTIONS] == [
        "01_lab_experiment_tracking", "01_lab_tuning", "02_lab_custom_pyfunc", "02_lab_registry_and_promotion",
        "03_lab_batch_scoring", "03_lab_real_time_serving", "04_lab_monitor_a_batch",
    ]


@pytest.mark.parametrize("solution_path", SOLUTIONS, ids=lambda p: p.stem)
def test_solution_is_nbgrader_markup_with_titled_exercises_and_graded_checks(solution_path: Path) -> None:
    solution = nbformat.read(str(solution_path), as_version=4)
    exercises = [c for c in solution.cells if _grading(c).get("solution")]
    checks = [c for c in solution.cells if _grading(c).get("grade")]
    assert exercises and checks
    for cell in exercises:
        assert SOLUTION_RE.search(cell.source), "an exercise keeps given code around a ### BEGIN/END SOLUTION region"
        assert cell.metadata["lab"]["exercise"].startswith("Exercise ")
        assert len(cell.metadata["lab"]["hints"]) == 2
    for cell in checks:
        grading = _grading(cell)
        assert grading["locked"] and grading["points"] == 1 and cell.cell_type == "code"
        assert cell.source.startswith("# Check ") and "assert" in cell.source
    grade_ids = [_grading(c)["grade_id"] for c in solution.cells if _grading(c)]
    assert len(grade_ids) == len(set(grade_ids)), "nbgrader needs unique grade ids"
    given = [c for c in solution.cells if c.cell_type == "code" and not _grading(c)]
    assert all("parameters" in c.metadata.get("tags", []) or "solution-only" in c.metadata.get("tags", []) for c in given), (
        "every other code cell is read-only (locked)"
    )


@pytest.mark.parametrize("solution_path", SOLUTIONS, ids=lambda p: p.stem)
def test_hints_and_check_messages_never_give_the_answer_line(solution_path: Path) -> None:
    solution = nbformat.read(str(solution_path), as_version=4)
    answers = _answer_lines(solution)
    assert answers
    hints = [hint for c in solution.cells for hint in c.metadata.get("lab", {}).get("hints", [])]
    messages = [c.source for c in solution.cells if _grading(c).get("grade")]
    lab_text = lab_path_for(solution_path).read_text()
    for answer in answers:
        assert not any(answer in text for text in hints + messages), f"a hint or check gives away: {answer}"
        assert answer not in nbformat.writes(nbformat.reads(lab_text, as_version=4)), f"the lab leaks: {answer}"
    assert "### BEGIN SOLUTION" not in lab_text


@pytest.mark.parametrize("solution_path", SOLUTIONS, ids=lambda p: p.stem)
def test_untouched_lab_stops_at_each_exercise_naming_it_and_its_hint(solution_path: Path) -> None:
    lab = nbformat.read(str(lab_path_for(solution_path)), as_version=4)
    exercises = [c for c in lab.cells if _grading(c).get("solution")]
    assert [c.metadata["lab"]["exercise"] for c in exercises] == [
        c.metadata["lab"]["exercise"] for c in nbformat.read(str(solution_path), as_version=4).cells if _grading(c).get("solution")
    ]
    for cell in exercises:
        stubs = [line.strip() for line in cell.source.split("\n") if line.strip().startswith("raise NotImplementedError(")]
        assert stubs, f"{cell.metadata['lab']['exercise']}: no stub"
        for stub in stubs:
            with pytest.raises(NotImplementedError) as raised:
                exec(stub, {})  # the stub line itself, exactly as the learner's kernel runs it
            title, (nudge, _) = cell.metadata["lab"]["exercise"], cell.metadata["lab"]["hints"]
            assert str(raised.value).startswith(f"{title} is not done yet") and nudge in str(raised.value)
        position = lab.cells.index(cell)
        assert cell.metadata["lab"]["hints"][1] in lab.cells[position + 1].source, "the second hint sits below the cell"
    assert not any("solution-only" in c.metadata.get("tags", []) for c in lab.cells)
    first_code = [c for c in lab.cells if c.cell_type == "code"]
    before_first_exercise = first_code[: first_code.index(exercises[0])]
    assert not any("NotImplementedError" in c.source for c in before_first_exercise)


def test_registry_lab_grades_making_the_baseline_the_champion() -> None:
    solution = nbformat.read(str(NOTEBOOKS / "02_model_management/solutions/02_lab_registry_and_promotion.ipynb"), as_version=4)
    titles = [c.metadata["lab"]["exercise"] for c in solution.cells if _grading(c).get("solution")]
    assert "Exercise 2 · Make the baseline the champion" in titles
    checks = [c.source for c in solution.cells if _grading(c).get("grade")]
    assert any("champion_before_promotion == baseline_version" in source for source in checks)


def _tiny_solution(tmp_path: Path, exercise_metadata: dict | None) -> Path:
    path = tmp_path / "notebooks" / "09_module" / "solutions" / "09_lab_tiny.ipynb"
    path.parent.mkdir(parents=True)
    grading = {"grade": False, "grade_id": "exercise_1", "locked": False, "schema_version": 3, "solution": True, "task": False}
    exercise = new_code_cell("### BEGIN SOLUTION\nanswer = 42\n### END SOLUTION\nanswer", metadata={"nbgrader": grading})
    if exercise_metadata is not None:
        exercise.metadata["lab"] = exercise_metadata
    check = new_code_cell("# Check 1 · the answer\nassert answer == 42, 'think'", metadata={"nbgrader": {
        "grade": True, "grade_id": "check_1", "locked": True, "points": 1, "schema_version": 3, "solution": False, "task": False}})
    record = new_code_cell("print('solution only')", metadata={"tags": ["solution-only"]})
    notebook = new_notebook(cells=[new_markdown_cell("# Tiny lab"), exercise, check, record],
                            metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(notebook, str(path))
    return path


def test_render_uses_nbgrader_and_the_hints_layer(tmp_path: Path) -> None:
    solution = _tiny_solution(tmp_path, {"exercise": "Exercise 1 · The answer", "hints": ["a number", "Douglas Adams"]})
    text = render_labs([solution])[solution]
    lab = nbformat.reads(text, as_version=4)
    sources = [c.source for c in lab.cells]
    assert "answer = 42" not in text and "solution only" not in text
    assert any(s.startswith("raise NotImplementedError('Exercise 1 · The answer is not done yet") for s in sources)
    check = next(c for c in lab.cells if _grading(c).get("grade"))
    assert check.metadata["editable"] is False and _grading(check)["checksum"], "nbgrader locked and checksummed it"
    assert [c.id for c in lab.cells] == [str(i) for i in range(len(lab.cells))]


def test_a_solution_cell_without_title_and_hints_is_refused(tmp_path: Path) -> None:
    solution = _tiny_solution(tmp_path, None)
    with pytest.raises(LabSourceError, match='needs metadata "lab"'):
        render_labs([solution])


def test_grade_refuses_an_empty_or_misnamed_submissions_folder(tmp_path: Path) -> None:
    with pytest.raises(CourseError, match="No submissions under"):
        grade_submissions(tmp_path, load_settings(), tmp_path / "course")
    wrong = tmp_path / "alice" / "05_lab_nonexistent" / "05_lab_nonexistent.ipynb"
    wrong.parent.mkdir(parents=True)
    shutil.copyfile(SOLUTIONS[0], wrong)
    with pytest.raises(CourseError, match="unknown labs"):
        grade_submissions(tmp_path, load_settings(), tmp_path / "course")


def test_grade_table_lists_every_check_and_each_total() -> None:
    table = grade_table([
        LabGrade("alice", "04_lab_x", "check_1_a", 1.0, 1.0),
        LabGrade("alice", "04_lab_x", "check_2_b", 0.0, 1.0),
    ])
    lines = table.splitlines()
    assert lines[1].split() == ["alice", "04_lab_x", "check_1_a", "1/1"]
    assert lines[2].split() == ["alice", "04_lab_x", "check_2_b", "0/1"]
    assert lines[3].split() == ["alice", "04_lab_x", "TOTAL", "1/2"]


# --- every graded check fails on the untouched lab -----------------------------------------
# A static proof for all seven labs, cheap enough for every run (tests/e2e/test_labs_grading.py
# autogrades the 04 lab for real). A check fails on the untouched lab when it reads a name that
# the untouched lab never defines, or one computed from such a name (the cell stops there).

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
_STUB = "raise NotImplementedError("
# Checks that read what an exercise writes outside Python: the Delta table of exercise 3, at
# `predictions_path`, which the untouched lab never writes (its writer is the exercise's answer).
_STATE_CHECKS = {"03_lab_batch_scoring": {"check_2_", "check_3_", "check_4_"}}


def _scope_nodes(node: ast.AST):
    yield node
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, _SCOPES):
            yield from _scope_nodes(child)


def _stored(statement: ast.stmt) -> set[str]:
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {statement.name}
    names = set()
    for node in _scope_nodes(statement):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
    return names


def _loaded(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _bound_inside(node: ast.AST) -> set[str]:
    """Arguments, comprehension variables and local assignments of nested scopes."""
    return {n.arg for n in ast.walk(node) if isinstance(n, ast.arg)} | {
        n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    }


def _checks_failing_untouched(lab: nbformat.NotebookNode) -> dict[str, bool]:
    """For each test cell: does it read a name the untouched lab leaves undefined or computes from one?"""
    tainted: set[str] = set()
    bound = set(dir(builtins))
    verdicts = {}
    for cell in lab.cells:
        if cell.cell_type != "code":
            continue
        tree = ast.parse(cell.source)
        if _grading(cell).get("grade"):
            undefined = _loaded(tree) - bound - _bound_inside(tree)
            verdicts[_grading(cell)["grade_id"]] = bool(_loaded(tree) & tainted or undefined)
            continue
        stopped = False  # a statement raised: the rest of the cell does not run
        for statement in tree.body:
            names = _stored(statement)
            source = ast.get_source_segment(cell.source, statement)
            undefined = _loaded(statement) - bound - _bound_inside(statement) - names
            if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if _STUB in source or _loaded(statement) & tainted:
                    tainted |= names  # defined, but raises when called
            elif stopped or _STUB in source or _loaded(statement) & tainted or undefined:
                tainted |= names
                stopped = True
            bound |= names
    return verdicts


@pytest.mark.parametrize("solution_path", SOLUTIONS, ids=lambda p: p.stem)
def test_every_graded_check_fails_on_the_untouched_lab(solution_path: Path) -> None:
    lab = nbformat.read(str(lab_path_for(solution_path)), as_version=4)
    verdicts = _checks_failing_untouched(lab)
    assert len(verdicts) == sum(1 for c in lab.cells if _grading(c).get("grade")) >= 5
    state_checks = _STATE_CHECKS.get(solution_path.stem, set())
    passing = [check for check, fails in verdicts.items() if not fails and not check.startswith(tuple(state_checks))]
    assert not passing, f"these checks could pass on the untouched lab: {passing}"


def test_the_static_proof_catches_a_check_that_passes_untouched() -> None:
    lab = new_notebook(cells=[
        new_code_cell("given = 1"),
        new_code_cell("raise NotImplementedError('Exercise 1 · x is not done yet')\nanswer", metadata={"nbgrader": {"solution": True}}),
        new_code_cell("derived = answer + 1", metadata={"nbgrader": {"locked": True}}),
        new_code_cell("assert given == 1", metadata={"nbgrader": {"grade": True, "grade_id": "weak"}}),
        new_code_cell("assert derived == 43", metadata={"nbgrader": {"grade": True, "grade_id": "real"}}),
    ])
    assert _checks_failing_untouched(lab) == {"weak": False, "real": True}


def test_cli_labs_grade_needs_a_folder_and_the_others_take_none(capsys) -> None:
    from course_utils.cli import main

    assert main(["labs", "grade"]) == 2
    assert "needs the submissions folder" in capsys.readouterr().err
    assert main(["labs", "check", "submitted"]) == 2
    assert "takes no folder" in capsys.readouterr().err


def test_grade_refuses_submissions_inside_the_folder_it_empties(tmp_path: Path) -> None:
    course = tmp_path / "course"
    inside = course / "submitted" / "alice" / "04_lab_monitor_a_batch" / "04_lab_monitor_a_batch.ipynb"
    inside.parent.mkdir(parents=True)
    shutil.copyfile(SOLUTIONS[-1], inside)
    with pytest.raises(CourseError, match="grading empties first"):
        grade_submissions(course / "submitted", load_settings(), course)
    assert inside.is_file(), "no submission is lost"
