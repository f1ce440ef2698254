"""course_utils.cluster without starting a cluster: commands, folders, and the errors a learner sees."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from course_utils.cli import build_parser
from course_utils.cluster import (
    MASTER_CLASS, WORKER_CLASS, ClusterError, _validate, check_master, cluster_dir, daemon_env, master_command,
    start_cluster, worker_command,
)
from course_utils.config import load_settings
from course_utils.ports import free_port


def test_daemons_bind_to_loopback_and_work_in_the_given_folder() -> None:
    master = master_command(7077, 8080)
    assert master[1] == MASTER_CLASS and master[master.index("--host") + 1] == "127.0.0.1"
    worker = worker_command(7078, 8081, "spark://127.0.0.1:7077", Path("/w/work-1"), cores=1, memory="1g")
    assert worker[1] == WORKER_CLASS and worker[-1] == "spark://127.0.0.1:7077"
    assert worker[worker.index("--work-dir") + 1] == "/w/work-1"
    assert (worker[worker.index("--cores") + 1], worker[worker.index("--memory") + 1]) == ("1", "1g")
    assert Path(master[0]).name == "spark-class" and Path(master[0]).is_file()


def test_logs_pids_and_scratch_stay_in_the_workspace(tmp_path: Path) -> None:
    settings = replace(load_settings(), workspace=tmp_path / "ws")
    env = daemon_env(settings)
    for key in ("SPARK_LOG_DIR", "SPARK_PID_DIR", "SPARK_LOCAL_DIRS", "SPARK_CONF_DIR"):
        assert Path(env[key]).is_relative_to(cluster_dir(settings)) and Path(env[key]).is_dir()
    assert cluster_dir(settings).is_relative_to(settings.run_dir), "`course reset` clears it with run/"
    assert env["SPARK_LOCAL_IP"] == "127.0.0.1"


def test_a_master_that_does_not_answer_is_named_with_the_fix() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(ClusterError) as error:
        check_master(f"spark://127.0.0.1:{port}", timeout_s=1)
    message = str(error.value)
    assert f"COURSE_SPARK_MASTER=spark://127.0.0.1:{port} does not answer" in message
    assert "course cluster up" in message and "unset COURSE_SPARK_MASTER" in message
    with pytest.raises(ClusterError, match="has no host:port"):
        check_master("spark://127.0.0.1")
    check_master("local[2]")  # not a standalone master: nothing to check


def test_get_spark_fails_fast_on_a_dead_master(tmp_path: Path) -> None:
    from course_utils.spark import get_spark

    settings = replace(load_settings(), workspace=tmp_path / "ws", spark_master=f"spark://127.0.0.1:{free_port()}")
    with pytest.raises(ClusterError, match="does not answer"):
        get_spark("dead-master", settings)


@pytest.mark.parametrize(("workers", "cores", "memory", "fragment"), [
    (0, 1, "1g", "give 1 to 8 workers"),
    (2, 0, "1g", "at least 1 core"),
    (2, 1, "lots", "'lots' is not a memory size"),
    (2, 1, "0g", "is not a memory size"),
    (2, 1, "768m", "less than the 1g each executor asks for"),
])
def test_bad_cluster_sizes_are_refused(workers: int, cores: int, memory: str, fragment: str) -> None:
    with pytest.raises(ClusterError, match=fragment):
        _validate(workers, cores, memory)


def test_a_taken_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    import socket

    from course_utils.ports import PortInUseError

    settings = replace(load_settings(), workspace=tmp_path / "ws")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"Port {port} on 127.0.0.1 is already taken.*course cluster up --port N"):
            start_cluster(settings, port=port)


def test_cli_cluster_arguments() -> None:
    args = build_parser().parse_args(["cluster", "up", "--workers", "1", "--memory", "2g", "--port", "7077"])
    assert (args.action, args.workers, args.memory, args.port) == ("up", 1, "2g", 7077)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["cluster", "up", "--port", "80"])
