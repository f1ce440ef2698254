"""The course against a team's shared, authenticated MLflow server (the README's "Running on a cluster").

A second MLflow server with the basic-auth app, with its own backend store, artifacts and users
in a workspace of its own, stands in for a team's server. Only ``MLFLOW_TRACKING_URI``,
``MLFLOW_TRACKING_USERNAME`` and ``MLFLOW_TRACKING_PASSWORD`` change; lesson 01c (tracking) and
lesson 02b (registry) then run unchanged and record what they record on the course's own
server (the notebook tests' expectations hold). Their runs and models are on the team server,
owned by the user who ran them; a colleague without a grant gets MLflow's 403.
"""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable
from unittest import mock

import pytest
from mlflow.exceptions import MlflowException

from course_utils.access_control import AuthServer, http_status, start_auth_server
from course_utils.config import load_settings
from course_utils.config import KERNEL_NAME

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
LESSONS = {
    "01c_experiment_tracking": ("01_experimentation", "expect_01cd.py"),
    "02b_model_registry": ("02_model_management", "expect_02.py"),
}
TIMES: dict[str, float] = {}


def expectations(file_name: str, lesson: str) -> Callable[[dict[str, Any]], None]:
    """The notebook test's own expectations for ``lesson``: the same claims must hold on the team server."""
    path = ROOT / "tests" / "notebooks" / file_name
    spec = importlib.util.spec_from_file_location(f"remote_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.EXPECTATIONS[lesson]


@pytest.fixture(scope="module")
def team_server(course_settings, tmp_path_factory) -> Iterator[AuthServer]:
    """The team's server: another workspace, its own stores and users (alice runs the lessons, bob does not)."""
    team_workspace = tmp_path_factory.mktemp("team-server-workspace")
    team_settings = load_settings({"COURSE_WORKSPACE": str(team_workspace), "COURSE_PROFILE": "ci"})
    server = start_auth_server(team_workspace / "mlflow-team", team_settings, name="mlflow-team", fresh=True)
    try:
        server.create_user("alice")
        server.create_user("bob")
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def lesson_results(team_server, course_settings, tmp_path_factory) -> dict[str, dict[str, Any]]:
    """Run each lesson once, as alice, with only the three MLflow variables pointing at the team server."""
    import papermill

    out = tmp_path_factory.mktemp("executed-remote")
    results = {}
    with mock.patch.dict("os.environ", team_server.env("alice")):
        for lesson, (module_dir, _) in LESSONS.items():
            notebook = ROOT / "notebooks" / module_dir / f"{lesson}.ipynb"
            started = time.time()
            papermill.execute_notebook(str(notebook), str(out / notebook.name), parameters={"profile": "ci"},
                                       kernel_name=KERNEL_NAME, cwd=str(notebook.parent), progress_bar=False)
            TIMES[lesson] = round(time.time() - started, 1)
            results[lesson] = json.loads((course_settings.results_dir / f"{lesson}.json").read_text())
    print("\nlessons against the team server (s):", TIMES)
    return results


@pytest.mark.parametrize("lesson", LESSONS)
def test_a_lesson_runs_unchanged_and_proves_its_claims_on_the_team_server(lesson, lesson_results) -> None:
    results = dict(lesson_results[lesson])
    if lesson == "02b_model_registry":
        # The one difference, and it is the point of access control: asked for a model nobody granted
        # it, the user is told "permission denied" (403), not whether the model exists (404).
        mistakes = dict(results["mistakes"])
        assert mistakes.pop("model that does not exist") == "PERMISSION_DENIED", results["mistakes"]
        results["mistakes"] = {**mistakes, "model that does not exist": "RESOURCE_DOES_NOT_EXIST"}
    expectations(LESSONS[lesson][1], lesson)(results)


def test_the_runs_and_models_are_on_the_team_server_and_owned_by_their_user(team_server, lesson_results) -> None:
    with team_server.signed_in("alice") as alice:
        experiment = alice.get_experiment_by_name("/course/01c_experiment_tracking")
        runs = alice.search_runs([experiment.experiment_id], max_results=100)
        models = [m.name for m in alice.search_registered_models()]
    assert len(runs) == lesson_results["01c_experiment_tracking"]["all_runs_found"]
    assert models, "02b registered its model on the team server"
    for model in models:
        assert team_server.permission("alice", "registered_model", model) == "MANAGE"
    assert team_server.permission("alice", "experiment", experiment.experiment_id) == "MANAGE"


def test_a_colleague_without_a_grant_gets_mlflows_403(team_server, lesson_results) -> None:
    with team_server.signed_in("alice") as alice:
        experiment_id = alice.get_experiment_by_name("/course/01c_experiment_tracking").experiment_id
        model = alice.search_registered_models()[0].name
    with team_server.signed_in("bob") as bob:
        for read in (lambda: bob.get_experiment(experiment_id), lambda: bob.get_registered_model(model)):
            with pytest.raises(MlflowException) as denied:
                read()
            assert http_status(denied.value) == 403 and denied.value.error_code == "PERMISSION_DENIED"
