"""Settings from the environment, and loopback port helpers."""

from __future__ import annotations

import socket

import pytest

from course_utils.config import DEFAULT_MLFLOW_PORT, load_settings
from course_utils.ports import free_port, is_listening, is_port_free


def test_defaults_point_inside_the_repository() -> None:
    settings = load_settings({})
    assert settings.workspace == settings.root / "workspace"
    assert settings.mlflow_port == DEFAULT_MLFLOW_PORT
    assert settings.tracking_uri == f"http://127.0.0.1:{DEFAULT_MLFLOW_PORT}"
    assert settings.uses_own_tracking_server
    assert settings.spark_master == "local[2]"


def test_environment_scales_out_without_code_changes(tmp_path) -> None:
    settings = load_settings(
        {
            "COURSE_WORKSPACE": str(tmp_path),
            "COURSE_SPARK_MASTER": "spark://cluster:7077",
            "MLFLOW_TRACKING_URI": "http://mlflow.internal:5000",
            "COURSE_PROFILE": "full",
        }
    )
    assert settings.workspace == tmp_path
    assert settings.spark_master == "spark://cluster:7077"
    assert settings.tracking_uri == "http://mlflow.internal:5000"
    assert not settings.uses_own_tracking_server
    assert settings.profile == "full"


@pytest.mark.parametrize("port", ["abc", "80", "70000", "-1"])
def test_bad_port_names_the_value_and_the_range(port: str) -> None:
    with pytest.raises(ValueError, match=f"COURSE_MLFLOW_PORT='{port}'.*1024 to 65535"):
        load_settings({"COURSE_MLFLOW_PORT": port})


def test_bad_profile_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="'huge'.*ci, full"):
        load_settings({"COURSE_PROFILE": "huge"})


def test_port_helpers_see_a_real_listener() -> None:
    port = free_port()
    assert is_port_free(port) and not is_listening(port)
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))
        server.listen()
        assert not is_port_free(port)
        assert is_listening(port)


def test_the_course_servers_own_uri_in_the_environment_is_not_an_external_server() -> None:
    """mlflow.set_tracking_uri() exports MLFLOW_TRACKING_URI; the course's own address keeps it the course's."""
    own = load_settings({"COURSE_MLFLOW_PORT": "5123", "MLFLOW_TRACKING_URI": "http://127.0.0.1:5123/"})
    assert own.uses_own_tracking_server and own.tracking_uri == "http://127.0.0.1:5123"
    other = load_settings({"COURSE_MLFLOW_PORT": "5123", "MLFLOW_TRACKING_URI": "http://127.0.0.1:6000"})
    assert not other.uses_own_tracking_server and other.tracking_uri == "http://127.0.0.1:6000"
