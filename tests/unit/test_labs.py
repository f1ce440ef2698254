"""Labs generated from solutions (course_utils.labs) and graded checks (course_utils.checks)."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import nbformat
from nbstripout import strip_output
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from course_utils.checks import FILL_IN, FILL_IN_MESSAGE, GradeReport, Grader, is_fill_in
from course_utils.labs import (
    LabSourceError,
    build_labs,
    find_solutions,
    lab_path_for,
    render_lab,
    stale_labs,
)

IMPORTS = "import numpy as np\nfrom course_utils.checks import FILL_IN, Grader"
EXERCISE = """\
features = np.arange(10)
# HINT: scale the features to mean 0 and standard deviation 1
# BEGIN SOLUTION
mean = features.mean()
scaled = (features - mean) / features.std()
print("solution detail")
# END SOLUTION
print(scaled.round(2))"""


def _exercise_cell(source: str) -> nbformat.NotebookNode:
    return new_code_cell(source, metadata={"tags": ["exercise"]})


def _solution_notebook() -> nbformat.NotebookNode:
    imports = new_code_cell(IMPORTS, execution_count=1)
    imports.outputs = [nbformat.v4.new_output("stream", name="stdout", text="imported\n")]
    exercise = _exercise_cell(EXERCISE)
    exercise.execution_count = 2
    exercise.outputs = [nbformat.v4.new_output("stream", name="stdout", text="[-1.57 ...]\n")]
    exercise.metadata["execution"] = {"iopub.execute_input": "2024-01-01T00:00:00Z"}
    notebook = new_notebook(
        cells=[
            new_markdown_cell("# Scaling lab\nWhat you will learn: scaling."),
            imports,
            exercise,
            new_code_cell("assert abs(scaled.mean()) < 1e-9", metadata={"tags": ["solution-only"]}),
            new_markdown_cell("## Checks"),
            new_code_cell('grader = Grader("scaling")'),
        ],
        metadata={
            "kernelspec": {"name": "ml-in-production", "display_name": "ML in Production", "language": "python"},
            "papermill": {"duration": 3.2},
        },
    )
    return notebook


def _notebooks_tree(root: Path) -> Path:
    """A notebooks/ folder with one solution and one regular lesson notebook."""
    notebooks_dir = root / "notebooks"
    (notebooks_dir / "01_experimentation" / "solutions").mkdir(parents=True)
    nbformat.write(_solution_notebook(), notebooks_dir / "01_experimentation" / "solutions" / "01c_scaling.ipynb")
    nbformat.write(new_notebook(cells=[new_code_cell("1 + 1")]), notebooks_dir / "01_experimentation" / "01a_lesson.ipynb")
    return notebooks_dir


def _code_sources(notebook: nbformat.NotebookNode) -> list[str]:
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


# --- rendering ----------------------------------------------------------------------------


def test_exercise_region_becomes_todo_and_fill_in() -> None:
    lab = render_lab(_solution_notebook(), "01c_scaling.ipynb")
    exercise = _code_sources(lab)[1]
    assert exercise == (
        "features = np.arange(10)\n"
        "# TODO: scale the features to mean 0 and standard deviation 1\n"
        "mean = FILL_IN\n"
        "scaled = FILL_IN\n"
        "print(scaled.round(2))"
    )
    assert "solution detail" not in exercise and "BEGIN SOLUTION" not in exercise


def test_region_without_hint_gets_generic_todo_and_keeps_indentation() -> None:
    source = (
        "def add_one(values):\n"
        "    # BEGIN SOLUTION\n"
        "    shifted = [value + 1\n"
        "               for value in values]\n"
        "    return shifted\n"
        "    # END SOLUTION\n"
        "a, b = 1, 2\n"
        "# BEGIN SOLUTION\n"
        "a, b = b, a\n"
        "total: int = a + b\n"
        "for item in range(3):\n"
        "    inner = item\n"
        "a, b = b, a\n"
        "# END SOLUTION"
    )
    notebook = new_notebook(cells=[new_code_cell(IMPORTS), _exercise_cell(source)])
    lab_source = _code_sources(render_lab(notebook, "x.ipynb"))[1]
    assert lab_source.split("\n") == [
        "def add_one(values):",
        "    # TODO: write the code for this step (replace each FILL_IN).",
        "    shifted = FILL_IN",
        "    return FILL_IN",
        "a, b = 1, 2",
        "# TODO: write the code for this step (replace each FILL_IN).",
        "a, b = FILL_IN",
        "total = FILL_IN",
    ]


def test_solution_only_cells_dropped_markdown_kept_outputs_cleared() -> None:
    solution = _solution_notebook()
    lab = render_lab(solution, "01c_scaling.ipynb")

    sources = [cell.source for cell in lab.cells]
    assert not any("assert abs(scaled.mean())" in source for source in sources)
    assert "# Scaling lab\nWhat you will learn: scaling." in sources
    assert "## Checks" in sources
    assert len(lab.cells) == 1 + len(solution.cells) - 1  # header added, solution-only dropped
    for cell in lab.cells:
        if cell.cell_type == "code":
            assert cell.outputs == []
            assert cell.execution_count is None
            assert "execution" not in cell.metadata
    assert lab.cells[3].metadata["tags"] == ["exercise"]
    # The solution itself is not modified.
    assert solution.cells[2].outputs and "BEGIN SOLUTION" in solution.cells[2].source


def test_header_and_notebook_metadata() -> None:
    lab = render_lab(_solution_notebook(), "01c_scaling.ipynb")
    header = lab.cells[0]
    assert header.cell_type == "markdown"
    assert "Generated from `solutions/01c_scaling.ipynb` by `course labs build`" in header.source
    assert "edit the solution, not this file" in header.source
    assert lab.metadata["lab"] is True
    assert lab.metadata["kernelspec"]["name"] == "ml-in-production"
    assert "papermill" not in lab.metadata
    nbformat.validate(lab)


def test_render_is_deterministic_in_memory() -> None:
    solution = _solution_notebook()
    first = nbformat.writes(render_lab(solution, "a.ipynb"))
    second = nbformat.writes(render_lab(copy.deepcopy(solution), "a.ipynb"))
    assert first == second


def test_lab_cell_ids_are_positions_whatever_the_solution_ids() -> None:
    solution = _solution_notebook()
    expected = [str(i) for i in range(len(render_lab(solution, "a.ipynb").cells))]
    for cell in solution.cells:
        del cell["id"]  # nbformat 4.4 files have no cell ids
    solution.nbformat_minor = 4
    assert [cell.id for cell in render_lab(solution, "a.ipynb").cells] == expected


def test_committing_a_lab_through_nbstripout_changes_nothing() -> None:
    # A fresh clone holds what the nbstripout filter committed; the up-to-date check compares
    # a new render with it, so the filter must leave a rendered lab exactly as it is.
    lab = render_lab(_solution_notebook(), "a.ipynb")
    committed = strip_output(copy.deepcopy(lab), keep_output=False, keep_count=False, keep_id=False)
    assert nbformat.writes(committed) == nbformat.writes(lab)


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "tags", "expected"),
    [
        ("# BEGIN SOLUTION\nx = 1", ["exercise"], "`# BEGIN SOLUTION` on line 1 has no matching `# END SOLUTION`"),
        (
            "# BEGIN SOLUTION\nx = 1\n# BEGIN SOLUTION\ny = 2\n# END SOLUTION",
            ["exercise"],
            "`# BEGIN SOLUTION` on line 3 is nested inside the region opened on line 1",
        ),
        ("x = 1\n# END SOLUTION", ["exercise"], "`# END SOLUTION` on line 2 has no `# BEGIN SOLUTION` before it"),
        ("# BEGIN SOLUTION\nx = 1\n# END SOLUTION", [], "line 1 has a solution marker but the cell is not tagged `exercise`"),
        ("x = 1\n#BEGIN SOLUTION:\nx = 2", ["exercise"], "line 2 looks like a solution marker"),
        ("x = 1", ["exercise"], "tagged `exercise` but has no `# BEGIN SOLUTION` ... `# END SOLUTION` region"),
        (
            "for i in range(3):\n    # BEGIN SOLUTION\n    print(i)\n    # END SOLUTION",
            ["exercise"],
            "the lab version of this cell is not valid Python",
        ),
    ],
    ids=["begin-without-end", "nested-begin", "end-without-begin", "untagged-cell", "malformed-marker", "no-region", "empty-block"],
)
def test_bad_markers_raise_lab_source_error(source: str, tags: list[str], expected: str) -> None:
    notebook = new_notebook(
        cells=[new_markdown_cell("# Title"), new_code_cell(IMPORTS), new_code_cell(source, metadata={"tags": tags})]
    )
    with pytest.raises(LabSourceError) as raised:
        render_lab(notebook, "02b_registry.ipynb")
    message = str(raised.value)
    assert message.startswith("solutions/02b_registry.ipynb, cell 2: ")
    assert expected in message
    assert raised.value.cell_index == 2
    assert isinstance(raised.value, ValueError)


def test_fill_in_without_import_is_an_error() -> None:
    notebook = new_notebook(cells=[new_code_cell("import numpy as np"), _exercise_cell("# BEGIN SOLUTION\nx = 1\n# END SOLUTION")])
    with pytest.raises(LabSourceError, match="add `from course_utils.checks import FILL_IN`"):
        render_lab(notebook, "x.ipynb")


def test_build_error_names_the_full_path(tmp_path: Path) -> None:
    notebooks_dir = _notebooks_tree(tmp_path)
    solution_path = notebooks_dir / "01_experimentation" / "solutions" / "01c_scaling.ipynb"
    solution = nbformat.read(solution_path, as_version=4)
    solution.cells[2].source = "# BEGIN SOLUTION\nx = 1"
    nbformat.write(solution, solution_path)
    with pytest.raises(LabSourceError, match=f"^{solution_path}, cell 2: .*no matching"):
        build_labs(notebooks_dir)


# --- files --------------------------------------------------------------------------------


def test_lab_path_for() -> None:
    solution = Path("notebooks/01_experimentation/solutions/01c_scaling.ipynb")
    assert lab_path_for(solution) == Path("notebooks/01_experimentation/labs/01c_scaling.ipynb")
    with pytest.raises(ValueError, match="is not a solution notebook"):
        lab_path_for(Path("notebooks/01_experimentation/01a_lesson.ipynb"))


def test_find_solutions_only_in_solutions_folders(tmp_path: Path) -> None:
    notebooks_dir = _notebooks_tree(tmp_path)
    checkpoint = notebooks_dir / "01_experimentation" / "solutions" / ".ipynb_checkpoints"
    checkpoint.mkdir()
    (checkpoint / "01c_scaling-checkpoint.ipynb").write_text("{}")
    assert find_solutions(notebooks_dir) == [notebooks_dir / "01_experimentation" / "solutions" / "01c_scaling.ipynb"]
    assert find_solutions(tmp_path / "missing") == []
    with pytest.raises(NotADirectoryError, match="is a file"):
        find_solutions(notebooks_dir / "01_experimentation" / "01a_lesson.ipynb")


def test_build_twice_is_byte_identical(tmp_path: Path) -> None:
    notebooks_dir = _notebooks_tree(tmp_path)
    written = build_labs(notebooks_dir)
    lab_path = notebooks_dir / "01_experimentation" / "labs" / "01c_scaling.ipynb"
    assert written == [lab_path]
    first = lab_path.read_bytes()
    assert build_labs(notebooks_dir) == [lab_path]
    assert lab_path.read_bytes() == first
    assert not (notebooks_dir / "01_experimentation" / "labs" / "01a_lesson.ipynb").exists()
    lab = nbformat.read(lab_path, as_version=4)
    assert lab.metadata["lab"] is True
    assert "scaled = FILL_IN" in lab.cells[3].source


def test_stale_labs_missing_changed_and_up_to_date(tmp_path: Path) -> None:
    notebooks_dir = _notebooks_tree(tmp_path)
    lab_path = notebooks_dir / "01_experimentation" / "labs" / "01c_scaling.ipynb"
    assert stale_labs(notebooks_dir) == [lab_path]  # never built

    build_labs(notebooks_dir)
    assert stale_labs(notebooks_dir) == []

    solution_path = notebooks_dir / "01_experimentation" / "solutions" / "01c_scaling.ipynb"
    solution = nbformat.read(solution_path, as_version=4)
    solution.cells[0].source += "\nA new sentence."
    nbformat.write(solution, solution_path)
    assert stale_labs(notebooks_dir) == [lab_path]

    build_labs(notebooks_dir)
    assert stale_labs(notebooks_dir) == []
    lab_path.write_text(lab_path.read_text().replace("scaled = FILL_IN", "scaled = 42"))
    assert stale_labs(notebooks_dir) == [lab_path]  # a hand-edited lab is stale too


def test_executing_solution_outputs_does_not_make_lab_stale(tmp_path: Path) -> None:
    notebooks_dir = _notebooks_tree(tmp_path)
    build_labs(notebooks_dir)
    solution_path = notebooks_dir / "01_experimentation" / "solutions" / "01c_scaling.ipynb"
    solution = nbformat.read(solution_path, as_version=4)
    solution.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="other\n")]
    solution.cells[1].execution_count = 7
    nbformat.write(solution, solution_path)
    assert stale_labs(notebooks_dir) == []


# --- FILL_IN ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "use",
    [
        lambda: FILL_IN(),
        lambda: FILL_IN + 1,
        lambda: 1 + FILL_IN,
        lambda: FILL_IN * 2,
        lambda: FILL_IN < 3,
        lambda: FILL_IN.fit,
        lambda: bool(FILL_IN),
        lambda: list(FILL_IN),
        lambda: len(FILL_IN),
        lambda: FILL_IN[0],
        lambda: f"{FILL_IN:.2f}",
        lambda: str(FILL_IN),
        lambda: float(FILL_IN),
        lambda: -FILL_IN,
    ],
    ids=["call", "add", "radd", "mul", "lt", "attr", "bool", "iter", "len", "getitem", "format", "str", "float", "neg"],
)
def test_fill_in_raises_helpful_error_on_use(use) -> None:
    with pytest.raises(NotImplementedError) as raised:
        use()
    assert str(raised.value) == (
        "This is a FILL_IN placeholder: replace it with your code (see the TODO above)."
    )
    assert str(raised.value) == FILL_IN_MESSAGE


def test_fill_in_identity_repr_and_copies() -> None:
    assert repr(FILL_IN) == "FILL_IN"
    assert is_fill_in(FILL_IN)
    assert not is_fill_in(None) and not is_fill_in("FILL_IN")
    assert copy.deepcopy(FILL_IN) is FILL_IN
    assert pickle.loads(pickle.dumps(FILL_IN)) is FILL_IN
    assert not hasattr(FILL_IN, "_repr_html_")  # display probes see a plain miss


def test_fill_in_in_numpy_arithmetic_raises() -> None:
    np = pytest.importorskip("numpy")
    with pytest.raises(NotImplementedError, match="FILL_IN placeholder"):
        np.arange(3) + FILL_IN


# --- Grader -------------------------------------------------------------------------------


def test_grader_prints_pass_and_fail_with_hint(capsys: pytest.CaptureFixture[str]) -> None:
    grader = Grader("scaling lab")
    assert grader.check("mean is zero", lambda: abs(0.0) < 1e-9, hint="subtract the mean") is True
    assert grader.check("std is one", False, hint="divide by the standard deviation") is False
    assert capsys.readouterr().out == (
        "✅ mean is zero\n"
        "❌ std is one — hint: divide by the standard deviation\n"
    )
    report = grader.summary()
    assert capsys.readouterr().out == "1/2 checks passed (scaling lab)\n"
    assert report == GradeReport(lab="scaling lab", passed=1, total=2, failures=["std is one"])
    assert not report.all_passed


def test_exception_in_check_is_a_failure_with_hint(capsys: pytest.CaptureFixture[str]) -> None:
    grader = Grader("scaling lab")
    scaled = FILL_IN
    assert grader.check("scaled has ten values", lambda: len(scaled) == 10, hint="keep every feature") is False
    columns: dict[str, int] = {}
    assert grader.check("lookup works", lambda: columns["missing"] > 0, hint="use the column name") is False
    out = capsys.readouterr().out
    assert out == (
        "❌ scaled has ten values — hint: keep every feature (your code raised NotImplementedError: "
        f"{FILL_IN_MESSAGE})\n"
        "❌ lookup works — hint: use the column name (your code raised KeyError: 'missing')\n"
    )
    assert "Traceback" not in out
    assert grader.summary().failures == ["scaled has ten values", "lookup works"]


def test_rechecking_replaces_the_earlier_result(capsys: pytest.CaptureFixture[str]) -> None:
    grader = Grader("lab")
    grader.check("value set", lambda: False, hint="set it")
    grader.check("value set", lambda: True, hint="set it")
    assert grader.summary() == GradeReport(lab="lab", passed=1, total=1, failures=[])


def test_check_requires_description_and_hint() -> None:
    grader = Grader("lab")
    with pytest.raises(ValueError, match="needs a hint"):
        grader.check("something", True, hint=" ")
    with pytest.raises(ValueError, match="needs a description"):
        grader.check("", True, hint="a hint")


def test_assert_all_passed(capsys: pytest.CaptureFixture[str]) -> None:
    grader = Grader("lab")
    with pytest.raises(AssertionError, match="no checks were run"):
        grader.assert_all_passed()
    grader.check("first", True, hint="h")
    assert grader.assert_all_passed().all_passed
    grader.check("second", lambda: 1 / 0, hint="h")
    grader.check("third", False, hint="h")
    with pytest.raises(AssertionError) as raised:
        grader.assert_all_passed()
    assert str(raised.value) == "lab: 2 of 3 checks failed: second; third"
