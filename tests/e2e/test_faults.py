"""Faults the course must survive, with real processes: killed servers, lost pid files, taken ports, Ctrl-C.

Every background process is started through ``course_utils.services`` (the one seam), so each
test checks the same promise from another side: the course always finds its own processes,
stops all of them and nothing else, and says what to do when it cannot go on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
import requests

from course_utils.config import load_settings
from course_utils.ports import PortInUseError, free_port, is_listening, wait_until_listening
from course_utils.services import MLFLOW, find_processes, start_process, status, status_all

ROOT = Path(__file__).resolve().parents[2]
COURSE = [sys.executable, "-m", "course_utils.cli"]
pytestmark = pytest.mark.slow


def _course(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*COURSE, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)


def _http_server(port: int) -> list[str]:
    return [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]


def _is_loopback(ip: str) -> bool:
    """127.0.0.1, ::1, or IPv4 loopback mapped into IPv6 (Java's sockets show as ::ffff:127.0.0.1)."""
    import ipaddress

    address = ipaddress.ip_address(ip)
    return (address.ipv4_mapped or address).is_loopback if isinstance(address, ipaddress.IPv6Address) else address.is_loopback


def _alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


@pytest.fixture()
def env(tmp_path, course_settings) -> dict[str, str]:
    """The suite's offline environment with a private workspace and MLflow port for this test."""
    return {**os.environ, "COURSE_WORKSPACE": str(tmp_path / "ws"), "COURSE_MLFLOW_PORT": str(free_port())}


def test_lost_pid_files_and_a_killed_leader_are_found_and_stopped(env, tmp_path) -> None:
    """kill -9 of MLflow's leader, a damaged pid file and a deleted one: status, down and reset still see all."""
    settings = load_settings(env)
    port = int(env["COURSE_MLFLOW_PORT"])
    up = _course(["services", "up"], env)
    assert up.returncode == 0, up.stderr
    mlflow_pids = [p.pid for p in find_processes(MLFLOW, settings)]
    web_port, other_port = free_port(), free_port()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COURSE_WORKSPACE", env["COURSE_WORKSPACE"])
        web = start_process("model-server-demo", _http_server(web_port), web_port, f"http://127.0.0.1:{web_port}", settings)
    stranger = subprocess.Popen(_http_server(other_port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until_listening(other_port, 20)
        leader = status(MLFLOW, settings).pid
        os.kill(leader, signal.SIGKILL)  # the leader dies; uvicorn keeps serving the port
        psutil.wait_procs([psutil.Process(pid) for pid in _alive([leader])], timeout=10)
        orphans = _alive(mlflow_pids)
        assert orphans, "the premise: killing the leader leaves its server processes behind"
        assert requests.get(f"http://127.0.0.1:{port}/health", timeout=30).ok, "and they still serve"
        (settings.run_dir / "model-server-demo.json").write_text("{not json")  # a damaged pid file

        listed = _course(["services", "status"], env).stdout
        assert f"mlflow: not running properly: its leader process is gone but pid(s) {', '.join(map(str, orphans))} " \
               f"of it remain on port {port}; `course services down` stops them" in listed
        assert "model-server-demo: not running properly: its leader process is gone but pid(s)" in listed, \
            "a damaged pid file must not hide a live server"

        again = _course(["services", "up"], env)  # recovers: the orphans are stopped, a fresh server starts
        assert again.returncode == 0, again.stderr
        assert not _alive(orphans), "the orphans were stopped before the restart"
        assert requests.get(f"http://127.0.0.1:{port}/health", timeout=30).ok
        assert status(MLFLOW, settings).running

        (settings.run_dir / f"{MLFLOW}.json").unlink()  # a lost pid file
        everything = [p.pid for name in ("mlflow", "model-server-demo") for p in find_processes(name, settings)]
        assert web.pid in everything
        down = _course(["services", "down"], env)
        assert down.returncode == 0, down.stderr
        assert sorted(down.stdout.splitlines()) == ["mlflow: stopped", "model-server-demo: stopped"]
        assert not _alive(everything), "down stops every course process, pid file or not"
        assert not is_listening(port) and not is_listening(web_port)
        assert stranger.poll() is None and is_listening(other_port), "and nothing else"
        assert _course(["services", "status"], env).stdout == "mlflow: not running\n"
    finally:
        _course(["services", "down"], env)
        stranger.terminate()
        stranger.wait()


def test_reset_stops_every_course_process_before_deleting_its_files(env) -> None:
    settings = load_settings(env)
    from course_utils.webhooks import start_receiver

    receiver_port, web_port = free_port(), free_port()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COURSE_WORKSPACE", env["COURSE_WORKSPACE"])
        receiver = start_receiver("webhook-receiver-demo", receiver_port, "s3cret", settings.workspace / "log.jsonl", settings)
        web = start_process("registry-demo", _http_server(web_port), web_port, "x", settings)
    pids = [receiver.pid, web.pid]
    reset = _course(["reset"], env)
    assert reset.returncode == 0, reset.stderr
    assert sorted(reset.stdout.splitlines()[:2]) == ["stopped registry-demo", "stopped webhook-receiver-demo"]
    assert not _alive(pids), "a reset must not turn running servers into orphans"
    assert not settings.workspace.exists()


def test_loopback_traffic_bypasses_a_proxy_without_no_proxy(course_settings) -> None:
    """Corporate laptops set HTTP(S)_PROXY and no NO_PROXY; the course's own calls must still reach 127.0.0.1.

    It uses the session's workspace: the course server it finds or starts is the one the notebooks use next.
    """
    proxied = {key: value for key, value in os.environ.items() if key.lower() != "no_proxy"}
    proxied.update({"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
                    "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"})
    probe = (
        "import mlflow\nfrom course_utils.services import ensure_tracking_server\n"
        "uri = ensure_tracking_server()\n"
        "print(len(mlflow.MlflowClient(uri).search_experiments()))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env={
        **proxied, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    import mlflow

    direct = len(mlflow.MlflowClient(course_settings.tracking_uri).search_experiments())
    assert result.stdout.strip() == str(direct), "the same experiments, read through MLflow's client behind the proxy"


def test_mlflow_killed_between_cells_comes_back_with_everything_logged(env) -> None:
    import mlflow

    from course_utils.lesson import Lesson

    settings = load_settings(env)
    lesson = Lesson(name="01c_experiment_tracking", params={}, settings=settings)
    try:
        with pytest.MonkeyPatch.context() as patch:
            for key in ("COURSE_WORKSPACE", "COURSE_MLFLOW_PORT"):
                patch.setenv(key, env[key])
            # Nothing of this test's server may leak into later tests (mlflow.set_tracking_uri exports it).
            patch.delenv("MLFLOW_TRACKING_URI", raising=False)
            client = mlflow.MlflowClient(lesson.tracking_uri)
            run = client.create_run(client.create_experiment("faults"))
            client.log_metric(run.info.run_id, "val_auc", 0.715)
            client.log_text(run.info.run_id, "kept", "notes.txt")
            processes = find_processes(MLFLOW, settings)
            for process in processes:
                process.kill()  # the whole server, as an OOM killer or a closed terminal would
            psutil.wait_procs(processes, timeout=10)
            assert not is_listening(settings.mlflow_port)

            uri = lesson.tracking_uri  # the lesson's next MLflow call goes through here and restarts it
            back = mlflow.MlflowClient(uri).get_run(run.info.run_id)
            assert back.data.metrics == {"val_auc": 0.715}
            assert mlflow.MlflowClient(uri).download_artifacts(run.info.run_id, "notes.txt") and True
    finally:
        _course(["services", "down"], env)


@pytest.mark.parametrize("server", ["mlflow", "jupyterlab", "model server", "registry server", "webhook receiver"])
def test_a_port_taken_by_a_foreign_process_is_named_with_the_setting_to_change(server, env, tmp_path) -> None:
    port = free_port()
    settings = replace(load_settings(env), mlflow_port=port)
    stranger = subprocess.Popen(_http_server(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    setting = {
        "mlflow": f"`export COURSE_MLFLOW_PORT={port + 1}`",
        "jupyterlab": f"`course lab --port {port + 1}`",
        "model server": "start_model_server(..., port=None) picks a free one",
        "registry server": "start_registry_server(..., port=free_port()) picks a free one",
        "webhook receiver": "start_receiver(..., port=free_port()) picks a free one",
    }[server]
    name = {"mlflow": "mlflow", "jupyterlab": "jupyterlab", "model server": "model-server",
            "registry server": "dev-registry", "webhook receiver": "receiver"}[server]
    try:
        assert wait_until_listening(port, 20)
        with pytest.raises(PortInUseError) as raised:
            _start(server, name, port, settings, tmp_path)
        assert str(raised.value) == (
            f"Port {port} on 127.0.0.1 is already taken by pid {stranger.pid} ({' '.join(_http_server(port)[:4])}), "
            f"so {name} cannot start there. Stop that process, or choose another port: {setting}."
        )
        assert stranger.poll() is None
        assert status_all(settings) == [], "nothing was started or recorded"
    finally:
        stranger.terminate()
        stranger.wait()


def _start(server: str, name: str, port: int, settings, tmp_path: Path) -> None:
    if server == "mlflow":
        from course_utils.services import start_tracking_server

        start_tracking_server(settings)
    elif server == "jupyterlab":
        from course_utils.jupyter import start_jupyterlab

        start_jupyterlab(settings, port, "http://127.0.0.1:1")
    elif server == "model server":
        from course_utils.serving import start_model_server

        start_model_server("models:/nothing/1", settings, name=name, port=port, stop_at_exit=False)
    elif server == "registry server":
        from course_utils.registry import start_registry_server

        start_registry_server(name, port, tmp_path / "store", settings)
    else:
        from course_utils.webhooks import start_receiver

        start_receiver(name, port, "s3cret", tmp_path / "log.jsonl", settings)


def test_an_interrupted_run_leaves_nothing_behind_and_says_so(env, tmp_path) -> None:
    """Ctrl-C during `course run`: no kernel, JVM or server is left, and the report says 'interrupted'."""
    import nbformat

    web_port = free_port()
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "ml-in-production", "display_name": "course", "language": "python"}
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in (
        "import time\nfrom course_utils.config import load_settings\nfrom course_utils.services import start_process\n"
        "from course_utils.spark import get_spark",
        "spark = get_spark('interrupt-probe')\nspark.range(3).count()",
        f"start_process('probe-server', ['{sys.executable}', '-m', 'http.server', '{web_port}', '--bind', '127.0.0.1'], "
        f"{web_port}, 'x', load_settings())",
        "time.sleep(600)",
    )]
    path = tmp_path / "probe.ipynb"
    nbformat.write(notebook, str(path))
    build = ROOT / "build" / "run-report.json"
    run = subprocess.Popen([*COURSE, "run", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=env, cwd=ROOT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not is_listening(web_port) and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.5)
        assert is_listening(web_port), "the notebook got to its long cell"
        descendants = psutil.Process(run.pid).children(recursive=True)
        assert any("java" in p.name() for p in descendants), "a JVM is running"
        listeners = [c for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN
                     and c.pid in {p.pid for p in descendants}]
        assert listeners and all(_is_loopback(c.laddr.ip) for c in listeners), \
            f"kernel, JVM (Spark) and server listen on loopback only: {[(c.laddr, c.pid) for c in listeners]}"
        os.killpg(run.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends: the whole foreground group
        stdout, stderr = run.communicate(timeout=120)
    finally:
        if run.poll() is None:  # the test failed before its Ctrl-C: clean up the same way, then stop what is left
            os.killpg(run.pid, signal.SIGINT)
            try:
                run.wait(120)
            except subprocess.TimeoutExpired:
                os.killpg(run.pid, signal.SIGKILL)
            _course(["services", "down"], env)
    assert run.returncode == 130, stderr[-2000:]
    assert "interrupted; nothing the run started is left running" in stderr
    assert not _alive([p.pid for p in descendants]), "no kernel, JVM or server outlives the run"
    assert not is_listening(web_port)
    report = json.loads(build.read_text())
    assert report["interrupted"] == 1
    assert report["notebooks"][0]["status"] == "interrupted"
    assert report["notebooks"][0]["error"] == "interrupted (Ctrl-C) before the notebook finished"
