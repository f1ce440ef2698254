"""`course run` path handling and the CLI's one-line errors."""

from __future__ import annotations

from dataclasses import replace

import pytest

from course_utils.cli import main
from course_utils.config import load_settings
from course_utils.runner import NotebookPathError, collect_notebooks


@pytest.fixture()
def settings():
    return load_settings({})


def test_all_notebooks_in_course_order_without_labs(settings) -> None:
    notebooks = collect_notebooks([], settings)
    relative = [str(p.relative_to(settings.notebooks)) for p in notebooks]
    assert relative[0] == "00_intro/00_course_overview.ipynb"
    assert relative == sorted(relative, key=lambda r: r.replace("solutions", "~solutions"))
    assert not any("/labs/" in r for r in relative)


def test_solutions_run_after_lessons_of_their_module(tmp_path) -> None:
    settings = replace(load_settings({}), root=tmp_path)
    module = tmp_path / "notebooks" / "01_x"
    for name in ("solutions/01z_lab.ipynb", "01b_b.ipynb", "01a_a.ipynb", "labs/01z_lab.ipynb"):
        (module / name).parent.mkdir(parents=True, exist_ok=True)
        (module / name).write_text("{}")
    names = [p.relative_to(module).as_posix() for p in collect_notebooks([tmp_path / "notebooks"], settings)]
    assert names == ["01a_a.ipynb", "01b_b.ipynb", "solutions/01z_lab.ipynb"]


def test_a_file_that_is_not_a_notebook_is_refused(settings) -> None:
    with pytest.raises(NotebookPathError, match=r"pyproject.toml is not a notebook"):
        collect_notebooks([settings.root / "pyproject.toml"], settings)


def test_a_missing_path_is_refused(settings, tmp_path) -> None:
    with pytest.raises(NotebookPathError, match="does not exist"):
        collect_notebooks([tmp_path / "nope.ipynb"], settings)


def test_cli_prints_one_line_and_exits_2_for_a_bad_path(capsys, tmp_path) -> None:
    build_before = sorted((load_settings().build).glob("*")) if load_settings().build.exists() else []
    assert main(["run", str(tmp_path / "nope.txt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("course run: ") and "does not exist" in err and "Traceback" not in err
    after = sorted(load_settings().build.glob("*")) if load_settings().build.exists() else []
    assert after == build_before, "a refused run leaves build/ as it was"


def test_cli_unknown_lesson_for_reset(capsys) -> None:
    assert main(["reset", "99_nope"]) == 2
    assert "is not a lesson of this course" in capsys.readouterr().err


def test_cli_services_status_reports_nothing_running(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("COURSE_WORKSPACE", str(tmp_path))
    assert main(["services", "status"]) == 0
    assert capsys.readouterr().out == "mlflow: not running\n"


def _notebook(folder, *cells: str, parameters: str = "counter_file = 'runs.txt'"):
    """A small notebook: a parameters cell, then ``cells`` as code cells."""
    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]})]
    notebook.cells += [nbformat.v4.new_code_cell(source) for source in cells]
    notebook.metadata["kernelspec"] = {"name": "ml-in-production", "display_name": "course", "language": "python"}
    path = folder / "probe.ipynb"
    nbformat.write(notebook, str(path))
    return path


@pytest.mark.slow
def test_the_second_run_catches_a_notebook_that_is_not_idempotent(tmp_path) -> None:
    """A marked cell whose output depends on an earlier run differs; a cell that fails the second time fails."""
    from course_utils.runner import run_twice_in_one_kernel

    settings = replace(load_settings({}), root=tmp_path, workspace=tmp_path / "workspace")
    counting = _notebook(
        tmp_path,
        "from pathlib import Path\nruns = Path(counter_file)\nruns.write_text(runs.read_text() + 'x' if runs.exists() else 'x')",
        "# NBVAL_CHECK_OUTPUT\nprint(f'runs so far: {len(runs.read_text())}')",
        "print('unchecked output may differ:', len(runs.read_text()))",
    )
    outcome = run_twice_in_one_kernel(counting, settings)
    assert outcome.error is None and len(outcome.runs) == 2
    assert len(outcome.mismatched_outputs) == 1 and "runs so far: 1" in outcome.mismatched_outputs[0]
    assert "runs so far: 2" in outcome.mismatched_outputs[0]

    (tmp_path / "created.txt").unlink(missing_ok=True)
    creating = _notebook(tmp_path, "open('created.txt', 'x').write('only once')")
    outcome = run_twice_in_one_kernel(creating, settings)
    assert outcome.runs[0]["error"] is None and "FileExistsError" in outcome.runs[1]["error"]
    assert outcome.error.startswith("run 2: ")


@pytest.mark.slow
def test_a_failing_notebook_is_reported_with_its_cell_exception_and_executed_copy(tmp_path, capsys) -> None:
    """`course run` used to print only `PapermillExecutionError:`; now the cell, the exception and the copy."""
    from course_utils.runner import run_notebooks

    settings = replace(load_settings({}), root=tmp_path, workspace=tmp_path / "workspace")
    passing = _notebook(tmp_path, "print('fine')")
    [passed] = run_notebooks([passing], settings)
    assert (passed.status, passed.error) == ("passed", None)
    failing = _notebook(tmp_path, "total = 1 + 1", "rows = []\nif not rows:\n    raise ValueError(f'no rows to score (total={total})')")
    [run] = run_notebooks([failing], settings)
    executed = tmp_path / "build" / "executed" / "probe.ipynb"
    assert run.status == "failed"
    assert run.error == (
        "cell 3 (In [4]) raised ValueError: no rows to score (total=2)\n"
        "    | rows = []\n    | if not rows:\n    |     raise ValueError(f'no rows to score (total={total})')\n"
        f"  executed copy with the full traceback: {executed}"
    )
    assert executed.is_file()
    assert run.error in capsys.readouterr().out, "the console shows the same, not just the exception's class"


def test_checked_outputs_join_stdout_that_the_kernel_split_differently() -> None:
    """One print may arrive as one stream message in one run and as two in the next: same output."""
    import nbformat

    from course_utils.runner import checked_outputs

    def notebook(*pieces: str):
        cell = nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(table)")
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=piece) for piece in pieces]
        return nbformat.v4.new_notebook(cells=[cell])

    assert checked_outputs(notebook("a  1\nb  2\n")) == checked_outputs(notebook("a  1\n", "b  2\n"))
    assert checked_outputs(notebook("a  1\nb  2\n")) != checked_outputs(notebook("a  1\nb  3\n"))
