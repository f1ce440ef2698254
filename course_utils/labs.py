"""Generate lab notebooks from solution notebooks (the solution is the single source).

A solution lives in ``notebooks/<module>/solutions/<name>.ipynb``; its lab is written to
``notebooks/<module>/labs/<name>.ipynb``. In a solution, a code cell tagged ``exercise``
holds one or more regions::

    # HINT: fit the scaler on the training features only
    # BEGIN SOLUTION
    scaler = StandardScaler().fit(train_features)
    scaled_train = scaler.transform(train_features)
    # END SOLUTION

which the lab shows as::

    # TODO: fit the scaler on the training features only
    scaler = FILL_IN
    scaled_train = FILL_IN

The rules are deliberately simple and predictable:

- the optional ``# HINT: ...`` line just before ``# BEGIN SOLUTION`` becomes the TODO
  text (otherwise a generic TODO is used);
- inside a region, each line at the marker's indentation that assigns to names
  (``x = ...``, ``a, b = ...``, ``model.alpha = ...``, ``x: int = ...``) becomes
  ``<targets> = FILL_IN`` (once per distinct target), ``return <expr>`` becomes
  ``return FILL_IN``, and every other line is dropped;
- cells tagged ``solution-only`` are dropped; markdown and raw cells are kept;
- outputs and execution counts are cleared, and a first markdown cell says where the lab
  comes from. The notebook metadata (kernel) is copied and ``lab: true`` is added.

Mistakes in the markers raise :class:`LabSourceError` naming the notebook, the cell
(counting from 0) and what is wrong, so a solution never leaks into its lab.

Example:
    >>> build_labs(Path("notebooks"))  # doctest: +SKIP
    [PosixPath('notebooks/01_experimentation/labs/01c_tuning.ipynb')]
"""

from __future__ import annotations

import ast
import copy
import json
import keyword
import re
from pathlib import Path

import nbformat

from course_utils.errors import CourseError

__all__ = [
    "EXERCISE_TAG",
    "SOLUTION_ONLY_TAG",
    "LabSourceError",
    "build_labs",
    "find_solutions",
    "lab_path_for",
    "render_lab",
    "stale_labs",
]

EXERCISE_TAG = "exercise"
SOLUTION_ONLY_TAG = "solution-only"
BEGIN_MARKER = "# BEGIN SOLUTION"
END_MARKER = "# END SOLUTION"
HINT_PREFIX = "# HINT:"
GENERIC_TODO = "# TODO: write the code for this step (replace each FILL_IN)."
FILL_IN_IMPORT = "from course_utils.checks import FILL_IN"
BUILD_COMMAND = ".venv/bin/course labs build"

_SOLUTIONS_DIR = "solutions"
_LABS_DIR = "labs"
# Cell metadata written by executors and front ends; never copied into a lab.
_VOLATILE_CELL_METADATA = ("execution", "ExecuteTime", "papermill", "collapsed", "scrolled")

_BEGIN_RE = re.compile(r"^\s*#\s*BEGIN\s+SOLUTION\s*$")
_END_RE = re.compile(r"^\s*#\s*END\s+SOLUTION\s*$")
# Anything that merely looks like a marker ("#BEGIN SOLUTION:", "# end solution") is an
# error rather than ordinary text, because ignoring it would leak the solution.
_MARKER_LIKE_RE = re.compile(r"#.*\b(BEGIN|END)[\s_-]*SOLUTION\b", re.IGNORECASE)
_TARGET = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_ASSIGNMENT_RE = re.compile(rf"^(?P<targets>{_TARGET}(?:\s*,\s*{_TARGET})*)\s*(?::[^=]*)?=(?!=)")
_RETURN_RE = re.compile(r"^return\s+\S")
_FILL_IN_IMPORT_RE = re.compile(r"^\s*(from\s+\S+\s+)?import\s+.*\bFILL_IN\b", re.MULTILINE)


class LabSourceError(CourseError, ValueError):
    """A solution notebook whose markers cannot be turned into a lab."""

    def __init__(self, notebook: str, cell_index: int | None, problem: str) -> None:
        self.notebook = notebook
        self.cell_index = cell_index
        self.problem = problem
        where = notebook if cell_index is None else f"{notebook}, cell {cell_index}"
        super().__init__(f"{where}: {problem}")


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
        raise NotADirectoryError(
            f"{notebooks_dir} is a file: pass the course's notebooks/ folder"
        )
    return sorted(
        path
        for path in notebooks_dir.rglob("*.ipynb")
        if path.parent.name == _SOLUTIONS_DIR and ".ipynb_checkpoints" not in path.parts
    )


def render_lab(solution: nbformat.NotebookNode, source_name: str) -> nbformat.NotebookNode:
    """The lab notebook for a solution notebook (``source_name`` is its file name)."""
    file_name = Path(source_name).name
    notebook_label = f"{_SOLUTIONS_DIR}/{file_name}"

    lab = nbformat.v4.new_notebook()
    lab.metadata = _lab_metadata(solution.metadata)
    header = nbformat.v4.new_markdown_cell(
        f"> Generated from `{notebook_label}` by `course labs build` — "
        "edit the solution, not this file."
    )
    lab.cells.append(header)

    uses_fill_in = False
    for index, cell in enumerate(solution.cells):
        source = _source_text(cell)
        tags = set(cell.get("metadata", {}).get("tags", []))
        if cell.cell_type != "code":
            lab.cells.append(_copy_cell(cell, source, index))
            continue
        if EXERCISE_TAG in tags:
            lab_source = _render_exercise_source(source, notebook_label, index)
            uses_fill_in = uses_fill_in or "FILL_IN" in lab_source
        else:
            _reject_markers(source, notebook_label, index)
            lab_source = source
        if SOLUTION_ONLY_TAG in tags:
            continue
        lab.cells.append(_copy_cell(cell, lab_source, index))

    kept_code = "\n".join(_source_text(c) for c in lab.cells if c.cell_type == "code")
    if uses_fill_in and not _FILL_IN_IMPORT_RE.search(kept_code):
        raise LabSourceError(
            notebook_label,
            None,
            f"the lab uses FILL_IN but no cell kept in the lab imports it: "
            f"add `{FILL_IN_IMPORT}` to the imports cell",
        )
    # Cell ids are their positions, as the nbstripout filter rewrites them on commit: a lab
    # rendered now is then byte-identical to the committed one in a fresh clone.
    for position, lab_cell in enumerate(lab.cells):
        lab_cell.id = str(position)
    return lab


def build_labs(notebooks_dir: Path) -> list[Path]:
    """Write the lab of every solution under ``notebooks_dir``; return the written paths."""
    written: list[Path] = []
    for solution_path in find_solutions(notebooks_dir):
        lab = _render_file(solution_path)
        lab_path = lab_path_for(solution_path)
        lab_path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(lab, str(lab_path))
        written.append(lab_path)
    return written


def stale_labs(notebooks_dir: Path) -> list[Path]:
    """Labs that are missing or differ from what their solution renders to now."""
    stale: list[Path] = []
    for solution_path in find_solutions(notebooks_dir):
        lab_path = lab_path_for(solution_path)
        expected = json.loads(nbformat.writes(_render_file(solution_path)))
        try:
            current = json.loads(lab_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            stale.append(lab_path)
            continue
        if current != expected:
            stale.append(lab_path)
    return stale


def _render_file(solution_path: Path) -> nbformat.NotebookNode:
    """Read and render one solution file; errors name its full path."""
    solution = nbformat.read(str(solution_path), as_version=4)
    try:
        return render_lab(solution, solution_path.name)
    except LabSourceError as error:
        raise LabSourceError(str(solution_path), error.cell_index, error.problem) from None


def _lab_metadata(solution_metadata: dict) -> nbformat.NotebookNode:
    """The solution's kernel metadata plus the ``lab: true`` marker."""
    metadata = nbformat.NotebookNode()
    for key in ("kernelspec", "language_info"):
        if key in solution_metadata:
            metadata[key] = copy.deepcopy(solution_metadata[key])
    metadata["lab"] = True
    return metadata


def _source_text(cell: nbformat.NotebookNode) -> str:
    """A cell's source as one string (nbformat allows a list of lines on disk)."""
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _copy_cell(cell: nbformat.NotebookNode, source: str, index: int) -> nbformat.NotebookNode:
    """A clean copy of a cell with a new source, no outputs and a deterministic id."""
    metadata = {
        key: copy.deepcopy(value)
        for key, value in cell.get("metadata", {}).items()
        if key not in _VOLATILE_CELL_METADATA
    }
    if cell.cell_type == "code":
        new_cell = nbformat.v4.new_code_cell(source, metadata=metadata)
    elif cell.cell_type == "markdown":
        new_cell = nbformat.v4.new_markdown_cell(source, metadata=metadata)
        if "attachments" in cell:
            new_cell.attachments = copy.deepcopy(cell.attachments)
    else:
        new_cell = nbformat.v4.new_raw_cell(source, metadata=metadata)
    return new_cell


def _reject_markers(source: str, notebook_label: str, index: int) -> None:
    """Raise if a cell that is not tagged ``exercise`` contains solution markers."""
    for line_number, line in enumerate(source.split("\n"), start=1):
        if _MARKER_LIKE_RE.search(line):
            raise LabSourceError(
                notebook_label,
                index,
                f"line {line_number} has a solution marker but the cell is not tagged "
                f"`{EXERCISE_TAG}`: add the tag or remove the marker",
            )


def _render_exercise_source(source: str, notebook_label: str, index: int) -> str:
    """Replace every marked region of an exercise cell by its TODO and FILL_IN lines."""
    lines = source.split("\n")
    output: list[str] = []
    region_start: int | None = None  # line number of the open BEGIN marker
    region_indent = ""
    region_lines: list[str] = []
    todo = GENERIC_TODO
    found_region = False

    for line_number, line in enumerate(lines, start=1):
        if _BEGIN_RE.match(line):
            if region_start is not None:
                raise LabSourceError(
                    notebook_label,
                    index,
                    f"`{BEGIN_MARKER}` on line {line_number} is nested inside the region "
                    f"opened on line {region_start}: close that one with `{END_MARKER}` first",
                )
            region_start = line_number
            region_indent = line[: len(line) - len(line.lstrip())]
            region_lines = []
            todo = GENERIC_TODO
            if output and output[-1].strip().startswith(HINT_PREFIX):
                hint = output.pop().strip()[len(HINT_PREFIX) :].strip()
                todo = f"# TODO: {hint}" if hint else GENERIC_TODO
        elif _END_RE.match(line):
            if region_start is None:
                raise LabSourceError(
                    notebook_label,
                    index,
                    f"`{END_MARKER}` on line {line_number} has no `{BEGIN_MARKER}` before it",
                )
            output.append(region_indent + todo)
            output.extend(region_indent + stub for stub in _stub_lines(region_lines, region_indent))
            region_start = None
            found_region = True
        elif _MARKER_LIKE_RE.search(line):
            raise LabSourceError(
                notebook_label,
                index,
                f"line {line_number} looks like a solution marker but is not exactly "
                f"`{BEGIN_MARKER}` or `{END_MARKER}`",
            )
        elif region_start is not None:
            region_lines.append(line)
        else:
            output.append(line)

    if region_start is not None:
        raise LabSourceError(
            notebook_label,
            index,
            f"`{BEGIN_MARKER}` on line {region_start} has no matching `{END_MARKER}`",
        )
    if not found_region:
        raise LabSourceError(
            notebook_label,
            index,
            f"the cell is tagged `{EXERCISE_TAG}` but has no "
            f"`{BEGIN_MARKER}` ... `{END_MARKER}` region",
        )
    lab_source = "\n".join(output)
    _check_still_python(source, lab_source, notebook_label, index)
    return lab_source


def _stub_lines(region_lines: list[str], indent: str) -> list[str]:
    """The FILL_IN lines for a region: one per distinct assignment, plus ``return``."""
    stubs: list[str] = []
    for line in region_lines:
        if not line.startswith(indent) or line[len(indent) : len(indent) + 1].isspace():
            continue  # only statements at the marker's own indentation
        statement = line[len(indent) :]
        assignment = _ASSIGNMENT_RE.match(statement)
        if assignment:
            names = [name.strip() for name in assignment.group("targets").split(",")]
            if any(keyword.iskeyword(part) for name in names for part in name.split(".")):
                continue
            stub = f"{', '.join(names)} = FILL_IN"
        elif _RETURN_RE.match(statement):
            stub = "return FILL_IN"
        else:
            continue
        if stub not in stubs:
            stubs.append(stub)
    return stubs


def _check_still_python(solution_source: str, lab_source: str, notebook_label: str, index: int) -> None:
    """Raise if a cell that parsed in the solution no longer parses in the lab."""
    try:
        ast.parse(solution_source)
    except SyntaxError:
        return  # IPython magics and the like: nothing to compare against
    try:
        ast.parse(lab_source)
    except SyntaxError as error:
        raise LabSourceError(
            notebook_label,
            index,
            f"the lab version of this cell is not valid Python ({error.msg}, line {error.lineno}): "
            "give each region an assignment or `return` at the marker's indentation",
        ) from None
