"""Where a pipeline keeps its state, and how a step is keyed, skipped or run.

A :class:`PipelineContext` names one pipeline: its folder (landing files, Delta tables, stream
checkpoints, Feast repository), its MLflow experiment and its registered model. It holds a
:class:`~course_utils.lesson.Lesson` for the folder, Spark session and experiment, as every notebook
does. The notebook, ``course pipeline run`` and the MLflow Project entry points all build the same
context, so they share the same state.

:func:`run_step` makes every step idempotent. A step's key is a hash of its name, its day, its
inputs' Delta versions (or file digests), its parameters and the code version (a hash of this
package's source). The key is stored as the MLflow run tag ``pipeline_key``; when a FINISHED run
with the key exists, the step is skipped and logs ``skipped: <step> day <n> (run <id>)``, and the
outputs it recorded (``output.*`` tags) are returned as they were. A run left RUNNING by a killed
job never matches; it is marked KILLED when that step of that day runs again.

Example:
    >>> step_key("ingest", 1, {"raw": "ab12"}, {"rows": 400}, "c0de")[:12]   # doctest: +SKIP
    '5d1c0e4b9a7f'
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from course_utils.config import Settings, load_settings
from course_utils.errors import CourseError
from course_utils.lesson import Lesson
from course_utils.timing import timed

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from pyspark.sql import SparkSession

logger = logging.getLogger("course_utils.pipeline")

LESSON_NAME = "05_end_to_end_pipeline"
KEY_TAG = "pipeline_key"
STEP_TAG = "pipeline_step"
DAY_TAG = "pipeline_day"
CODE_TAG = "pipeline_code_version"
INPUT_PREFIX = "input."
PARAM_PREFIX = "param."
OUTPUT_PREFIX = "output."
# The steps in the order a day runs them (``--from`` names one of these).
STEPS = (
    "ingest", "featurise", "train", "register", "validate", "promote",
    "score_batch", "score_stream", "monitor", "score_rest",
)
PROFILE_ROWS = {"ci": 400, "full": 4_000}  # rows per simulated day
FEAST_STEPS = ("ingest", "featurise", "train")  # a step about to run that will be followed by Feast's


class PipelineError(CourseError, ValueError):
    """A pipeline was asked for something it cannot do; the message says what to change."""


@dataclass(frozen=True)
class StepRecord:
    """What one step did for one day: ran or skipped, its run, key and recorded outputs."""

    step: str
    day: int
    run_id: str
    key: str
    skipped: bool
    outputs: dict[str, str]
    seconds: float


@dataclass
class PipelineContext:
    """One pipeline's lesson (folder, Spark session, MLflow experiment), registered model and step records."""

    lesson: Lesson
    rows_per_day: int = PROFILE_ROWS["ci"]
    drift_day: int = 3
    force_steps: frozenset[str] = frozenset()
    only: tuple[str, int] | None = None  # (step, day): run just this step, everything before must be done
    records: list[StepRecord] = field(default_factory=list)
    _client: MlflowClient | None = field(default=None, repr=False)
    _tracking_uri: str | None = field(default=None, repr=False)
    _experiment_id: str | None = field(default=None, repr=False)
    _code_version: str | None = field(default=None, repr=False)

    # --- construction -----------------------------------------------------------------------
    @classmethod
    def from_lesson(cls, lesson: Lesson, **kwargs: Any) -> PipelineContext:
        """The notebook's pipeline: the lesson's folder, Spark session and experiment."""
        return cls(lesson=lesson, rows_per_day=PROFILE_ROWS[lesson.profile], **kwargs)

    @classmethod
    def headless(cls, name: str = LESSON_NAME, settings: Settings | None = None, seed: int = 42,
                 **kwargs: Any) -> PipelineContext:
        """The same pipeline for ``course pipeline run`` and the MLflow Project entry points."""
        from course_utils.workspace import claim_workspace

        settings = settings or load_settings()
        check_name(name)
        claim_workspace(settings)
        lesson = Lesson(name=name, params={"seed": seed, "profile": settings.profile}, settings=settings)
        return cls(lesson=lesson, rows_per_day=PROFILE_ROWS[settings.profile], **kwargs)

    def stop(self) -> None:
        """Stop the pipeline's Spark session (the tracking server keeps running)."""
        self.lesson.stop()

    # --- places -----------------------------------------------------------------------------
    @property
    def settings(self) -> Settings:
        return self.lesson.settings

    @property
    def name(self) -> str:
        return self.lesson.name

    @property
    def seed(self) -> int:
        return self.lesson.seed

    @property
    def dir(self) -> Path:
        return self.lesson.dir

    @property
    def landing_dir(self) -> Path:
        """Where the source system drops each day's raw file (``day_NN.csv``)."""
        return self.dir / "landing"

    def table(self, name: str) -> str:
        """Path of one of the pipeline's Delta tables."""
        return str(self.dir / "delta" / name)

    def checkpoint(self, name: str) -> str:
        return str(self.dir / "checkpoints" / name)

    @property
    def feature_repo(self) -> Path:
        return self.dir / "feature_repo"

    @property
    def model_name(self) -> str:
        return f"{self.name.replace('_', '-')}-churn"

    @property
    def experiment_name(self) -> str:
        return self.lesson.experiment_name

    # --- engines ----------------------------------------------------------------------------
    @property
    def spark(self) -> SparkSession:
        return self.lesson.spark

    @property
    def tracking_uri(self) -> str:
        if self._tracking_uri is None:  # checked once: every step asks for it
            self._tracking_uri = self.lesson.tracking_uri
        return self._tracking_uri

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        return self._client

    @property
    def experiment_id(self) -> str:
        # Not the lesson's: that one also makes it MLflow's active experiment, which would bind every
        # later ``start_run`` in this process (another pipeline's included) to this experiment.
        if self._experiment_id is None:
            from course_utils.tracking import ensure_lesson_experiment

            self._experiment_id = ensure_lesson_experiment(self.client, self.experiment_name, self.name,
                                                           own_server=self.settings.uses_own_tracking_server)
        return self._experiment_id

    @property
    def code_version(self) -> str:
        """sha256 (12 hex digits) of this package's source: a change to any step changes every key."""
        if self._code_version is None:
            self._code_version = source_hash(Path(__file__).parent)
        return self._code_version


def check_name(name: str) -> str:
    """A pipeline name is used in folder, experiment and model names: letters, digits, '_' and '-'."""
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise PipelineError(f"pipeline name {name!r} should use only letters, digits, '_' and '-', e.g. {LESSON_NAME}.")
    return name


def source_hash(package_dir: Path) -> str:
    """sha256 over the package's ``.py`` files (relative path and bytes), shortened to 12 hex digits."""
    digest = hashlib.sha256()
    for path in sorted(Path(package_dir).rglob("*.py")):
        digest.update(str(path.relative_to(package_dir)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def step_key(step: str, day: int, inputs: Mapping[str, Any], params: Mapping[str, Any], code_version: str) -> str:
    """The idempotence key: sha256 of the step, day, inputs' versions, parameters and code version."""
    payload = json.dumps({"step": step, "day": day, "inputs": dict(inputs), "params": dict(params),
                          "code": code_version}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def finished_run(context: PipelineContext, key: str) -> Any | None:
    """The FINISHED run carrying ``key``, or None."""
    runs = context.client.search_runs(
        [context.experiment_id], filter_string=f"tags.{KEY_TAG} = '{key}' and attributes.status = 'FINISHED'",
        max_results=1)
    return runs[0] if runs else None


def run_step(
    context: PipelineContext,
    step: str,
    day: int,
    inputs: Mapping[str, Any],
    params: Mapping[str, Any],
    body: Callable[[str], Mapping[str, Any]],
) -> StepRecord:
    """Run ``body(run_id)`` as the MLflow run of ``step`` for ``day``, unless its key already finished.

    ``body`` returns the step's outputs (Delta versions, verdicts ...), stored as ``output.*`` tags
    so a skipped step hands the very same outputs to the next step.
    """
    import mlflow

    started = time.time()
    key = step_key(step, day, inputs, params, context.code_version)
    forced = step in context.force_steps
    done = None if forced else finished_run(context, key)
    if done is not None:
        outputs = {k[len(OUTPUT_PREFIX):]: v for k, v in done.data.tags.items() if k.startswith(OUTPUT_PREFIX)}
        logger.info("skipped: %s day %d (run %s)", step, day, done.info.run_id)
        record = StepRecord(step, day, done.info.run_id, key, True, outputs, round(time.time() - started, 3))
        context.records.append(record)
        return record
    if context.only is not None and context.only != (step, day):
        raise PipelineError(
            f"step {step} of day {day} has not run yet, so step {context.only[0]} of day {context.only[1]} cannot run "
            f"on its own: run `course pipeline run --days {context.only[1]}` (or the '{step}' entry point first).")
    if step in FEAST_STEPS:
        prewarm_feast()
    _mark_stale_runs_killed(context, step, day)
    tags = {KEY_TAG: key, STEP_TAG: step, DAY_TAG: str(day), CODE_TAG: context.code_version,
            **{INPUT_PREFIX + k: str(v) for k, v in inputs.items()},
            **{PARAM_PREFIX + k: str(v) for k, v in params.items()}}
    mlflow.set_tracking_uri(context.tracking_uri)
    run = context.client.create_run(context.experiment_id, run_name=f"day{day:02d}-{step}", tags=tags)
    run_id = run.info.run_id
    logger.info("running: %s day %d (run %s)", step, day, run_id)
    try:
        with timed(f"pipeline {step}: day {day}"), mlflow.start_run(run_id=run_id):
            if params:
                mlflow.log_params(dict(params))
            outputs = {k: str(v) for k, v in body(run_id).items()}
            for k, v in outputs.items():
                mlflow.set_tag(OUTPUT_PREFIX + k, v)
    except BaseException:
        logger.error("failed: %s day %d (run %s)", step, day, run_id)
        raise
    record = StepRecord(step, day, run_id, key, False, outputs, round(time.time() - started, 3))
    context.records.append(record)
    return record


def prewarm_feast() -> None:
    """Import Feast (5-9 s) in a background thread while Spark ingests: featurise and train need it next."""
    import sys
    import threading

    if "feast" not in sys.modules and not any(t.name == "import-feast" for t in threading.enumerate()):
        threading.Thread(target=lambda: __import__("feast"), name="import-feast", daemon=True).start()


def _mark_stale_runs_killed(context: PipelineContext, step: str, day: int) -> None:
    """Runs of this step and day left RUNNING by a killed job: mark them KILLED so nobody mistakes them for live.

    (The pipeline has one writer: a scheduler never starts a run while the previous one still runs.)
    """
    stale = context.client.search_runs(
        [context.experiment_id],
        filter_string=f"tags.{STEP_TAG} = '{step}' and tags.{DAY_TAG} = '{day}' and attributes.status = 'RUNNING'")
    for run in stale:
        logger.warning("marking run %s of an interrupted job KILLED", run.info.run_id)
        context.client.set_terminated(run.info.run_id, status="KILLED")
