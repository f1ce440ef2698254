"""The lesson lifecycle: ``start_lesson`` -> work -> ``record`` results -> ``reset``.

Every notebook begins with one explicit call::

    lesson = start_lesson("01a_delta_lake", seed=42, profile="ci")

The returned :class:`Lesson` owns the lesson's folder under ``workspace/lessons/``, its
Delta table paths, its Spark session, its MLflow experiment, and the values it records
for the tests. Nothing happens at import time and nothing is global: two lessons never
share a folder, a table or an experiment.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from course_utils.config import PROFILES, Settings, load_settings, loopback_proxy_bypass
from course_utils.errors import CourseError
from course_utils.timing import timed
from course_utils.tracking import delete_lesson_tracking, ensure_lesson_experiment
from course_utils.workspace import claim_workspace

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from course_utils.datasets import DatasetPaths

logger = logging.getLogger(__name__)


class UnknownLessonError(CourseError, ValueError):
    """The lesson name matches no notebook in the course."""


def known_lessons(settings: Settings | None = None) -> list[str]:
    """Lesson names: the file stems of the course notebooks (labs share their solution's name)."""
    settings = settings or load_settings()
    stems = {p.stem for p in settings.notebooks.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts}
    return sorted(stems)


def validate_lesson_name(name: str, settings: Settings | None = None) -> str:
    """Return ``name`` if it is a course lesson; otherwise raise with the list of valid names."""
    lessons = known_lessons(settings)
    if name not in lessons:
        close = [lesson for lesson in lessons if name and (name in lesson or lesson.startswith(name[:3]))]
        suggestion = f" Did you mean {', '.join(close[:3])}?" if close else ""
        raise UnknownLessonError(
            f"{name!r} is not a lesson of this course.{suggestion} Known lessons: {', '.join(lessons)}."
        )
    return name


@dataclass
class Lesson:
    """One lesson's paths, Spark session, MLflow experiment and recorded results."""

    name: str
    params: dict[str, Any]
    settings: Settings
    _spark: SparkSession | None = field(default=None, repr=False)
    _experiment_id: str | None = field(default=None, repr=False)
    _datasets: DatasetPaths | None = field(default=None, repr=False)

    # --- paths -------------------------------------------------------------------------------
    @property
    def dir(self) -> Path:
        """The lesson's own folder under the workspace."""
        return self.settings.workspace / "lessons" / self.name

    @property
    def profile(self) -> str:
        return str(self.params.get("profile", self.settings.profile))

    @property
    def seed(self) -> int:
        return int(self.params.get("seed", 42))

    def path(self, *parts: str) -> Path:
        """A path inside the lesson folder (parent folders are created)."""
        target = self.dir.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def delta_path(self, table: str) -> str:
        """Where the lesson's Delta table ``table`` lives (as a string for Spark)."""
        if not table.replace("_", "").isalnum():
            raise ValueError(f"Table name {table!r} should use only letters, digits and underscores.")
        return str(self.path("delta", table))

    @property
    def datasets(self) -> DatasetPaths:
        """The course dataset files for this lesson's profile (generated once if missing, verified once per lesson)."""
        from course_utils.datasets import dataset_paths, ensure_datasets

        if self._datasets is None:
            settings = self.settings if self.profile == self.settings.profile else _with_profile(self.settings, self.profile)
            self._datasets = dataset_paths(ensure_datasets(settings))
        return self._datasets

    # --- engines -----------------------------------------------------------------------------
    @property
    def spark(self) -> SparkSession:
        """The Spark session with Delta (started on first use)."""
        if self._spark is None:
            from course_utils.spark import get_spark

            self._spark = get_spark(f"course-{self.name}", self.settings)
        return self._spark

    @property
    def tracking_uri(self) -> str:
        """The tracking server URI, after making sure the server answers."""
        from course_utils.services import check_tracking_server, ensure_tracking_server
        from course_utils.tracking import skip_unused_request_header_providers

        skip_unused_request_header_providers()
        uri = ensure_tracking_server(self.settings)
        check_tracking_server(uri)
        return uri

    @property
    def experiment_name(self) -> str:
        return f"/course/{self.name}"

    @property
    def experiment_id(self) -> str:
        """The lesson's MLflow experiment (created with an explicit artifact location)."""
        if self._experiment_id is None:
            import mlflow

            mlflow.set_tracking_uri(self.tracking_uri)
            experiment_id = ensure_lesson_experiment(mlflow.MlflowClient(), self.experiment_name, self.name,
                                                     own_server=self.settings.uses_own_tracking_server)
            mlflow.set_experiment(experiment_id=experiment_id)
            self._experiment_id = experiment_id
        return self._experiment_id

    # --- results -----------------------------------------------------------------------------
    @property
    def results_path(self) -> Path:
        return self.settings.results_dir / f"{self.name}.json"

    def record(self, key: str, value: Any) -> Any:
        """Record a value the tests will assert on; returns the value for display."""
        results = self.results()
        results[key] = _jsonable(value)
        self.results_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.results_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=2, sort_keys=True))
        tmp.replace(self.results_path)
        return value

    def results(self) -> dict[str, Any]:
        """Everything recorded so far by this lesson."""
        if not self.results_path.exists():
            return {}
        return json.loads(self.results_path.read_text())

    # --- lifecycle ---------------------------------------------------------------------------
    def reset(self) -> None:
        """Remove the lesson's folder, results, MLflow runs and registered models."""
        if self._spark is not None:
            self._spark.catalog.clearCache()
        shutil.rmtree(self.dir, ignore_errors=True)
        self.results_path.unlink(missing_ok=True)
        self._reset_tracking()

    def _reset_tracking(self) -> None:
        if self.settings.uses_own_tracking_server and not (self.settings.mlflow_dir / "mlflow.db").exists():
            return  # the course's server never stored anything, so there is nothing to delete
        delete_lesson_tracking(self.tracking_uri, self.name, self.experiment_name)
        self._experiment_id = None

    def stop(self) -> None:
        """Stop the lesson's Spark session (the tracking server keeps running for the next lesson)."""
        if self._spark is not None:
            self._spark.stop()
            self._spark = None


def start_lesson(name: str, *, reset: bool = False, settings: Settings | None = None, **params: Any) -> Lesson:
    """Begin a lesson: validate its name, create its folder, optionally reset it first.

    Args:
        name: the notebook's file stem, e.g. ``"01a_delta_lake"``.
        reset: remove what an earlier run of this lesson left (folder, runs, models) first.
        settings: explicit settings (tests); default from the environment.
        params: the notebook's parameters (``seed``, ``profile``, ...), kept on the lesson.
    """
    settings = settings or load_settings()
    validate_lesson_name(name, settings)
    validate_params(reset=reset, **params)
    os.environ.update(loopback_proxy_bypass(os.environ))  # MLflow's client must reach 127.0.0.1 directly
    claim_workspace(settings)
    lesson = Lesson(name=name, params=dict(params), settings=settings)
    if reset:
        with timed("lesson reset"):
            lesson.reset()
    lesson.dir.mkdir(parents=True, exist_ok=True)
    lesson.record("params", lesson.params)
    return lesson


def validate_params(reset: Any = False, **params: Any) -> None:
    """Check a notebook's parameters where they enter, so a typo fails here and not cells later.

    Raises:
        ValueError: naming the parameter, the value given, and what it should be.
    """
    if not isinstance(reset, bool):
        raise ValueError(f"reset={reset!r} should be True or False.")
    seed = params.get("seed", 42)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r} should be a whole number of 0 or more, e.g. seed=42.")
    profile = params.get("profile", PROFILES[0])
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is not a data profile; use one of {', '.join(PROFILES)}.")


def _with_profile(settings: Settings, profile: str) -> Settings:
    from dataclasses import replace

    return replace(settings, profile=profile)


def _jsonable(value: Any) -> Any:
    """Numpy scalars and paths to plain JSON types, so recording never fails on types."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value
