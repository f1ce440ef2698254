"""course_utils.access_control without a server: generated files, bad input, the app check."""

from __future__ import annotations

import configparser
import os
import stat
from pathlib import Path

import pytest

from course_utils import access_control
from course_utils.access_control import (
    AccessControlError,
    AuthServer,
    Credentials,
    auth_server_command,
    auth_server_env,
    http_status,
    start_auth_server,
    write_auth_config,
)
from course_utils.config import load_settings


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_credentials_never_show_the_password() -> None:
    credentials = Credentials("alice", "s3cret-password-xyz")
    assert "s3cret" not in repr(credentials) and "s3cret" not in str(credentials)
    assert credentials.env() == {"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": "s3cret-password-xyz"}


def test_auth_config_is_private_and_names_its_database(tmp_path) -> None:
    path = write_auth_config(tmp_path, "generated-admin-password", "NO_PERMISSIONS")
    assert _mode(path) == 0o600
    config = configparser.ConfigParser()
    config.read(path)
    assert config["mlflow"]["default_permission"] == "NO_PERMISSIONS"
    assert config["mlflow"]["database_uri"] == f"sqlite:///{tmp_path.resolve() / 'basic_auth.db'}"
    assert config["mlflow"]["admin_username"] == "admin"
    assert config["mlflow"]["auth_cache_ttl_seconds"] == "300", "one password hash per user, not one per request"
    # Rewriting an existing file (e.g. a group-readable one) makes it private again.
    os.chmod(path, 0o644)
    write_auth_config(tmp_path, "generated-admin-password")
    assert _mode(path) == 0o600


def test_auth_config_rejects_an_unknown_default_permission(tmp_path) -> None:
    with pytest.raises(ValueError, match="default_permission='WRITE' is not one of NO_PERMISSIONS, READ"):
        write_auth_config(tmp_path, "generated-admin-password", "WRITE")
    assert not (tmp_path / "basic_auth.ini").exists()


def test_server_command_and_env(tmp_path) -> None:
    command = auth_server_command(5123, tmp_path)
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[-2:] == ["--app-name", "basic-auth"]
    assert f"sqlite:///{tmp_path / 'mlflow.db'}" in command
    env = auth_server_env(tmp_path, "a-flask-key")
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == str(tmp_path.resolve() / "basic_auth.ini")
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"] == "a-flask-key"
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert not any("a-flask-key" in part for part in command), "secrets stay out of the recorded command line"


def test_folder_outside_the_workspace_is_refused(tmp_path) -> None:
    settings = load_settings({"COURSE_WORKSPACE": str(tmp_path / "ws")})
    outside = tmp_path / "elsewhere"
    with pytest.raises(AccessControlError, match="outside the workspace .* git-ignored workspace"):
        start_auth_server(outside, settings)
    assert not outside.exists()


def test_missing_auth_app_is_explained(monkeypatch, tmp_path) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "flask_wtf" else real_find_spec(name, *a))
    settings = load_settings({"COURSE_WORKSPACE": str(tmp_path / "ws")})
    with pytest.raises(AccessControlError, match=r"needs Flask-WTF.*mlflow\[auth\].*setup.sh"):
        start_auth_server(tmp_path / "ws" / "auth", settings)


def test_unknown_user_and_bad_grants_are_explained(tmp_path) -> None:
    settings = load_settings({"COURSE_WORKSPACE": str(tmp_path)})
    server = AuthServer("mlflow-auth", "http://127.0.0.1:1", 1, tmp_path, settings)
    with pytest.raises(AccessControlError, match=r"No user 'carol'.*server.create_user\('carol'\)"):
        server.credentials("carol")
    with pytest.raises(ValueError, match="resource_type='run' is not one of experiment, registered_model"):
        server.grant("bob", "run", "1", "READ")
    with pytest.raises(ValueError, match="permission='WRITE' is not one of READ, USE, EDIT, MANAGE"):
        server.grant("bob", "experiment", "1", "WRITE")
    with pytest.raises(ValueError, match="username='bob smith'"):
        server.create_user("bob smith")


def test_damaged_secrets_file_is_explained(tmp_path) -> None:
    (tmp_path / access_control.SECRETS_FILE).write_text("{not json")
    settings = load_settings({"COURSE_WORKSPACE": str(tmp_path)})
    server = AuthServer("mlflow-auth", "http://127.0.0.1:1", 1, tmp_path, settings)
    with pytest.raises(AccessControlError, match="is damaged.*fresh=True"):
        server.users()


def test_http_status_of_other_errors_is_none() -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import PERMISSION_DENIED, UNAUTHENTICATED

    assert http_status(MlflowException("x", error_code=PERMISSION_DENIED)) == 403
    assert http_status(MlflowException("x", error_code=UNAUTHENTICATED)) == 401
    assert http_status(ValueError("x")) is None
