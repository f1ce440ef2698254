"""Background services: pid files, port checks, and stopping only what we started."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import psutil
import pytest

from course_utils.config import load_settings
from course_utils.ports import PortInUseError, free_port, is_listening
from course_utils.services import ServiceError, check_tracking_server, start_process, status, stop


@pytest.fixture()
def settings(tmp_path):
    return replace(load_settings({}), workspace=tmp_path / "workspace")


def _http_server(port: int) -> list[str]:
    return [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]


def test_start_status_stop_round_trip(settings) -> None:
    port = free_port()
    state = start_process("web", _http_server(port), port, f"http://127.0.0.1:{port}", settings)
    try:
        assert state.running and is_listening(port)
        assert status("web", settings).pid == state.pid
        again = start_process("web", _http_server(port), port, "unused", settings)
        assert again.pid == state.pid, "starting twice must reuse the running service"
    finally:
        assert stop("web", settings)
    assert not status("web", settings).running
    assert not is_listening(port)
    assert not stop("web", settings), "stopping twice is harmless"


def test_port_taken_by_someone_else_is_named(settings) -> None:
    port = free_port()
    other = subprocess.Popen(_http_server(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        from course_utils.ports import wait_until_listening

        assert wait_until_listening(port, 10)
        expected = (f"Port {port} on 127.0.0.1 is already taken by pid {other.pid} ({sys.executable} -m http.server {port}), "
                    "so web cannot start there. Stop that process, or choose another port: `export WEB_PORT=1`.")
        with pytest.raises(PortInUseError) as raised:
            start_process("web", _http_server(port), port, "unused", settings, port_setting="`export WEB_PORT=1`")
        assert str(raised.value) == expected
    finally:
        other.terminate()
        other.wait()


def test_stop_never_signals_a_process_it_did_not_start(settings) -> None:
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        settings.run_dir.mkdir(parents=True)
        # A stale pid file naming a live process with another start time (pid reuse).
        (settings.run_dir / "web.json").write_text(
            f'{{"pid": {stranger.pid}, "create_time": 1.0, "url": "x", "log": "x"}}'
        )
        assert not status("web", settings).running
        assert not stop("web", settings)
        assert psutil.Process(stranger.pid).is_running() and stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_a_server_that_dies_at_start_reports_its_log(settings) -> None:
    port = free_port()
    with pytest.raises(ServiceError, match=r"(?s)did not start.*boom"):
        start_process("bad", [sys.executable, "-c", "print('boom'); raise SystemExit(3)"], port, "x", settings)
    assert not status("bad", settings).running


def test_tracking_server_down_says_to_start_it() -> None:
    with pytest.raises(ServiceError, match=r"not answering.*course services up"):
        check_tracking_server(f"http://127.0.0.1:{free_port()}", timeout_s=1)


def test_run_files_are_private_and_the_service_is_marked(settings) -> None:
    """Pid files name URLs (JupyterLab's has its token) and command lines: owner-only, 0600."""
    from course_utils.services import SERVICE_ENV, WORKSPACE_ENV

    port = free_port()
    state = start_process("web", _http_server(port), port, f"http://127.0.0.1:{port}", settings)
    try:
        assert (settings.run_dir / "web.json").stat().st_mode & 0o777 == 0o600
        environ = psutil.Process(state.pid).environ()
        assert (environ[SERVICE_ENV], environ[WORKSPACE_ENV]) == ("web", str(settings.workspace))
        assert (settings.workspace / ".course-workspace").is_file(), "the course marked the workspace it created"
    finally:
        stop("web", settings)


@pytest.mark.timeout(60)
def test_stopping_another_process_child_does_not_wait_for_its_parent_to_reap_it(settings, tmp_path) -> None:
    """`course services down` stops servers a notebook kernel started: they stay zombies until the kernel
    reaps them. Before this was handled, each such server cost the whole stop timeout (20 s + 5 s)."""
    port = free_port()
    # A parent that starts the server through the seam and then never reaps it (as a busy kernel does).
    parent_code = (
        "import sys, time\n"
        "from dataclasses import replace\n"
        "from pathlib import Path\n"
        "from course_utils.config import load_settings\n"
        "from course_utils.services import start_process\n"
        f"settings = replace(load_settings({{}}), workspace=Path({str(settings.workspace)!r}))\n"
        f"start_process('web', [sys.executable, '-m', 'http.server', '{port}', '--bind', '127.0.0.1'], {port}, 'x', settings)\n"
        "print('started', flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline().strip() == "started"
        server = psutil.Process(status("web", settings).pid)
        assert server.ppid() == parent.pid, "the premise: the server is the other process's child"
        assert stop("web", settings, timeout_s=600), "the stop returns once the server has exited, long before 600 s"
        assert server.status() == psutil.STATUS_ZOMBIE, "and it is still waiting for its parent to reap it"
        assert not is_listening(port)
    finally:
        parent.kill()
        parent.wait()
