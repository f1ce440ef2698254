"""The day loop, the model cycle, the degraded-challenger drill and the lineage read-back.

:func:`run_pipeline` walks simulated days 1..N. For each day it lands the raw file (the source
system), then runs the steps; days already done are skipped step by step (a day run twice
changes nothing). The champion in force on each day comes from that day's step outputs, never
from "now", so re-running day 1 after day 5 scores day 1 with the model it had then.

Example (headless, what ``course pipeline run --days 3`` does)::

    context = PipelineContext.headless()
    report = run_pipeline(context, days=3)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from course_utils.pipeline import steps
from course_utils.pipeline.context import STEPS, PipelineContext, PipelineError, StepRecord
from course_utils.pipeline.data import land_day

logger = logging.getLogger("course_utils.pipeline")

MAX_DAYS = 60


@dataclass
class DayResult:
    """One simulated day: loaded or quarantined, the champion after it, drift, and the seconds it took."""

    day: int
    status: str
    champion: str
    drifted_columns: str = "none"
    decisions: list[str] = field(default_factory=list)
    seconds: float = 0.0
    gold_version: int = -1


def check_days(days: Any) -> int:
    """``--days``: a whole number from 1 to :data:`MAX_DAYS`."""
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise PipelineError(f"--days {days!r}: give a whole number of simulated days from 1 to {MAX_DAYS}, e.g. --days 3.")
    return days


def check_step(step: str | None) -> str | None:
    """``--from``: one of :data:`~course_utils.pipeline.context.STEPS`."""
    if step is not None and step not in STEPS:
        raise PipelineError(f"--from {step!r} is not a pipeline step; use one of {', '.join(STEPS)}.")
    return step


def forced_steps(from_step: str | None, force: bool) -> frozenset[str]:
    """``--force``: every step runs again; ``--from STEP``: STEP and every later step run again."""
    if force:
        return frozenset(STEPS)
    if from_step is None:
        return frozenset()
    return frozenset(STEPS[STEPS.index(from_step):])


def model_cycle(context: PipelineContext, day: int, gold_version: int, champion: str,
                alert: str = steps.NO_MODEL, degraded: bool = False) -> tuple[str, list[StepRecord]]:
    """Train (or retrain on ``alert``) -> register as challenger -> validate against the champion -> promote or keep."""
    trained = steps.train(context, day, gold_version, alert=alert, degraded=degraded)
    registered = steps.register(context, day, trained)
    version = registered.outputs["version"]
    validated = steps.validate(context, day, version, gold_version, champion)
    promoted = steps.promote(context, day, version, validated.outputs["verdict"], champion)
    return promoted.outputs["champion_version"], [trained, registered, validated, promoted]


def run_day(context: PipelineContext, day: int, champion: str) -> DayResult:
    """Every step of one day, in order; a quarantined batch ends the day (the next day runs as usual)."""
    started = time.time()
    raw = land_day(context.landing_dir, day, context.seed, context.rows_per_day, context.drift_day)
    ingested = steps.ingest(context, day, raw)
    if ingested.outputs["status"] != "loaded":
        return DayResult(day, "quarantined", champion, seconds=round(time.time() - started, 2))
    featurised = steps.featurise(context, day, int(ingested.outputs["bronze_version"]))
    gold_version = int(featurised.outputs["gold_version"])
    decisions = []
    if champion == steps.NO_MODEL:
        champion, records = model_cycle(context, day, gold_version, champion)
        decisions.append(records[-1].outputs["decision"])
    steps.score_batch(context, day, gold_version, champion)
    steps.score_stream(context, day, gold_version, champion)
    monitored = steps.monitor(context, day, gold_version, champion)
    if monitored.outputs["drift_detected"] == "True":
        champion, records = model_cycle(context, day, gold_version, champion, alert=monitored.outputs["alert"])
        decisions.append(records[-1].outputs["decision"])
    return DayResult(day, "loaded", champion, monitored.outputs["drifted_columns"], decisions,
                     round(time.time() - started, 2), gold_version)


def run_pipeline(context: PipelineContext, days: int, from_step: str | None = None, force: bool = False,
                 rest: bool = True) -> list[DayResult]:
    """Simulated days 1..``days``; REST scoring (a model server and the router) on the last loaded day only."""
    check_days(days)
    context.force_steps = forced_steps(check_step(from_step), force)
    champion = steps.NO_MODEL
    results = []
    for day in range(1, days + 1):
        result = run_day(context, day, champion)
        champion = result.champion
        results.append(result)
        logger.info("day %d: %s, champion v%s, drift %s (%.1f s)", day, result.status, champion,
                    result.drifted_columns, result.seconds)
    loaded = [r for r in results if r.status == "loaded"]
    if rest and loaded:
        last = loaded[-1]
        started = time.time()
        steps.score_rest(context, last.day, last.gold_version, last.champion)
        last.seconds = round(last.seconds + time.time() - started, 2)
    return results


def run_one_step(context: PipelineContext, step: str, day: int) -> StepRecord:
    """One step of one day (an MLflow Project entry point): every step before it must have run."""
    check_step(step)
    check_days(day)
    context.only = (step, day)
    try:
        run_pipeline(context, day, rest=(step == "score_rest"))
    finally:
        context.only = None
    matching = [r for r in context.records if (r.step, r.day) == (step, day)]
    if not matching:
        raise PipelineError(f"step {step} did not run for day {day} (the batch may be quarantined, or "
                            f"{step} only runs when a model is (re)trained).")
    return matching[-1]


def challenge_with_degraded_model(context: PipelineContext, day: int) -> list[StepRecord]:
    """The drill: a challenger trained on shuffled labels goes through the same gate, and must be refused."""
    featurised = [r for r in context.records if (r.step, r.day) == ("featurise", day)]
    if not featurised:
        raise PipelineError(f"day {day} has not been featurised in this context; run the pipeline up to day {day} first.")
    champion = current_champion(context)
    _, records = model_cycle(context, day, int(featurised[-1].outputs["gold_version"]), champion, degraded=True)
    return records


def current_champion(context: PipelineContext) -> str:
    """The version the ``champion`` alias points at now (read from the registry)."""
    return str(context.client.get_model_version_by_alias(context.model_name, steps.CHAMPION).version)


def lineage(context: PipelineContext) -> dict[str, Any]:
    """How the current champion was made, read back from the registry, its runs and the Delta logs."""
    from deltalake import DeltaTable

    client = context.client
    version = client.get_model_version_by_alias(context.model_name, steps.CHAMPION)
    train_run = client.get_run(version.run_id)
    tags, params = train_run.data.tags, train_run.data.params
    gold_version = int(tags["input.gold"])
    gold_history = {int(h["version"]): h for h in DeltaTable(context.table("gold")).history()}
    featurise_run = _run_with_output(context, "featurise", "gold_version", str(gold_version))
    bronze_version = int(featurise_run.data.tags["input.bronze"]) if featurise_run else None
    alert_id = tags.get("param.triggered_by_alert", steps.NO_MODEL)
    alert = None
    if alert_id != steps.NO_MODEL:
        alert_run = client.get_run(alert_id)
        alert = {"run_id": alert_id, "day": int(alert_run.data.tags["pipeline_day"]),
                 "drifted_columns": alert_run.data.tags["output.drifted_columns"]}
    inputs = train_run.inputs.dataset_inputs
    return {
        "model": context.model_name,
        "champion_version": str(version.version),
        "train_run": train_run.info.run_id,
        "validation": version.tags.get("validation_status"),
        "gold_table": tags["gold_table"],
        "gold_version": gold_version,
        "gold_operation": gold_history[gold_version]["operation"],
        "bronze_version": bronze_version,
        "mlflow_dataset_source": inputs[0].dataset.source if inputs else None,
        "feature_service": tags["feature_service"],
        "code_version": tags["pipeline_code_version"],
        "git_commit": tags.get("mlflow.source.git.commit"),
        "params": {k: params[k] for k in sorted(params)},
        "train_days": tags["param.train_days"],
        "triggered_by_alert": alert,
    }


def _run_with_output(context: PipelineContext, step: str, output: str, value: str) -> Any | None:
    runs = context.client.search_runs(
        [context.experiment_id],
        filter_string=f"tags.pipeline_step = '{step}' and tags.`output.{output}` = '{value}' and attributes.status = 'FINISHED'",
        max_results=1)
    return runs[0] if runs else None
