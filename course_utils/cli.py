"""The ``course`` command: doctor, reset, run, lab, services, and the set-up steps.

Every failure prints one line naming the problem and the fix, and exits non-zero,
instead of a stack trace.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from course_utils.config import PROFILES, Settings, load_settings, loopback_proxy_bypass
from course_utils.errors import CourseError


def _port_number(text: str) -> int:
    """argparse type: a TCP port a learner's program may listen on."""
    if not text.isdigit() or not 1024 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a usable port; give a number from 1024 to 65535")
    return int(text)


def cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    from course_utils.doctor import (
        ALL_CHECKS, QUICK_CHECKS, format_results, record_passing_round_trips, round_trips_still_valid, run_doctor,
    )
    from course_utils.services import MLFLOW, status, stop

    passed_at = round_trips_still_valid(settings) if args.skip_unchanged else None
    if passed_at:
        results = run_doctor(settings, QUICK_CHECKS)
        print(format_results(results))
        print(f"Spark + Delta and MLflow round trips skipped: they passed at {passed_at} and nothing they "
              "depend on changed (lock file, jars, dataset manifest, Java). `course doctor` runs them all.")
        return 0 if all(r.ok for r in results) else 1
    server_was_running = status(MLFLOW, settings).running
    try:
        results = run_doctor(settings, ALL_CHECKS)
    finally:
        if not server_was_running:
            stop(MLFLOW, settings)  # the doctor leaves the machine as it found it
    print(format_results(results))
    if all(r.ok for r in results):
        record_passing_round_trips(settings)
        return 0
    return 1


def cmd_reset(args: argparse.Namespace, settings: Settings) -> int:
    from course_utils.lesson import Lesson, validate_lesson_name
    from course_utils.services import stop_all
    from course_utils.workspace import reset_workspace

    if args.lesson:
        validate_lesson_name(args.lesson, settings)
        Lesson(name=args.lesson, params={}, settings=settings).reset()
        print(f"Reset lesson {args.lesson}: its folder, results, MLflow runs and registered models are gone.")
        return 0
    for name, stopped in stop_all(settings).items():
        if stopped:
            print(f"stopped {name}")
    kept = reset_workspace(settings)
    print(f"Reset the course's workspace ({settings.workspace}): every lesson's data, MLflow runs and registered "
          "models are gone; datasets and the jar cache are kept.")
    if kept:
        print(f"Kept {len(kept)} entries that are not the course's: {', '.join(sorted(kept))}.")
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from course_utils.runner import collect_notebooks, run_notebooks
    from course_utils.services import service_names, status, stop, stop_child_processes

    collect_notebooks(args.paths, settings)  # fail fast on a bad path, before anything runs
    running_before = {name for name in service_names(settings) if status(name, settings).running}
    interrupted = False
    try:
        runs = run_notebooks(args.paths, settings)
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        # Leave the machine as we found it: every service the notebooks started, then kernels and JVMs.
        for name in service_names(settings):
            if name not in running_before:
                stop(name, settings)
        stop_child_processes()
        if interrupted:
            print(f"interrupted; nothing the run started is left running; report: {settings.build / 'run-report.json'}",
                  file=sys.stderr)
    failed = [r for r in runs if r.status != "passed"]
    print(f"{len(runs) - len(failed)} passed, {len(failed)} failed; report: {settings.build / 'run-report.json'}")
    return 1 if failed else 0


def cmd_services(args: argparse.Namespace, settings: Settings) -> int:
    from course_utils.services import MLFLOW, start_tracking_server, status, status_all, stop_all

    if args.action == "up":
        if not settings.uses_own_tracking_server:
            print(f"MLFLOW_TRACKING_URI is set ({settings.tracking_uri}): the course uses that server, "
                  "so there is nothing to start here.")
            return 0
        state = start_tracking_server(settings)
        print(f"MLflow tracking server: {state.url} (pid {state.pid}, log {state.log})")
    elif args.action == "down":
        stopped = stop_all(settings)
        for name, was_stopped in stopped.items():
            print(f"{name}: {'stopped' if was_stopped else 'was not running'}")
        if not stopped:
            print("no course service was running")
    else:
        states = status_all(settings)
        if not any(state.name == MLFLOW for state in states):
            states.insert(0, status(MLFLOW, settings))
        for state in states:
            print(state.describe())
    return 0


def cmd_lab(args: argparse.Namespace, settings: Settings) -> int:
    from course_utils.jupyter import start_jupyterlab
    from course_utils.tracking import mlflow_ui_url
    from course_utils.ports import free_port
    from course_utils.services import ensure_tracking_server

    port = args.port or free_port()
    if port == settings.mlflow_port:
        raise ValueError(f"--port {port} is the MLflow server's port (COURSE_MLFLOW_PORT); give JupyterLab another, "
                         "or leave --port out to get a free one.")
    uri = ensure_tracking_server(settings)
    url = start_jupyterlab(settings, port, uri)
    print(f"MLflow UI:   {mlflow_ui_url(uri)}\nJupyterLab:  {url}\nStop both with `.venv/bin/course services down`.")
    return 0


def cmd_jvm_archive(args: argparse.Namespace, settings: Settings) -> int:
    from course_utils.spark import build_class_archive, class_archive_path

    existed = class_archive_path(settings).is_file()
    archive = build_class_archive(settings)
    print(f"{'cached' if existed else 'built'} {archive.relative_to(settings.root)} ({archive.stat().st_size / 1e6:.0f} MB)")
    return 0


def cmd_fetch_jars(args: argparse.Namespace, settings: Settings) -> int:
    from course_utils.jars import fetch_jars

    for path in fetch_jars(settings.jar_cache):
        print(f"cached {path.relative_to(settings.root)}")
    return 0


def cmd_datasets(args: argparse.Namespace, settings: Settings) -> int:
    from course_utils.datasets import generate, verify

    folder = settings.datasets / "generated" / args.profile
    if args.action == "verify":
        verify(args.profile, folder, settings.datasets)
        print(f"datasets ({args.profile}) match the manifest")
        return 0
    if folder.exists() and not args.force:
        try:
            verify(args.profile, folder, settings.datasets)
            print(f"datasets ({args.profile}) already generated and verified; --force regenerates")
            return 0
        except Exception as error:  # noqa: BLE001 - regenerate below, saying why
            print(f"regenerating: {error}")
    generate(args.profile, folder)
    verify(args.profile, folder, settings.datasets)
    print(f"generated datasets ({args.profile}) in {folder.relative_to(settings.root)}")
    return 0


def cmd_labs(args: argparse.Namespace, settings: Settings) -> int:
    from course_utils.labs import build_labs, grade_submissions, grade_table, stale_labs, write_grades_json

    if args.action == "build":
        for path in build_labs(settings.notebooks):
            print(f"wrote {path.relative_to(settings.root)}")
        return 0
    if args.action == "grade":
        if args.submissions is None:
            raise CourseError("`course labs grade` needs the submissions folder: <folder>/<student>/<lab>/<lab>.ipynb")
        grades = grade_submissions(Path(args.submissions), settings)
        print(grade_table(grades))
        report = write_grades_json(grades, settings.build / "lab-grades.json")
        print(f"wrote {report.relative_to(settings.root)} (nbgrader's course folder: build/nbgrader)")
        return 0
    if args.submissions is not None:
        raise CourseError(f"`course labs {args.action}` takes no folder (only `course labs grade <folder>` does)")
    stale = stale_labs(settings.notebooks)
    for path in stale:
        print(f"out of date: {path.relative_to(settings.root)}")
    print("labs are up to date" if not stale else "run `.venv/bin/course labs build`")
    return 1 if stale else 0


def cmd_cluster(args: argparse.Namespace, settings: Settings) -> int:
    from course_utils.cluster import cluster_status, start_cluster, stop_cluster

    if args.action == "up":
        state = start_cluster(settings, workers=args.workers, port=args.port, webui_port=args.webui_port,
                              cores=args.cores, memory=args.memory)
        print(state.describe())
        print("Stop it with `.venv/bin/course cluster down` (with the same COURSE_WORKSPACE).")
    elif args.action == "down":
        stopped = stop_cluster(settings)
        for name, was_stopped in stopped.items():
            print(f"{name}: {'stopped' if was_stopped else 'was not running'}")
        if not stopped:
            print("no Spark cluster was running")
    else:
        print(cluster_status(settings).describe())
    return 0


def cmd_pipeline(args: argparse.Namespace, settings: Settings) -> int:
    from course_utils.pipeline.cli import run_from_cli

    return run_from_cli(args, settings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="course", description="The ML-in-Production course workspace.")
    sub = parser.add_subparsers(dest="command", required=True)
    doctor = sub.add_parser("doctor", help="check Java, Spark + Delta, MLflow, ports and disk")
    doctor.add_argument("--skip-unchanged", action="store_true",
                        help="skip the Spark and MLflow round trips when they passed on the same lock, jars, datasets and Java (setup.sh)")
    doctor.set_defaults(func=cmd_doctor)
    reset = sub.add_parser(
        "reset", help="reset one lesson, or the whole workspace (deletes ALL MLflow runs and registered models)",
        description="With a lesson name: delete that lesson's folder, results, MLflow runs and registered models. "
                    "Without: stop every course service, then delete everything the course created in its workspace "
                    "(every lesson's tables, every MLflow run and registered model, logs). Datasets, the jar cache "
                    "and files the course did not create are kept.")
    reset.add_argument("lesson", nargs="?", help="lesson name, e.g. 01a_delta_lake (default: the whole workspace)")
    reset.set_defaults(func=cmd_reset)
    run = sub.add_parser("run", help="execute notebooks in course order into build/executed/")
    run.add_argument("paths", nargs="*", type=Path, help="notebooks or folders (default: all)")
    run.set_defaults(func=cmd_run)
    lab = sub.add_parser("lab", help="start the MLflow server and JupyterLab on 127.0.0.1")
    lab.add_argument("--port", type=_port_number, default=None, help="JupyterLab port, 1024-65535 (default: a free one)")
    lab.set_defaults(func=cmd_lab)
    services = sub.add_parser(
        "services", help="start, stop or show the background services",
        description="Every background process the course starts (MLflow tracking and registry servers, JupyterLab, "
                    "model servers, webhook receivers, routers) goes through one seam, so these actions see all of "
                    "them, even when a pid file is lost or a leader process was killed.")
    services.add_argument("action", choices=["up", "down", "status"],
                          help="up: start the MLflow tracking server; down: stop every course process of this "
                               "workspace (and nothing else); status: list them, with leftovers")
    services.set_defaults(func=cmd_services)
    sub.add_parser("fetch-jars", help="fetch the Delta jars into .cache/jars (set-up)").set_defaults(func=cmd_fetch_jars)
    sub.add_parser("jvm-archive", help="dump the JVM class archive that halves Spark's start-up (set-up)").set_defaults(func=cmd_jvm_archive)
    datasets = sub.add_parser("datasets", help="generate or verify the course datasets")
    datasets.add_argument("action", choices=["generate", "verify"],
                          help="generate: create the seeded datasets of a profile (skipped when they verify); "
                               "verify: compare them with the manifest's checksums")
    datasets.add_argument("--profile", choices=PROFILES, default=None)
    datasets.add_argument("--force", action="store_true", help="regenerate even when verified")
    datasets.set_defaults(func=cmd_datasets)
    labs = sub.add_parser("labs", help="generate the labs from their solutions (nbgrader), check them, or autograde submissions")
    labs.add_argument("action", choices=["build", "check", "grade"],
                      help="build: nbgrader generate_assignment writes each labs/ notebook from its solutions/ notebook; "
                           "check: fail if one is stale; grade <folder>: nbgrader autograde of <folder>/<student>/<lab>/<lab>.ipynb")
    labs.add_argument("submissions", nargs="?", default=None,
                      help="grade only: the submissions folder, laid out as nbgrader's submitted/ folder")
    labs.set_defaults(func=cmd_labs)
    cluster = sub.add_parser(
        "cluster", help="start, stop or show a Spark standalone cluster (master + workers) on 127.0.0.1",
        description="A real Spark standalone master and workers from the installed PySpark, started through the "
                    "services seam (logs, work and scratch folders in the workspace). Point the course at it with "
                    "COURSE_SPARK_MASTER=spark://127.0.0.1:<port> (printed by `up`).")
    cluster.add_argument("action", choices=["up", "down", "status"],
                         help="up: start master and workers (reused when running); down: stop them; status: show them")
    cluster.add_argument("--workers", type=int, default=2, help="workers to start, 1-8 (default 2)")
    cluster.add_argument("--cores", type=int, default=1, help="cores each worker offers (default 1)")
    cluster.add_argument("--memory", default="1g", help="memory each worker offers, 1g or more, e.g. 2g (default 1g)")
    cluster.add_argument("--port", type=_port_number, default=None, help="the master's port (default: a free one)")
    cluster.add_argument("--webui-port", type=_port_number, default=None, help="the master UI's port (default: a free one)")
    cluster.set_defaults(func=cmd_cluster)
    pipeline = sub.add_parser(
        "pipeline", help="run the module 05 pipeline headless over simulated days (idempotent: done steps are skipped)",
        description="Simulated days 1..N through ingest, featurise, train, register, validate, promote, score "
                    "(batch, stream; REST on the last loaded day), monitor and retrain on drift. A step whose inputs, "
                    "parameters and code are unchanged since a finished run is skipped, so a scheduler may run it again.")
    pipeline.add_argument("action", choices=["run"], help="run: process the simulated days")
    pipeline.add_argument("--days", type=int, required=True, help="simulated days to process, 1-60 (day 1 = 2025-07-01)")
    pipeline.add_argument("--from", dest="from_step", default=None, metavar="STEP",
                          help="run STEP and every later step again even when finished (steps: ingest, featurise, "
                               "train, register, validate, promote, score_batch, score_stream, monitor, score_rest)")
    pipeline.add_argument("--force", action="store_true", help="run every step again even when finished")
    pipeline.add_argument("--no-rest", action="store_true", help="skip REST scoring (no model server, no router)")
    pipeline.add_argument("--name", default=None, help="pipeline name: its folder, experiment and model (default: the lesson's)")
    pipeline.set_defaults(func=cmd_pipeline)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``course`` command."""
    args = build_parser().parse_args(argv)
    # The course's own traffic is loopback only and must never go through HTTP(S)_PROXY.
    os.environ.update(loopback_proxy_bypass(os.environ))
    try:
        settings = load_settings()
        if getattr(args, "profile", "unset") is None:
            args.profile = settings.profile
        return int(args.func(args, settings))
    except (CourseError, ValueError, subprocess.CalledProcessError) as error:
        print(f"course {args.command}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
