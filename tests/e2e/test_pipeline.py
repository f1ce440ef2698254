"""Module 05's pipeline for real (Spark + Delta, Feast, the MLflow server and registry): quarantine,
idempotence, kill-and-rerun and the refused degraded challenger.

One module-scoped scenario keeps the cost down: pipeline A runs in this process over two days whose
first raw file is broken (quarantined; day 2 trains the first champion); pipeline B runs the same two
days headless with ``course pipeline run``, is SIGKILLed in the middle of training, and is run again.
Every assertion compares states read back from Delta and MLflow. Drift and retraining are proved by
the module 05 notebook's expectations.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from course_utils.pipeline import PipelineContext, challenge_with_degraded_model, run_pipeline
from course_utils.pipeline.data import break_raw_file, land_day

pytestmark = pytest.mark.slow

TABLES = ("bronze", "quarantine", "gold", "predictions", "stream_predictions")
# Outputs that name things unique to one pipeline (ids, paths) rather than what it computed.
IDENTITY_OUTPUTS = ("model_uri", "model_id", "feast_source", "alert")
BROKEN_DAY = 1
DAYS = 2
TIMES: dict[str, float] = {}


@contextmanager
def restored_tracking_uri() -> Iterator[None]:
    """The pipeline points MLflow's fluent API at the course server; put it back for the next tests."""
    import mlflow.tracking._tracking_service.utils as tracking_utils

    saved_env, saved_uri = os.environ.get("MLFLOW_TRACKING_URI"), tracking_utils._tracking_uri
    try:
        yield
    finally:
        tracking_utils._tracking_uri = saved_uri
        if saved_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved_env


def land_with_broken_day(context: PipelineContext, days: int) -> None:
    """Land days 1..days as the source system would, with day 1's file schema-broken."""
    for day in range(1, days + 1):
        path = land_day(context.landing_dir, day, context.seed, context.rows_per_day, context.drift_day)
        if day == BROKEN_DAY and "support_tickets_28d" in path.read_text().splitlines()[0]:
            break_raw_file(path, "schema")


def table_rows(context: PipelineContext, table: str) -> list[tuple]:
    from deltalake import DeltaTable

    frame = DeltaTable(context.table(table)).to_pandas()
    frame = frame[sorted(frame.columns)]
    return sorted(map(tuple, frame.astype(str).to_numpy().tolist()))


def delta_versions(context: PipelineContext) -> dict[str, int]:
    from course_utils.pipeline.steps import delta_version

    return {table: delta_version(context.table(table)) for table in TABLES}


def pipeline_state(context: PipelineContext) -> dict[str, Any]:
    """What a pipeline left behind: table contents, finished step runs and their outputs, aliases."""
    runs = context.client.search_runs([context.experiment_id], max_results=1000)
    finished = sorted(
        (r.data.tags["pipeline_step"], r.data.tags["pipeline_day"],
         tuple(sorted((k, v) for k, v in r.data.tags.items()
                      if k.startswith("output.") and k[len("output."):] not in IDENTITY_OUTPUTS
                      and not k.endswith("_version"))))
        for r in runs if r.info.status == "FINISHED")
    model = context.client.get_registered_model(context.model_name)
    return {"tables": {t: table_rows(context, t) for t in TABLES}, "finished_runs": finished,
            "aliases": dict(model.aliases), "model_versions": len(context.client.search_model_versions(
                f"name = '{context.model_name}'"))}


def run_ids(context: PipelineContext) -> set[str]:
    return {r.info.run_id for r in context.client.search_runs([context.experiment_id], max_results=1000)}


@pytest.fixture(scope="module")
def scenario(course_settings) -> Iterator[dict[str, Any]]:
    """Pipeline A in this process; pipeline B headless, killed mid-train and rerun (both: 2 days, day 1 broken)."""
    logging.getLogger("course_utils.pipeline").setLevel(logging.INFO)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with restored_tracking_uri():
        a = PipelineContext.headless("pipe_a", course_settings)
        land_with_broken_day(a, DAYS)
        started = time.time()
        results = run_pipeline(a, days=DAYS, rest=False)
        TIMES["A: 2 days in process"] = time.time() - started
        state_after_two_days = pipeline_state(a)

        b = PipelineContext.headless("pipe_b", course_settings)
        land_with_broken_day(b, DAYS)
        command = [str(Path(sys.executable).parent / "course"), "pipeline", "run", "--days", "2", "--no-rest",
                   "--name", "pipe_b"]
        started = time.time()
        killed = _kill_during(command, f"running: train day {DAYS} (run", after_s=0.5)
        TIMES["B: until SIGKILL"] = time.time() - started
        started = time.time()
        rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
        TIMES["B: rerun to the end"] = time.time() - started
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        yield {"a": a, "b": b, "a_two_days": state_after_two_days, "killed_log": killed,
               "rerun_log": rerun.stderr, "results": results}
        a.stop()
    print("\npipeline test phases (s):", {k: round(v, 1) for k, v in TIMES.items()})


def _kill_during(command: list[str], line: str, after_s: float) -> str:
    """Start the job, SIGKILL its whole process group (JVM included) ``after_s`` after ``line`` appears."""
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                               start_new_session=True)
    seen = []
    try:
        for text in process.stderr:
            seen.append(text)
            if line in text:
                time.sleep(after_s)
                os.killpg(process.pid, signal.SIGKILL)
                break
        else:
            pytest.fail(f"the job ended before {line!r}:\n{''.join(seen)[-3000:]}")
    finally:
        process.wait(timeout=60)
    return "".join(seen)


def test_broken_file_is_quarantined_with_its_reason_and_the_run_continues(scenario) -> None:
    from deltalake import DeltaTable

    a = scenario["a"]
    quarantine = DeltaTable(a.table("quarantine")).to_pandas()
    assert quarantine["day"].tolist() == [BROKEN_DAY]
    assert "schema: missing columns ['support_tickets_28d'], unexpected columns ['tickets_28d']" in quarantine["reason"][0]
    bronze_days = sorted(DeltaTable(a.table("bronze")).to_pandas()["day"].unique().tolist())
    assert bronze_days == [2], "the broken day is not loaded; the next one is"
    # B's first (killed) run met the broken file; its log line says what and that the run goes on.
    assert f"quarantined: day {BROKEN_DAY} (day_0{BROKEN_DAY}.csv): schema:" in scenario["killed_log"]
    assert "the run continues with the next day" in scenario["killed_log"]
    assert [(r.status, r.decisions) for r in scenario["results"]] == [("quarantined", []), ("loaded", ["promoted"])]


def test_running_the_days_again_changes_nothing(scenario) -> None:
    a = scenario["a"]
    versions, runs, aliases = delta_versions(a), run_ids(a), dict(a.client.get_registered_model(a.model_name).aliases)
    a.records.clear()
    with restored_tracking_uri():
        started = time.time()
        run_pipeline(a, days=DAYS, rest=False)
        TIMES["A: both days again (all skipped)"] = time.time() - started
    assert a.records and all(r.skipped for r in a.records), [r.step for r in a.records if not r.skipped]
    assert delta_versions(a) == versions, "no new Delta version"
    assert run_ids(a) == runs, "no new MLflow run"
    assert dict(a.client.get_registered_model(a.model_name).aliases) == aliases, "no alias moved"


def test_killed_job_rerun_ends_like_an_uninterrupted_run(scenario) -> None:
    b = scenario["b"]
    killed = [r for r in b.client.search_runs([b.experiment_id]) if r.info.status == "KILLED"]
    assert [r.data.tags["pipeline_step"] for r in killed] == ["train"], "the job was killed in the middle of train"
    assert "marking run" in scenario["rerun_log"] and "KILLED" in scenario["rerun_log"]
    expected, actual = scenario["a_two_days"], pipeline_state(b)
    assert actual["tables"] == expected["tables"], "same Delta contents (predictions included)"
    assert actual["finished_runs"] == expected["finished_runs"], "same finished step runs and outputs"
    assert actual["aliases"] == expected["aliases"] and actual["model_versions"] == expected["model_versions"]
    assert expected["tables"]["predictions"] and expected["tables"]["stream_predictions"], "there were predictions"


def test_a_degraded_challenger_never_becomes_champion(scenario) -> None:
    a = scenario["a"]
    champion_before = a.client.get_model_version_by_alias(a.model_name, "champion").version
    with restored_tracking_uri():
        records = challenge_with_degraded_model(a, DAYS)
    validated, promoted = records[2], records[3]
    assert validated.outputs["verdict"] == "failed"
    assert "f1_not_worse" in validated.outputs["failed_checks"]
    assert float(validated.outputs["candidate_f1"]) < float(validated.outputs["champion_f1"])
    assert promoted.outputs["decision"] == "kept"
    assert a.client.get_model_version_by_alias(a.model_name, "champion").version == champion_before
    refused = a.client.get_model_version(a.model_name, records[1].outputs["version"])
    assert refused.tags["validation_status"] == "failed" and "refused_on_day" in refused.tags


def test_a_malformed_file_is_quarantined_by_a_real_ingest(scenario) -> None:
    """Rows that do not parse (not a schema change): Spark's corrupt-record count names them."""
    from course_utils.pipeline import steps

    a = scenario["a"]
    path = break_raw_file(land_day(a.landing_dir, 9, a.seed, a.rows_per_day), "malformed")
    with restored_tracking_uri():
        record = steps.ingest(a, 9, path)
    assert record.outputs["status"] == "quarantined"
    assert record.outputs["reason"].startswith(f"malformed: 2 of {a.rows_per_day} rows do not parse")


def test_an_mlproject_entry_point_runs_one_step_of_one_day(scenario) -> None:
    """``mlflow run projects/pipeline -e monitor``: the step of a finished day is found and skipped."""
    a = scenario["a"]
    root = Path(__file__).resolve().parents[2]
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "MLFLOW_TRACKING_URI": a.tracking_uri, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    started = time.time()
    result = subprocess.run(
        [str(bin_dir / "mlflow"), "run", str(root / "projects" / "pipeline"), "-e", "monitor", "-P", f"day={DAYS}",
         "-P", "name=pipe_a", "--env-manager", "local"], env=env, capture_output=True, text=True, timeout=300)
    TIMES["mlflow run -e monitor"] = time.time() - started
    assert result.returncode == 0, result.stderr[-3000:]
    monitor = a.client.search_runs([a.experiment_id], f"tags.pipeline_step = 'monitor' and tags.pipeline_day = '{DAYS}'")
    assert f"monitor day {DAYS}: skipped (run {monitor[0].info.run_id})" in result.stdout


def test_from_a_step_reruns_it_and_every_later_step_without_duplicating_data(scenario) -> None:
    """``--from score_stream``: the steps before it are skipped; it and monitor run again; the rows stay the same."""
    a = scenario["a"]
    stream_rows, runs = table_rows(a, "stream_predictions"), run_ids(a)
    champion = a.client.get_model_version_by_alias(a.model_name, "champion").version
    a.records.clear()
    with restored_tracking_uri():
        started = time.time()
        run_pipeline(a, days=DAYS, from_step="score_stream", rest=False)
        TIMES["A: --from score_stream"] = time.time() - started
    ran = sorted({(r.step, r.day) for r in a.records if not r.skipped})
    assert ran == [("monitor", 2), ("score_stream", 2)], ran
    assert all(r.skipped for r in a.records if r.step not in ("score_stream", "monitor"))
    new_runs = run_ids(a) - runs
    assert new_runs == {r.run_id for r in a.records if not r.skipped}, "each rerun step is a new MLflow run"
    assert table_rows(a, "stream_predictions") == stream_rows, "the rerun stream wrote each row once"
    assert a.client.get_model_version_by_alias(a.model_name, "champion").version == champion
