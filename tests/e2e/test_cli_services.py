"""`course services` and `course doctor` as a learner runs them: real processes on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import requests

from course_utils.ports import free_port, wait_until_listening

ROOT = Path(__file__).resolve().parents[2]
COURSE = [sys.executable, "-m", "course_utils.cli"]


def _course(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*COURSE, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)


@pytest.fixture()
def isolated_env(tmp_path, course_settings) -> dict[str, str]:
    """The suite's offline environment with a private workspace and MLflow port for this test."""
    return {**os.environ, "COURSE_WORKSPACE": str(tmp_path / "ws"), "COURSE_MLFLOW_PORT": str(free_port())}


@pytest.mark.slow
def test_services_up_status_down(isolated_env) -> None:
    port = isolated_env["COURSE_MLFLOW_PORT"]
    up = _course(["services", "up"], isolated_env)
    try:
        assert up.returncode == 0, up.stderr
        assert f"http://127.0.0.1:{port}" in up.stdout
        assert requests.get(f"http://127.0.0.1:{port}/health", timeout=30).status_code == 200
        listeners = [c for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN and c.laddr.port == int(port)]
        assert listeners and all(c.laddr.ip == "127.0.0.1" for c in listeners), "binds to loopback only"
        assert "mlflow: running at" in _course(["services", "status"], isolated_env).stdout
    finally:
        down = _course(["services", "down"], isolated_env)
    assert "mlflow: stopped" in down.stdout
    assert "mlflow: not running" in _course(["services", "status"], isolated_env).stdout


@pytest.mark.slow
def test_services_down_leaves_foreign_processes_alone_and_up_names_the_port_owner(isolated_env) -> None:
    port = int(isolated_env["COURSE_MLFLOW_PORT"])
    stranger = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until_listening(port, 20)
        up = _course(["services", "up"], isolated_env)
        assert up.returncode == 2
        assert f"Port {port} on 127.0.0.1 is already taken by pid {stranger.pid}" in up.stderr
        assert "Traceback" not in up.stderr
        down = _course(["services", "down"], isolated_env)
        assert down.returncode == 0 and down.stdout == "no course service was running\n"
        assert stranger.poll() is None, "services down must never stop a process it did not start"
    finally:
        stranger.terminate()
        stranger.wait()


@pytest.mark.slow
def test_doctor_passes_offline(isolated_env) -> None:
    """With the network cut (see conftest), every doctor check passes and the server is stopped after."""
    doctor = _course(["doctor"], isolated_env, timeout=900)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    for check in ("java", "delta jars", "datasets", "prometheus", "ports", "disk", "spark + delta", "mlflow"):
        assert f"✔ {check}" in doctor.stdout
    assert "All checks passed." in doctor.stdout
    assert "mlflow: not running" in _course(["services", "status"], isolated_env).stdout


@pytest.mark.slow
def test_doctor_checks_the_java_spark_will_use_and_names_a_stale_java_home(isolated_env, tmp_path) -> None:
    """A stale JAVA_HOME with Java 17 on PATH: Spark would fail, so the doctor must too, naming JAVA_HOME."""
    stale = {**isolated_env, "JAVA_HOME": str(tmp_path / "no-jdk")}
    doctor = _course(["doctor"], stale, timeout=900)
    assert doctor.returncode == 1
    assert f"✘ java           JAVA_HOME='{tmp_path / 'no-jdk'}' has no bin/java, and Spark uses JAVA_HOME when it is set." \
        in doctor.stdout
    assert "fix:" in doctor.stdout and "Traceback" not in doctor.stdout + doctor.stderr


def test_setup_refuses_old_java(tmp_path) -> None:
    """setup.sh stops before touching anything when Java is too old, and says how to install 17."""
    fake_jdk = tmp_path / "jdk" / "bin"
    fake_jdk.mkdir(parents=True)
    (fake_jdk / "java").write_text('#!/bin/sh\necho \'openjdk version "11.0.22" 2024-01-16\' >&2\n')
    (fake_jdk / "java").chmod(0o755)
    result = subprocess.run(["bash", str(ROOT / "setup.sh")], capture_output=True, text=True,
                            env={**os.environ, "JAVA_HOME": str(fake_jdk.parent)}, cwd=tmp_path, timeout=60)
    assert result.returncode == 1
    assert "Java 11.0.22 found; Spark 4 needs Java 17+" in result.stderr
    assert "openjdk-17" in result.stderr


def test_setup_names_a_stale_java_home_even_with_java_on_path(tmp_path) -> None:
    """Spark uses JAVA_HOME when it is set: setup.sh must not say "Java was not found" with Java 17 on PATH."""
    result = subprocess.run(["bash", str(ROOT / "setup.sh")], capture_output=True, text=True,
                            env={**os.environ, "JAVA_HOME": "/nonexistent"}, cwd=tmp_path, timeout=60)
    on_path = subprocess.run(["bash", "-c", "command -v java"], capture_output=True, text=True).stdout.strip()
    assert result.returncode == 1
    assert result.stderr.strip().endswith(
        "JAVA_HOME=/nonexistent has no bin/java, and Spark uses JAVA_HOME when it is set. Point JAVA_HOME at a "
        f"Java 17+ installation, or unset it to use the java on PATH ({on_path})."
    )
