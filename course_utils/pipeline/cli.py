"""``course pipeline run`` and the MLflow Project entry points (``python -m course_utils.pipeline <step>``).

Both print one line per step (``running:``/``skipped:``/``quarantined:``) and a summary per day,
and exit non-zero with a one-line message on bad input.

Example (a cron line: one simulated day more every night at 02:00)::

    0 2 * * *  cd /path/to/course && .venv/bin/course pipeline run --days "$(cat days.txt)" >> build/pipeline.log 2>&1
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from course_utils.config import Settings

QUIET_LOGGERS = ("py4j", "urllib3", "mlflow", "feast", "alembic", "httpx")


def configure_logging() -> None:
    """Step lines on stderr with a timestamp; the libraries' chatter kept to warnings."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def run_from_cli(args: argparse.Namespace, settings: Settings) -> int:
    """``course pipeline run --days N [--from STEP] [--force] [--no-rest] [--name NAME]``."""
    from course_utils.pipeline.context import LESSON_NAME, PipelineContext
    from course_utils.pipeline.runner import check_days, check_step, run_pipeline

    check_days(args.days)  # bad input fails before anything starts
    check_step(args.from_step)
    configure_logging()
    started = time.time()
    context = PipelineContext.headless(args.name or LESSON_NAME, settings)
    try:
        results = run_pipeline(context, args.days, from_step=args.from_step, force=args.force, rest=not args.no_rest)
    finally:
        context.stop()
    ran = sum(not r.skipped for r in context.records)
    for result in results:
        print(f"day {result.day}: {result.status}, champion v{result.champion}, drift: {result.drifted_columns}, "
              f"decisions: {', '.join(result.decisions) or 'none'} ({result.seconds:.1f} s)")
    print(f"{ran} steps ran, {len(context.records) - ran} skipped, in {time.time() - started:.1f} s; "
          f"experiment {context.experiment_name}, model {context.model_name}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m course_utils.pipeline STEP --day N``: one step of one day (an MLflow Project entry point)."""
    from course_utils.config import load_settings, loopback_proxy_bypass
    from course_utils.errors import CourseError
    from course_utils.pipeline.context import LESSON_NAME, STEPS, PipelineContext
    from course_utils.pipeline.runner import run_one_step

    parser = argparse.ArgumentParser(prog="python -m course_utils.pipeline", description=main.__doc__)
    parser.add_argument("step", choices=STEPS)
    parser.add_argument("--day", type=int, required=True)
    parser.add_argument("--name", default=LESSON_NAME)
    args = parser.parse_args(argv)
    os.environ.update(loopback_proxy_bypass(os.environ))
    # `mlflow run` hands its own run to the entry point; the step logs to the pipeline's experiment.
    project_run = os.environ.pop("MLFLOW_RUN_ID", None)
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    configure_logging()
    try:
        context = PipelineContext.headless(args.name, load_settings())
        record = run_one_step(context, args.step, args.day)
        if project_run and not record.skipped:
            context.client.set_tag(record.run_id, "mlflow_project_run", project_run)
    except CourseError as error:
        print(f"pipeline {args.step}: {error}", file=sys.stderr)
        return 2
    print(f"{args.step} day {args.day}: {'skipped' if record.skipped else 'ran'} (run {record.run_id}) {record.outputs}")
    return 0
