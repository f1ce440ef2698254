"""Execute notebooks headless with papermill, in course order, and measure each one.

``course run [paths...]`` writes executed copies to ``build/executed/`` and a report to
``build/run-report.json``: status, seconds and peak memory per notebook, with the
Python kernel and the JVM that Spark starts counted separately.

:func:`run_twice_in_one_kernel` is the test suite's proof that a notebook runs twice in a row
with the same result: "Run All", then "Run All" again in the same kernel, as an instructor
re-running a demo does (see the README's "How the tests work").
"""

from __future__ import annotations

import copy
import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable
from unittest import mock

import psutil

from course_utils.config import KERNEL_NAME, Settings, load_settings
from course_utils.errors import CourseError
from course_utils.timing import TIMINGS_ENV, read_phases

MB = 1024 * 1024


class NotebookPathError(CourseError, ValueError):
    """A path given to ``course run`` is not a notebook or a folder of notebooks."""


@dataclass
class NotebookRun:
    """The outcome of executing one notebook."""

    notebook: str
    status: str  # "passed", "failed" or "interrupted"
    seconds: float
    peak_python_mb: float
    peak_jvm_mb: float
    peak_total_mb: float
    output: str
    error: str | None = None
    breakdown: dict[str, float] | None = None  # seconds per phase, see time_breakdown()


def is_runnable_notebook(path: Path) -> bool:
    """Lesson and solution notebooks run; generated labs (their exercises stop with "not done yet") and checkpoints do not."""
    return path.suffix == ".ipynb" and "labs" not in path.parts and ".ipynb_checkpoints" not in path.parts


def collect_notebooks(paths: Iterable[Path], settings: Settings) -> list[Path]:
    """Expand folders, validate files, and sort everything in course order (by numbered path)."""
    given = list(paths) or [settings.notebooks]
    found: list[Path] = []
    for path in given:
        path = path.resolve()
        if path.is_dir():
            found.extend(p for p in path.rglob("*.ipynb") if is_runnable_notebook(p.relative_to(path.parent)))
        elif path.is_file() and path.suffix == ".ipynb":
            found.append(path)
        elif path.exists():
            raise NotebookPathError(f"{path} is not a notebook (.ipynb): give notebooks or folders of notebooks.")
        else:
            raise NotebookPathError(
                f"{path} does not exist: give a notebook or folder such as notebooks/00_intro "
                "(paths are relative to the current directory)."
            )
    if not found:
        labs = [p for path in given if path.resolve().is_dir() for p in path.resolve().rglob("*.ipynb")]
        if labs:
            raise NotebookPathError(
                f"No runnable notebooks under {', '.join(map(str, given))}: labs are skipped on purpose, their "
                "exercises are for you to complete. Run a lab by opening it in `course lab`, or run its worked "
                "solution, e.g. `course run notebooks/01_experimentation/solutions`."
            )
        raise NotebookPathError(f"No runnable notebooks under {', '.join(map(str, given))}.")
    return sorted(set(found), key=lambda p: _course_order_key(p, settings))


def _course_order_key(path: Path, settings: Settings) -> tuple[str, ...]:
    try:
        relative = path.relative_to(settings.notebooks)
    except ValueError:
        relative = path
    # Lessons before solutions within a module; otherwise alphabetical = numbered order.
    return tuple(("~" + part) if part == "solutions" else part for part in relative.parts)


class PeakMemory:
    """Samples the RSS of this process's children (kernel + JVM) in a background thread."""

    def __init__(self, interval_s: float = 0.25) -> None:
        self.interval_s = interval_s
        self.python_mb = 0.0
        self.jvm_mb = 0.0
        self.total_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_until_stopped, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample_until_stopped(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            python_bytes = jvm_bytes = 0
            for child in me.children(recursive=True):
                try:
                    rss = child.memory_info().rss
                    if "java" in child.name():
                        jvm_bytes += rss
                    else:
                        python_bytes += rss
                except psutil.Error:
                    continue
            self.python_mb = max(self.python_mb, python_bytes / MB)
            self.jvm_mb = max(self.jvm_mb, jvm_bytes / MB)
            self.total_mb = max(self.total_mb, (python_bytes + jvm_bytes) / MB)
            self._stop.wait(self.interval_s)


def executed_path(notebook: Path, settings: Settings) -> Path:
    """Where the executed copy of ``notebook`` goes under ``build/executed/``."""
    try:
        relative = notebook.relative_to(settings.notebooks)
    except ValueError:
        relative = Path(notebook.name)
    return settings.build / "executed" / relative


def run_notebook(notebook: Path, settings: Settings, parameters: dict[str, Any] | None = None) -> NotebookRun:
    """Execute one notebook with papermill in its own folder; never raises for a failing cell."""
    import papermill

    output = executed_path(notebook, settings)
    output.parent.mkdir(parents=True, exist_ok=True)
    timings = output.with_suffix(".timings.jsonl")
    timings.unlink(missing_ok=True)
    started = time.perf_counter()
    error: str | None = None
    # The kernel inherits the variable and course_utils appends its phases to that file.
    with PeakMemory() as memory, mock.patch.dict(os.environ, {TIMINGS_ENV: str(timings)}):
        try:
            papermill.execute_notebook(
                str(notebook),
                str(output),
                parameters=parameters or {},
                kernel_name=KERNEL_NAME,
                cwd=str(notebook.parent),
                progress_bar=False,
                request_save_on_cell_execute=False,
            )
        except KeyboardInterrupt:
            error, state = "interrupted (Ctrl-C) before the notebook finished", "interrupted"
        except Exception as exc:  # papermill raises PapermillExecutionError with the cell's error
            error, state = failure_summary(exc, output), "failed"
        else:
            state = "passed"
    seconds = round(time.perf_counter() - started, 2)
    return NotebookRun(
        notebook=str(notebook.relative_to(settings.root) if notebook.is_relative_to(settings.root) else notebook),
        status=state,
        seconds=seconds,
        peak_python_mb=round(memory.python_mb, 1),
        peak_jvm_mb=round(memory.jvm_mb, 1),
        peak_total_mb=round(memory.total_mb, 1),
        output=str(output),
        error=error,
        breakdown=time_breakdown(output, timings, seconds),
    )


def failure_summary(error: Exception, executed: Path, source_lines: int = 6) -> str:
    """Which cell failed, with what exception and message, and where the executed copy is.

    papermill's own message starts with a line of dashes, so its first line says nothing.
    """
    import re

    cell_index = getattr(error, "cell_index", None)
    if cell_index is None:
        return f"{type(error).__name__}: {error}"[:4000]
    source = str(getattr(error, "source", "")).strip().splitlines()
    shown = "\n".join(f"    | {line}" for line in source[:source_lines])
    more = f"\n    | ... ({len(source) - source_lines} more lines)" if len(source) > source_lines else ""
    message = re.sub(r"\x1b\[[0-9;]*m", "", str(getattr(error, "evalue", "")))
    copy = f"executed copy with the full traceback: {executed}" if executed.is_file() else "no executed copy was written"
    return (f"cell {cell_index} (In [{getattr(error, 'exec_count', '?')}]) raised "
            f"{getattr(error, 'ename', type(error).__name__)}: {message}\n{shown}{more}\n  {copy}")[:4000]


def time_breakdown(executed: Path, timings: Path, total_seconds: float) -> dict[str, float]:
    """Where a notebook's time went: kernel start-up, imports, the phases course_utils timed, the rest.

    - kernel start and save: wall time outside every cell (papermill's per-cell durations);
    - imports: the first code cell;
    - spark session start, prerequisite, server start, lesson reset: from ``timings``;
    - lesson's own work: what remains of the cells' time.
    """
    cell_seconds: list[float] = []
    if executed.is_file():
        notebook = json.loads(executed.read_text())
        for cell in notebook.get("cells", []):
            if cell.get("cell_type") == "code":
                cell_seconds.append(float((cell.get("metadata", {}).get("papermill") or {}).get("duration") or 0.0))
    phases = read_phases(timings)
    breakdown = {
        "kernel start and save": max(0.0, total_seconds - sum(cell_seconds)),
        "imports": cell_seconds[0] if cell_seconds else 0.0,
        **phases,
    }
    breakdown["lesson's own work"] = max(0.0, sum(cell_seconds[1:]) - sum(phases.values()))
    return {phase: round(value, 1) for phase, value in breakdown.items()}


def run_notebooks(
    paths: Iterable[Path], settings: Settings | None = None, parameters: dict[str, Any] | None = None
) -> list[NotebookRun]:
    """Run notebooks in course order and write ``build/run-report.json``."""
    settings = settings or load_settings()
    notebooks = collect_notebooks(paths, settings)
    runs: list[NotebookRun] = []
    for notebook in notebooks:
        print(f"▶ {notebook.relative_to(settings.root) if notebook.is_relative_to(settings.root) else notebook}", flush=True)
        run = run_notebook(notebook, settings, {"profile": settings.profile, **(parameters or {})})
        print(
            f"  {run.status} in {run.seconds:.1f} s, peak memory {run.peak_total_mb:.0f} MB "
            f"(python {run.peak_python_mb:.0f} MB, JVM {run.peak_jvm_mb:.0f} MB)",
            flush=True,
        )
        if run.breakdown:
            print("  " + ", ".join(f"{phase} {seconds:.0f} s" for phase, seconds in run.breakdown.items() if seconds >= 0.5), flush=True)
        if run.error:
            print(f"  {run.error}", flush=True)
        runs.append(run)
        if run.status == "interrupted":
            write_report(runs, settings)
            raise KeyboardInterrupt
    write_report(runs, settings)
    return runs


def write_report(runs: list[NotebookRun], settings: Settings) -> Path:
    """Write the run report JSON and return its path."""
    settings.build.mkdir(parents=True, exist_ok=True)
    report = settings.build / "run-report.json"
    report.write_text(
        json.dumps(
            {
                "profile": settings.profile,
                "passed": sum(r.status == "passed" for r in runs),
                "failed": sum(r.status == "failed" for r in runs),
                "interrupted": sum(r.status == "interrupted" for r in runs),
                "notebooks": [asdict(r) for r in runs],
            },
            indent=2,
        )
    )
    return report


# NBVAL's marker, kept so the cells marked for output comparison need no change.
CHECK_OUTPUT_MARKER = "# NBVAL_CHECK_OUTPUT"


@dataclass
class TwoRuns:
    """Two executions of one notebook in one kernel: outputs, recorded results and times of each."""

    notebook: str
    runs: list[dict[str, Any]] = field(default_factory=list)  # per run: seconds, error, results
    first_executed: str = ""
    mismatched_outputs: list[str] = field(default_factory=list)

    @property
    def error(self) -> str | None:
        return next((f"run {i + 1}: {r['error']}" for i, r in enumerate(self.runs) if r["error"]), None)


def checked_outputs(notebook: Any) -> dict[int, list[str]]:
    """Text outputs (stdout, results, errors) of the cells marked ``# NBVAL_CHECK_OUTPUT``, by cell index."""
    marked: dict[int, list[str]] = {}
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code" or not cell.source.lstrip().startswith(CHECK_OUTPUT_MARKER):
            continue
        texts: list[str] = []
        for output in cell.get("outputs", []):
            if output.output_type == "stream" and output.name == "stdout":
                # stderr carries warnings, which Python shows once per process. The kernel may split one
                # print into several stream messages differently each run, so adjacent pieces are joined.
                if texts and texts[-1].startswith("stdout: "):
                    texts[-1] += output.text
                else:
                    texts.append("stdout: " + output.text)
            elif output.output_type in ("execute_result", "display_data"):
                texts.append(str(output.get("data", {}).get("text/plain", "")))
            elif output.output_type == "error":
                texts.append(f"error: {output.ename}")
        marked[index] = texts
    return marked


def run_twice_in_one_kernel(
    notebook: Path, settings: Settings, parameters: dict[str, Any] | None = None, cell_timeout_s: int = 900
) -> TwoRuns:
    """Execute ``notebook`` top to bottom in a fresh kernel, then again in the same kernel.

    Returns both runs' times, errors and recorded results (``lesson.record``); the first run's
    executed copy is written under ``build/executed/``; ``mismatched_outputs`` lists the marked
    cells whose text output differs between the runs. Never raises for a failing cell.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    source = parameterize_notebook(load_notebook_node(str(notebook)), parameters or {})
    results_file = settings.results_dir / f"{notebook.stem}.json"
    client = NotebookClient(copy.deepcopy(source), kernel_name=KERNEL_NAME, timeout=cell_timeout_s,
                            resources={"metadata": {"path": str(notebook.parent)}})
    outcome = TwoRuns(notebook=str(notebook))
    executed: list[Any] = []
    with client.setup_kernel():
        for _ in range(2):
            run = copy.deepcopy(source)
            started, error = time.perf_counter(), None
            try:
                for index, cell in enumerate(run.cells):
                    if cell.cell_type == "code":
                        client.execute_cell(cell, index)
            except CellExecutionError as failure:
                error = _readable(str(failure))
            results = json.loads(results_file.read_text()) if results_file.is_file() else {}
            outcome.runs.append({"seconds": round(time.perf_counter() - started, 2), "error": error, "results": results})
            executed.append(run)
            if error:
                break  # a failed first run proves nothing about a second one
    output = executed_path(notebook, settings)
    output.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(executed[0], str(output))
    outcome.first_executed = str(output)
    if len(executed) == 2:
        first, second = checked_outputs(executed[0]), checked_outputs(executed[1])
        outcome.mismatched_outputs = [
            f"cell {index}:\n  first run:  {first[index]}\n  second run: {second.get(index)}"
            for index in first if first[index] != second.get(index)
        ]
    return outcome


def _readable(message: str, head: int = 1500, tail: int = 3000) -> str:
    """A cell error without terminal colours, shortened in the middle: the cell, then the exception."""
    import re

    plain = re.sub(r"\x1b\[[0-9;]*m", "", message)
    return plain if len(plain) <= head + tail else f"{plain[:head]}\n[...]\n{plain[-tail:]}"
