"""Bad input a learner can give, each with the exact message that says what was wrong and what to do.

The slow cases (servers killed, ports taken, a run interrupted) are in ``tests/e2e/test_faults.py``.
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from course_utils.cli import main
from course_utils.config import load_settings, loopback_proxy_bypass
from course_utils.lesson import start_lesson
from course_utils.runner import NotebookPathError, collect_notebooks
from course_utils.services import TIMEOUT_ENV, service_timeout_s, start_process
from course_utils.spark import JavaError, java_executable
from course_utils.webhooks import DELIVERY_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, DeliveryVerifier, sign
from course_utils.workspace import WORKSPACE_MARKER, WorkspaceError, claim_workspace, reset_workspace

ROOT = Path(__file__).resolve().parents[2]


# --- the workspace: a reset deletes only what the course created ------------------------------


def test_reset_refuses_a_folder_the_course_did_not_create(tmp_path, capsys, monkeypatch) -> None:
    other = tmp_path / "ws" / "other"
    other.mkdir(parents=True)
    (other / "f").write_text("x")
    monkeypatch.setenv("COURSE_WORKSPACE", str(tmp_path / "ws"))
    assert main(["reset"]) == 2
    assert capsys.readouterr().err == (
        f"course reset: COURSE_WORKSPACE='{tmp_path / 'ws'}' is not a course workspace (no .course-workspace file), "
        "so reset deletes nothing in it. Check COURSE_WORKSPACE points where you ran the course; delete the folder "
        "yourself if you are sure.\n"
    )
    assert (other / "f").read_text() == "x", "nothing of another program may be deleted"


def test_the_course_will_not_move_into_a_folder_that_holds_other_files(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    settings = replace(load_settings({}), workspace=tmp_path)
    with pytest.raises(WorkspaceError) as raised:
        claim_workspace(settings)
    assert str(raised.value) == (
        f"COURSE_WORKSPACE='{tmp_path}' already holds files and is not a course workspace (no .course-workspace file), "
        "so the course will not write into it or reset it. Point COURSE_WORKSPACE at a new or empty folder; if it is a "
        f"course workspace from an earlier version, create {tmp_path / WORKSPACE_MARKER} yourself."
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_reset_deletes_the_course_entries_and_keeps_everything_else(tmp_path) -> None:
    settings = replace(load_settings({}), workspace=tmp_path / "ws")
    claim_workspace(settings)
    for entry in ("lessons/01a_delta_lake/delta", "mlflow/artifacts", "results", "run"):
        (settings.workspace / entry).mkdir(parents=True)
    (settings.workspace / "results" / "01a_delta_lake.json").write_text("{}")
    (settings.workspace / "someone-elses.txt").write_text("keep me")
    assert reset_workspace(settings) == ["someone-elses.txt"]
    assert sorted(p.name for p in settings.workspace.iterdir()) == ["someone-elses.txt"]
    assert (settings.workspace / "someone-elses.txt").read_text() == "keep me"
    (settings.workspace / "someone-elses.txt").unlink()
    claim_workspace(settings)
    assert reset_workspace(settings) == [] and not settings.workspace.exists(), "an emptied course folder goes too"


# --- settings from the environment, checked where they enter --------------------------------


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"COURSE_SPARK_MASTER": "bogus://x"},
         "COURSE_SPARK_MASTER='bogus://x' is not a Spark master URL; use local[2], spark://host:7077 (a standalone "
         "cluster) or sc://host:15002 (Spark Connect), or unset it."),
        ({"MLFLOW_TRACKING_URI": "notaurl"},
         "MLFLOW_TRACKING_URI='notaurl' is not a tracking URI; give a server URL such as http://host:5000, or unset it "
         "to use the course's own server."),
        ({"COURSE_MLFLOW_PORT": "99999"},
         "COURSE_MLFLOW_PORT='99999' is not a usable port; give a number from 1024 to 65535."),
        ({"COURSE_PROFILE": "huge"}, "COURSE_PROFILE='huge' is not a data profile; use one of ci, full."),
    ],
)
def test_a_bad_setting_is_named_with_its_fix(environ, message) -> None:
    with pytest.raises(ValueError) as raised:
        load_settings(environ)
    assert str(raised.value) == message


def test_a_workspace_that_is_a_file_is_refused_without_a_traceback(tmp_path, capsys, monkeypatch) -> None:
    a_file = tmp_path / "ws.txt"
    a_file.write_text("x")
    monkeypatch.setenv("COURSE_WORKSPACE", str(a_file))
    assert main(["services", "status"]) == 2
    assert capsys.readouterr().err == (
        f"course services: COURSE_WORKSPACE='{a_file}' is a file, not a folder; point it at a folder the course may "
        "create and own, e.g. unset it to use <repo>/workspace.\n"
    )


@pytest.mark.parametrize("value", ["abc", "-5", "nan", "inf"])
def test_a_bad_service_timeout_fails_before_anything_starts(value, tmp_path) -> None:
    with pytest.raises(ValueError) as raised:
        service_timeout_s({TIMEOUT_ENV: value})
    assert str(raised.value) == (
        f"COURSE_SERVICE_TIMEOUT={value!r} is not a number of seconds; give e.g. COURSE_SERVICE_TIMEOUT=300, or unset it."
    )
    settings = replace(load_settings({}), workspace=tmp_path / "ws")
    marker = tmp_path / "started"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(TIMEOUT_ENV, value)
        with pytest.raises(ValueError):
            start_process("probe", [sys.executable, "-c", f"open({str(marker)!r}, 'w')"], 1, "x", settings)
    time.sleep(0.5)
    assert not marker.exists(), "the server must not start when its timeout is unreadable"


def test_a_stale_java_home_is_named_even_with_java_on_path(monkeypatch) -> None:
    monkeypatch.setenv("JAVA_HOME", "/nonexistent")
    with pytest.raises(JavaError) as raised:
        java_executable()
    on_path = subprocess.run(["bash", "-c", "command -v java"], capture_output=True, text=True).stdout.strip()
    assert str(raised.value) == (
        "JAVA_HOME='/nonexistent' has no bin/java, and Spark uses JAVA_HOME when it is set. Point JAVA_HOME at a "
        f"Java 17+ installation, or unset it to use the java on PATH ({on_path})."
    )


def test_loopback_is_added_to_no_proxy_and_other_entries_are_kept() -> None:
    environ = loopback_proxy_bypass({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "intranet.example"})
    assert environ["NO_PROXY"] == "intranet.example,127.0.0.1,localhost"
    assert environ["no_proxy"] == "127.0.0.1,localhost"
    assert environ["HTTPS_PROXY"] == "http://proxy:3128"
    assert loopback_proxy_bypass(environ)["NO_PROXY"] == environ["NO_PROXY"], "adding twice changes nothing"


# --- parameters and paths ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"seed": "abc"}, "seed='abc' should be a whole number of 0 or more, e.g. seed=42."),
        ({"seed": 4.2}, "seed=4.2 should be a whole number of 0 or more, e.g. seed=42."),
        ({"reset": "yes"}, "reset='yes' should be True or False."),
        ({"profile": "huge"}, "profile='huge' is not a data profile; use one of ci, full."),
    ],
)
def test_lesson_parameters_are_checked_where_they_enter(params, message, tmp_path) -> None:
    settings = replace(load_settings({}), workspace=tmp_path / "ws")
    with pytest.raises(ValueError) as raised:
        start_lesson("00_course_overview", settings=settings, **params)
    assert str(raised.value) == message
    assert not settings.workspace.exists(), "a refused lesson leaves nothing behind"


def test_running_a_labs_folder_says_labs_are_skipped_and_how_to_run_one() -> None:
    settings = load_settings({})
    labs = settings.notebooks / "01_experimentation" / "labs"
    with pytest.raises(NotebookPathError) as raised:
        collect_notebooks([labs], settings)
    assert str(raised.value) == (
        f"No runnable notebooks under {labs}: labs are skipped on purpose, their exercises are for you to complete. "
        "Run a lab by opening it in `course lab`, or run its worked solution, e.g. "
        "`course run notebooks/01_experimentation/solutions`."
    )


@pytest.mark.parametrize("port", ["99999", "-1", "80", "abc"])
def test_course_lab_refuses_an_impossible_port(port, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["lab", "--port", port])
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"course lab: error: argument --port: {port!r} is not a usable port; give a number from 1024 to 65535"
    )


def test_course_lab_on_the_mlflow_port_names_the_lab_port(capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("COURSE_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.setenv("COURSE_MLFLOW_PORT", "5123")
    assert main(["lab", "--port", "5123"]) == 2
    assert capsys.readouterr().err == (
        "course lab: --port 5123 is the MLflow server's port (COURSE_MLFLOW_PORT); give JupyterLab another, "
        "or leave --port out to get a free one.\n"
    )


def test_the_cli_error_path_imports_nothing_heavy(tmp_path) -> None:
    """An error used to take 4-9 s because explaining it imported nbformat (and jsonschema)."""
    probe = (
        "import sys\nfrom course_utils.cli import main\n"
        "assert main(['reset', '99_nope']) == 2\n"
        "heavy = sorted(m for m in ('nbformat', 'papermill', 'mlflow', 'pyspark', 'pandas') if m in sys.modules)\n"
        "print(heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "COURSE_WORKSPACE": str(tmp_path / "ws")}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[]\n"
    assert "is not a lesson of this course" in result.stderr


# --- security details --------------------------------------------------------------------------


@pytest.mark.parametrize("stamp", ["nan", "NaN", "inf", "-inf"])
def test_a_signed_delivery_with_a_non_finite_timestamp_is_refused(stamp) -> None:
    secret, delivery_id, body = "s3cret", str(uuid.uuid4()), b'{"entity": "model_version", "action": "created"}'
    headers = {DELIVERY_ID_HEADER: delivery_id, TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: sign(secret, delivery_id, stamp, body)}
    check = DeliveryVerifier(secret).check(headers, body)
    assert (check.status, check.reason) == (400, f"{TIMESTAMP_HEADER}={stamp!r} is not Unix seconds")
    assert math.isnan(float("nan")), "float() accepts the string, which is why the check must be explicit"


def test_a_receiver_drops_a_client_that_sends_less_than_it_declared(tmp_path) -> None:
    from course_utils.ports import free_port
    from course_utils.webhooks import READ_TIMEOUT_S, make_receiver
    import threading

    port = free_port()
    server = make_receiver(port, "s3cret", tmp_path / "log.jsonl")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT_S + 10) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
            answer = b""
            while chunk := sock.recv(500):  # the client keeps its side open: the receiver must give up by itself
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 408")
        assert answer.endswith(b'"reason": "Content-Length declared 100 bytes, but they did not all arrive within 10 s"}')
    finally:
        server.shutdown()
        server.server_close()


def test_the_doctor_names_the_install_command_when_prometheus_is_missing(monkeypatch, tmp_path) -> None:
    from course_utils.doctor import check_prometheus

    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    result = check_prometheus(load_settings({}))
    assert (result.ok, result.detail) == (False, (
        "prometheus was not found on PATH (looked for prometheus): install it with "
        "`sudo apt-get install -y prometheus` (Debian/Ubuntu; macOS: `brew install prometheus`)."
    ))
    assert result.fix == ("Run `sudo apt-get install -y prometheus prometheus-alertmanager` "
                          "(macOS: `brew install prometheus alertmanager`); module 04 needs them.")


def test_a_password_in_a_tracking_uri_never_reaches_a_message() -> None:
    """A team server's URI may carry credentials: the course's errors name the server, never the secret."""
    from course_utils.config import load_settings, redact_uri
    from course_utils.ports import free_port
    from course_utils.services import ServiceError, check_tracking_server

    uri = f"http://alice:s3cret-{uuid.uuid4().hex[:6]}@127.0.0.1:{free_port()}"
    secret = uri.split(":")[2].split("@")[0]
    assert redact_uri(uri) == uri.replace(secret, "***")
    assert redact_uri("http://127.0.0.1:5005") == "http://127.0.0.1:5005"
    with pytest.raises(ServiceError) as down:
        check_tracking_server(uri, timeout_s=2)
    assert secret not in str(down.value) and "alice:***@127.0.0.1" in str(down.value)
    with pytest.raises(ValueError) as refused:
        load_settings({"MLFLOW_TRACKING_URI": f"ftp://bob:{secret}@example.org"})
    assert secret not in str(refused.value) and "bob:***@example.org" in str(refused.value)
