"""A real MLflow server with the basic-auth app: authentication, permissions, credentials, the seam.

One server for the module (about 10 s to start); every test uses its own users, experiments and
models, so the order of the tests does not matter.
"""

from __future__ import annotations

import doctest
import os
import stat
import uuid
from collections.abc import Iterator

import psutil
import pytest
import requests
from mlflow.exceptions import MlflowException

from course_utils import access_control
from course_utils.access_control import (
    EXPERIMENT,
    REGISTERED_MODEL,
    AccessControlError,
    AuthServer,
    Credentials,
    http_status,
    start_auth_server,
)
from course_utils.services import status

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(course_settings) -> Iterator[AuthServer]:
    started = start_auth_server(course_settings.workspace / "auth-tests", course_settings, name="mlflow-auth-tests", fresh=True)
    try:
        yield started
    finally:
        started.stop()


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _denied(call) -> MlflowException:
    """Run ``call``; it must fail with MLflow's 403 PERMISSION_DENIED. Returns the error."""
    with pytest.raises(MlflowException) as raised:
        call()
    assert http_status(raised.value) == 403 and raised.value.error_code == "PERMISSION_DENIED", raised.value
    return raised.value


def test_a_request_without_credentials_gets_401(server) -> None:
    session = requests.Session()
    session.trust_env = False
    response = session.get(f"{server.url}/api/2.0/mlflow/experiments/search", params={"max_results": 1}, timeout=30)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="mlflow"'
    assert session.get(f"{server.url}/health", timeout=30).status_code == 200, "health stays open for the seam"


def test_a_wrong_password_is_explained_without_showing_it(server) -> None:
    owner = server.create_user(_unique("carol"))
    wrong = Credentials(owner.username, "not-the-generated-password")
    with pytest.raises(AccessControlError) as raised:
        with server.signed_in(wrong):
            pass
    message = str(raised.value)
    assert "HTTP 401" in message and owner.username in message and str(server.secrets_file) in message
    assert wrong.password not in message and owner.password not in message
    assert "MLFLOW_TRACKING_PASSWORD" not in os.environ


def test_permissions_on_an_experiment(server) -> None:
    alice, bob = server.create_user(_unique("alice")), server.create_user(_unique("bob"))
    with server.signed_in(alice.username) as client:
        experiment_id = client.create_experiment(_unique("/team/churn"))
        run_id = client.create_run(experiment_id).info.run_id
    assert server.permission(alice.username, EXPERIMENT, experiment_id) == "MANAGE", "the creator manages it"

    with server.signed_in(bob.username) as client:
        _denied(lambda: client.get_experiment(experiment_id))
        _denied(lambda: client.get_run(run_id))
        _denied(lambda: client.create_run(experiment_id))
        assert experiment_id not in [e.experiment_id for e in client.search_experiments()], "search hides it"
    # Bob cannot grant himself anything: only the admin or a user with MANAGE can.
    _denied(lambda: server.grant(bob.username, EXPERIMENT, experiment_id, "READ", granted_by=bob.username))

    server.grant(bob.username, EXPERIMENT, experiment_id, "READ", granted_by=alice.username)
    with server.signed_in(bob.username) as client:
        assert client.get_experiment(experiment_id).experiment_id == experiment_id
        assert client.get_run(run_id).info.run_id == run_id
        _denied(lambda: client.create_run(experiment_id))
        _denied(lambda: client.log_metric(run_id, "auc", 0.7))

    server.grant(bob.username, EXPERIMENT, experiment_id, "EDIT", granted_by=alice.username)  # replaces READ
    assert server.permission(bob.username, EXPERIMENT, experiment_id) == "EDIT"
    with server.signed_in(bob.username) as client:
        client.log_metric(run_id, "auc", 0.7)
        assert client.get_run(run_id).data.metrics == {"auc": 0.7}
        _denied(lambda: client.delete_experiment(experiment_id))  # deleting needs MANAGE

    server.revoke(bob.username, EXPERIMENT, experiment_id, revoked_by=alice.username)
    with server.signed_in(bob.username) as client:
        _denied(lambda: client.get_experiment(experiment_id))


def test_permissions_on_a_registered_model(server) -> None:
    alice, bob = server.create_user(_unique("alice")), server.create_user(_unique("bob"))
    model = _unique("churn-model")
    with server.signed_in(alice.username) as client:
        client.create_registered_model(model)
    with server.signed_in(bob.username) as client:
        _denied(lambda: client.get_registered_model(model))
        _denied(lambda: client.update_registered_model(model, "bob was here"))
    server.grant(bob.username, REGISTERED_MODEL, model, "READ", granted_by=alice.username)
    with server.signed_in(bob.username) as client:
        assert client.get_registered_model(model).name == model
        _denied(lambda: client.update_registered_model(model, "bob was here"))
    server.grant(bob.username, REGISTERED_MODEL, model, "EDIT")  # the admin may grant too
    with server.signed_in(bob.username) as client:
        client.update_registered_model(model, "reviewed by bob")
        assert client.get_registered_model(model).description == "reviewed by bob"


def test_signed_in_restores_the_environment_even_after_an_error(server, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "someone-before")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    user = server.create_user(_unique("dave"))
    with pytest.raises(MlflowException):
        with server.signed_in(user.username) as client:
            assert os.environ["MLFLOW_TRACKING_USERNAME"] == user.username
            client.get_experiment("999999")  # not found
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "someone-before"
    assert "MLFLOW_TRACKING_PASSWORD" not in os.environ
    assert server.env(user.username) == {"MLFLOW_TRACKING_URI": server.url, **user.env()}


def test_credentials_are_private_files_in_the_workspace(server, course_settings) -> None:
    for path in (server.secrets_file, server.config_file):
        assert path.is_relative_to(course_settings.workspace)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert server.users()[0] == "admin" and server.admin.password in server.config_file.read_text()
    assert server.auth_database.is_file()
    record = (course_settings.run_dir / f"{server.name}.json").read_text()
    assert server.admin.password not in record, "the pid file holds no secret"


def test_the_server_is_reused_binds_loopback_only_and_stops_through_the_seam(server, course_settings) -> None:
    again = start_auth_server(server.folder, course_settings, name=server.name)
    assert again == server, "a running server of the same folder is reused, with its users"
    listeners = [c for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN and c.laddr.port == server.port]
    assert listeners and all(c.laddr.ip == "127.0.0.1" for c in listeners)
    # Stopped and started again from its folder: the users and their passwords still work.
    user = server.create_user(_unique("erin"))
    assert server.stop() is True
    assert not status(server.name, course_settings).running
    restarted = start_auth_server(server.folder, course_settings, name=server.name)
    try:
        with restarted.signed_in(user.username) as client:
            client.search_experiments()
    finally:
        restarted.stop()
    assert not status(server.name, course_settings).running


def test_a_user_database_without_its_secrets_is_refused(course_settings) -> None:
    folder = course_settings.workspace / "auth-orphan"
    folder.mkdir()
    (folder / access_control.AUTH_DATABASE).write_bytes(b"")
    with pytest.raises(AccessControlError, match="admin password generated for it is not in .*fresh=True"):
        start_auth_server(folder, course_settings, name="mlflow-auth-orphan")


def test_module_docstring_examples() -> None:
    results = doctest.testmod(access_control)
    assert results.failed == 0 and results.attempted >= 2
