"""MLflow helpers shared by lessons: clean-up on reset and the registry round trip of `course doctor`."""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

logger = logging.getLogger(__name__)

LESSON_TAG = "course_lesson"
FEAST_HEADER_PROVIDER = ("mlflow.request_header_provider", "feast")


def skip_unused_request_header_providers() -> None:
    """Keep Feast's MLflow request-header plugin out of this process's MLflow client.

    Feast registers an ``mlflow.request_header_provider`` entry point (Kubernetes tokens for its
    own MLflow-backed data sources). MLflow loads every such plugin at a process's first request,
    and loading Feast's imports all of ``feast``: measured 5-9 s in every kernel, receiver and
    subprocess that talks to a tracking server, for a header the course's local servers never
    need. Call this before the first MLflow request; lessons that use Feast still import it.
    """
    import sys

    if "mlflow.tracking.request_header.registry" in sys.modules:
        return  # the providers are registered once per process; too late to choose
    import mlflow.utils.plugins as plugins

    load_all = plugins.get_entry_points

    def without_feast(group: str) -> list:
        return [entry for entry in load_all(group) if (group, entry.name) != FEAST_HEADER_PROVIDER]

    plugins.get_entry_points = without_feast
    try:
        import mlflow.tracking.request_header.registry  # noqa: F401  (registers the providers now)
    finally:
        plugins.get_entry_points = load_all


def ensure_lesson_experiment(client: MlflowClient, experiment_name: str, lesson_name: str, own_server: bool = True) -> str:
    """The id of the lesson's experiment: created if missing, restored if deleted.

    On the course's own server its artifacts go to ``lessons/<lesson>`` (readable in the artifact
    store). On any other server they go where that server puts them (``<experiment id>/...``):
    MLflow's basic-auth app judges an artifact upload by the experiment id that starts its path,
    and denies one it cannot find to everyone but the admin.
    """
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        location = f"mlflow-artifacts:/lessons/{lesson_name}" if own_server else None
        return client.create_experiment(experiment_name, artifact_location=location, tags={LESSON_TAG: lesson_name})
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    return experiment.experiment_id


def delete_lesson_tracking(tracking_uri: str, lesson_name: str, experiment_name: str) -> dict[str, int]:
    """Delete a lesson's runs and the registered models tagged with the lesson's name."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    deleted_runs = 0
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is not None:
        page_token = None
        while True:
            runs = client.search_runs([experiment.experiment_id], max_results=1000, page_token=page_token)
            for run in runs:
                client.delete_run(run.info.run_id)
                deleted_runs += 1
            page_token = runs.token
            if not page_token:
                break
    deleted_models = 0
    for model in client.search_registered_models(filter_string=f"tags.{LESSON_TAG} = '{lesson_name}'"):
        client.delete_registered_model(model.name)
        deleted_models += 1
    return {"runs": deleted_runs, "registered_models": deleted_models}


def registry_round_trip(tracking_uri: str) -> str:
    """Log a tiny pyfunc model, register it, load it by alias, then delete it; returns the model URI."""
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient

    class _Doubler(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input: pd.DataFrame) -> pd.Series:  # noqa: ARG002
            return model_input["x"] * 2

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    name = f"course-doctor-{uuid.uuid4().hex[:8]}"
    mlflow.set_tracking_uri(tracking_uri)
    experiment = mlflow.set_experiment("/course/doctor")
    try:
        with mlflow.start_run(experiment_id=experiment.experiment_id) as run:
            # Explicit requirements: inferring them spawns a Python subprocess (~5 s) that a
            # registry health check does not need.
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=_Doubler(),
                input_example=pd.DataFrame({"x": [1.0]}),
                pip_requirements=[f"mlflow=={mlflow.__version__}", f"pandas=={pd.__version__}"],
            )
        client.create_registered_model(name)
        version = client.create_model_version(name=name, source=info.model_uri, run_id=run.info.run_id, model_id=info.model_id)
        client.set_registered_model_alias(name, "champion", version.version)
        model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
        prediction = list(model.predict(pd.DataFrame({"x": [2.0]})))
        if prediction != [4.0]:
            raise RuntimeError(f"The registered test model predicted {prediction}, expected [4.0].")
        client.delete_run(run.info.run_id)
        return f"models:/{name}@champion"
    finally:
        if client.search_registered_models(f"name = '{name}'"):
            client.delete_registered_model(name)


# MLflow 3's UI opens in its GenAI view unless the URL asks for the "Model training" one; the choice is
# read from the `workflowType` query parameter, else from the browser's localStorage (default: genai).
# Measured in a browser: experiment and run pages honour it; the model registry pages do not need it.
MODEL_TRAINING_VIEW = "workflowType=machine_learning"


def mlflow_ui_url(tracking_uri: str, page: str = "experiments") -> str:
    """A link into the MLflow UI's "Model training" view, e.g. ``mlflow_ui_url(uri, f"experiments/{id}")``.

    Example:
        >>> mlflow_ui_url("http://127.0.0.1:5005/", "experiments/3")
        'http://127.0.0.1:5005/#/experiments/3?workflowType=machine_learning'
    """
    return f"{tracking_uri.rstrip('/')}/#/{page.strip('/')}?{MODEL_TRAINING_VIEW}"
