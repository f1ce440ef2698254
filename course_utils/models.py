"""The course's churn model: how it is built, logged safely, and registered as ``champion``.

Module 02 teaches the registry step by step; deployment and production lessons only need
*a* registered champion. :func:`require_champion` builds exactly that when it is missing —
the prerequisite an earlier lesson would have left behind — so any lesson runs on its own.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from course_utils.config import repo_root
from course_utils.datasets import DRIFT_WINDOWS
from course_utils.errors import CourseError
from course_utils.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from course_utils.timing import timed

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline

    from course_utils.lesson import Lesson

CHURN_MODEL_NAME = "streamly-churn"
CHAMPION = "champion"
LABEL = "churned_next_month"
FEATURES = (*NUMERIC_FEATURES, *CATEGORICAL_FEATURES)
SHARED_TAG = "course_shared"

# MLflow 3.17 saves scikit-learn models with skops and refuses types it cannot vouch for.
# The tree structure is safe here because this course created the file itself; trusting
# only this one reviewed type keeps every other check switched on.
TRUSTED_TREE_TYPES = ["sklearn.tree._tree.Tree"]
CHURN_MODEL_PACKAGES = ("mlflow", "scikit-learn", "skops", "pandas", "numpy", "scipy")


class LockFileError(CourseError, LookupError):
    """A package the model needs is not pinned in requirements.lock."""


def pinned_requirements(packages: tuple[str, ...] = CHURN_MODEL_PACKAGES) -> list[str]:
    """``pip_requirements`` for a model: each package at its version in ``requirements.lock``.

    Passing them to ``log_model`` skips MLflow's requirement inference, which re-imports the
    model in a subprocess at every call (5-8 s each); lesson 02a shows what inference captures.

    >>> pinned_requirements(("mlflow",))[0].startswith("mlflow==")
    True
    """
    lock = (repo_root() / "requirements.lock").read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", lock, flags=re.MULTILINE))
    pins = {name.lower().replace("_", "-"): version for name, version in pins.items()}
    missing = [name for name in packages if name.lower().replace("_", "-") not in pins]
    if missing:
        raise LockFileError(f"{', '.join(missing)} not pinned in requirements.lock; add it to requirements.in and re-lock.")
    return [f"{name}=={pins[name.lower().replace('_', '-')]}" for name in packages]


def reference_window() -> tuple[str, str]:
    """Training period: the dataset's drift-free reference window, as ISO dates."""
    window = DRIFT_WINDOWS["reference"]
    return window.start.isoformat(), window.end.isoformat()


def churn_pipeline(seed: int = 42, n_estimators: int = 50, max_depth: int | None = 8) -> Pipeline:
    """One-hot for the categorical features, a random forest on top: raw columns in, churn out."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    encode = ColumnTransformer(
        [("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), list(CATEGORICAL_FEATURES))],
        remainder="passthrough",
        verbose_feature_names_out=False,
    )
    forest = RandomForestClassifier(
        n_estimators=n_estimators, max_depth=max_depth, class_weight="balanced", random_state=seed, n_jobs=1
    )
    return Pipeline([("encode", encode), ("model", forest)])


def feature_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The model's input columns in a fixed order, with float numerics (so signatures are stable)."""
    inputs = frame[list(FEATURES)].copy()
    for column in NUMERIC_FEATURES:
        inputs[column] = inputs[column].astype("float64")
    return inputs


def log_churn_model(pipeline: Pipeline, example: pd.DataFrame, **kwargs: Any) -> Any:
    """Log a fitted churn pipeline with signature, input example and the trusted tree type.

    Requirements are pinned from the lock file unless ``pip_requirements``, ``extra_pip_requirements``
    or ``conda_env`` is given (``infer_requirements=True`` asks MLflow to infer them, as 02a shows).
    """
    import mlflow
    from mlflow.models import infer_signature

    signature = infer_signature(example, pipeline.predict(example))
    environment_keys = ("pip_requirements", "extra_pip_requirements", "conda_env")
    if not kwargs.pop("infer_requirements", False) and not any(key in kwargs for key in environment_keys):
        kwargs["pip_requirements"] = pinned_requirements()
    return mlflow.sklearn.log_model(
        pipeline,
        name="model",
        signature=signature,
        input_example=example.head(5),
        skops_trusted_types=TRUSTED_TREE_TYPES,
        **kwargs,
    )


def champion_uri(name: str = CHURN_MODEL_NAME) -> str:
    """``models:/<name>@champion``."""
    return f"models:/{name}@{CHAMPION}"


def require_champion(lesson: Lesson, name: str = CHURN_MODEL_NAME) -> str:
    """A registered churn model with the ``champion`` alias; trained and registered if missing."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from course_utils.features import training_frame

    tracking_uri = lesson.tracking_uri
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        client.get_model_version_by_alias(name, CHAMPION)
        return champion_uri(name)
    except MlflowException:
        pass  # not there yet: build it below

    with timed("prerequisite: champion"):
        start, end = reference_window()
        frame = training_frame(lesson, start, end)
        inputs = feature_frame(frame)
        pipeline = churn_pipeline(lesson.seed).fit(inputs, frame[LABEL])
        mlflow.set_tracking_uri(tracking_uri)
        experiment = mlflow.set_experiment("/course/shared-models")
        with mlflow.start_run(experiment_id=experiment.experiment_id, run_name="champion-prerequisite") as run:
            mlflow.log_params({"trained_from": start, "trained_to": end, "rows": len(frame), "built_by": lesson.name})
            info = log_churn_model(pipeline, inputs)
        if not client.search_registered_models(f"name = '{name}'"):
            client.create_registered_model(name, tags={SHARED_TAG: "true"}, description="Streamly churn classifier (course prerequisite).")
        version = client.create_model_version(name, info.model_uri, run_id=run.info.run_id, model_id=info.model_id)
        client.set_registered_model_alias(name, CHAMPION, version.version)
    return champion_uri(name)
