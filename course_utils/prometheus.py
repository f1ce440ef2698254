"""Prometheus, promtool and Alertmanager from Debian's packages: find them, configure them, command lines.

The course does not download monitoring servers: like Java, they come from the system's
package manager and are found on PATH (:func:`require_tool` says how to install a missing one).
Everything they are given stays on the learner's machine:

- :func:`write_prometheus_config` writes a minimal ``prometheus.yml``: scrape targets on
  127.0.0.1, the course's rule files (``monitoring/prometheus/rules/``) and one Alertmanager.
- :func:`write_alertmanager_config` writes an ``alertmanager.yml`` that sends every alert to one
  webhook URL (the course's receiver, which starts continuous training).
- :func:`prometheus_command` / :func:`alertmanager_command` build command lines that listen on
  127.0.0.1 only, keep their data in a folder you give, and (Alertmanager) open no cluster
  gossip port. :func:`start_prometheus` / :func:`start_alertmanager` run them through the
  course's process seam, :func:`course_utils.services.start_process`.
- :func:`check_rules` / :func:`run_rule_tests` run ``promtool`` on rule files and their unit tests.

Example:
    >>> require_tool("promtool")                                             # doctest: +SKIP
    '/usr/bin/promtool'
    >>> config = write_prometheus_config(folder, {"router": 8100}, alertmanager_port=9093)  # doctest: +SKIP
    >>> prometheus_command(config, folder / "data", 9090)[-3:]                # doctest: +SKIP
    ['--web.listen-address=127.0.0.1:9090', '--storage.tsdb.retention.time=1d', '--web.enable-lifecycle']
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from course_utils.config import LOOPBACK, Settings, repo_root
from course_utils.errors import CourseError

if TYPE_CHECKING:
    from course_utils.services import ServiceStatus

# Tool -> (names to look for on PATH, Debian package, Homebrew formula). Debian installs
# Alertmanager as ``prometheus-alertmanager``; upstream and Homebrew call it ``alertmanager``.
TOOLS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "prometheus": (("prometheus",), "prometheus", "prometheus"),
    "promtool": (("promtool",), "prometheus", "prometheus"),
    "alertmanager": (("alertmanager", "prometheus-alertmanager"), "prometheus-alertmanager", "alertmanager"),
    "amtool": (("amtool",), "prometheus-alertmanager", "alertmanager"),
}
INSTALL_COMMAND = "sudo apt-get install -y prometheus prometheus-alertmanager"
MONITORING_TOOLS = ("prometheus", "promtool", "alertmanager")  # what `course doctor` checks
ROUTER_JOB = "router"  # the job name monitoring/prometheus/rules/router.yml's RouterDown alert expects
RECEIVER_NAME = "course-receiver"
_JOB_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_-]*$")


class PrometheusToolError(CourseError, RuntimeError):
    """Prometheus, promtool or Alertmanager is missing or could not be run."""


def rules_dir() -> Path:
    """The course's alert rule files."""
    return repo_root() / "monitoring" / "prometheus" / "rules"


def rule_tests_dir() -> Path:
    """The ``promtool test rules`` files that test the alert rules."""
    return repo_root() / "monitoring" / "prometheus" / "tests"


def rule_files() -> list[Path]:
    """Every ``*.yml`` file in :func:`rules_dir`, sorted."""
    return sorted(rules_dir().glob("*.yml"))


# --- finding the tools -----------------------------------------------------------------------


def _tool(tool: str) -> tuple[tuple[str, ...], str, str]:
    if tool not in TOOLS:
        raise ValueError(f"Unknown tool {tool!r}; the course uses {', '.join(TOOLS)}.")
    return TOOLS[tool]


def install_hint(tool: str) -> str:
    """How to install ``tool``: the Debian package (what CI and the course use), or Homebrew."""
    _, package, formula = _tool(tool)
    return f"install it with `sudo apt-get install -y {package}` (Debian/Ubuntu; macOS: `brew install {formula}`)"


def find_tool(tool: str) -> str | None:
    """The executable of ``tool`` on PATH (under any of its names), or None."""
    names, _, _ = _tool(tool)
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def require_tool(tool: str) -> str:
    """The executable of ``tool``; PrometheusToolError with the install command when it is missing."""
    found = find_tool(tool)
    if found is None:
        names, _, _ = _tool(tool)
        raise PrometheusToolError(f"{tool} was not found on PATH (looked for {', '.join(names)}): {install_hint(tool)}.")
    return found


def parse_version(version_output: str) -> str:
    """The version from ``<tool> --version`` output ('promtool, version 2.42.0+ds (branch: ...)' -> '2.42.0+ds')."""
    match = re.search(r"version (\S+)", version_output)
    if match is None:
        raise PrometheusToolError(f"Could not read a version from: {version_output.strip()[:200]!r}")
    return match.group(1)


def tool_version(tool: str) -> str:
    """The installed version of ``tool`` (for ``course doctor``-style reports)."""
    result = subprocess.run([require_tool(tool), "--version"], capture_output=True, text=True, check=False, timeout=30)
    return parse_version(result.stdout + result.stderr)  # Prometheus prints it on stdout, older releases on stderr


# --- configuration files ---------------------------------------------------------------------


def _check_port(port: int, what: str) -> int:
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"{what} port {port!r} is not a TCP port; give a number from 1 to 65535.")
    return port


def _write_yaml(path: Path, data: Mapping[str, Any]) -> Path:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dict(data), sort_keys=False))
    return path


def prometheus_config(
    targets: Mapping[str, int],
    *,
    rules: Sequence[Path] | None = None,
    alertmanager_port: int | None = None,
    scrape_interval: str = "5s",
    evaluation_interval: str = "5s",
) -> dict[str, Any]:
    """The content of ``prometheus.yml``: one scrape job per ``{job name: port}`` on 127.0.0.1.

    ``rules`` defaults to the course's rule files. Intervals are short because a lesson waits
    for alerts to fire; a production server would scrape every 15-60 s.
    """
    scrape_configs = []
    for job, port in targets.items():
        if not _JOB_NAME.match(job):
            raise ValueError(f"Scrape job name {job!r} must match {_JOB_NAME.pattern}.")
        _check_port(port, f"Scrape target {job!r}")
        scrape_configs.append({"job_name": job, "static_configs": [{"targets": [f"{LOOPBACK}:{port}"]}]})
    config: dict[str, Any] = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval},
        "rule_files": [str(Path(path).resolve()) for path in (rule_files() if rules is None else rules)],
    }
    if alertmanager_port is not None:
        _check_port(alertmanager_port, "Alertmanager")
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [f"{LOOPBACK}:{alertmanager_port}"]}]}]}
    config["scrape_configs"] = scrape_configs
    return config


def write_prometheus_config(folder: Path, targets: Mapping[str, int], **options: Any) -> Path:
    """Write ``folder/prometheus.yml`` (see :func:`prometheus_config` for the options); returns its path."""
    return _write_yaml(Path(folder) / "prometheus.yml", prometheus_config(targets, **options))


def alertmanager_config(
    webhook_url: str, *, group_wait: str = "1s", group_interval: str = "5s", repeat_interval: str = "1h"
) -> dict[str, Any]:
    """The content of ``alertmanager.yml``: every alert, grouped by name, POSTed to ``webhook_url``.

    ``group_wait`` is short so a lesson sees the alert within seconds of it firing.
    """
    if not webhook_url.startswith(("http://", "https://")):
        raise ValueError(f"webhook_url={webhook_url!r} is not an http(s) URL; give e.g. http://127.0.0.1:8200/alerts.")
    return {
        "route": {
            "receiver": RECEIVER_NAME,
            "group_by": ["alertname"],
            "group_wait": group_wait,
            "group_interval": group_interval,
            "repeat_interval": repeat_interval,
        },
        "receivers": [{"name": RECEIVER_NAME, "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}],
    }


def write_alertmanager_config(folder: Path, webhook_url: str, **options: str) -> Path:
    """Write ``folder/alertmanager.yml`` (see :func:`alertmanager_config`); returns its path."""
    return _write_yaml(Path(folder) / "alertmanager.yml", alertmanager_config(webhook_url, **options))


# --- command lines and processes -------------------------------------------------------------


def prometheus_command(
    config_file: Path, storage_dir: Path, port: int, *, retention: str = "1d", executable: str | None = None
) -> list[str]:
    """``prometheus`` on 127.0.0.1:``port`` with its database in ``storage_dir``.

    ``--web.enable-lifecycle`` lets a lesson reload edited rules with ``POST /-/reload``
    (reachable from this machine only, like everything else here).
    """
    _check_port(port, "Prometheus")
    return [
        executable or require_tool("prometheus"),
        f"--config.file={config_file}",
        f"--storage.tsdb.path={storage_dir}",
        f"--web.listen-address={LOOPBACK}:{port}",
        f"--storage.tsdb.retention.time={retention}",
        "--web.enable-lifecycle",
    ]


def alertmanager_command(config_file: Path, storage_dir: Path, port: int, *, executable: str | None = None) -> list[str]:
    """``alertmanager`` on 127.0.0.1:``port``, state in ``storage_dir``, no cluster.

    An empty ``--cluster.listen-address`` turns high-availability gossip off; by default
    Alertmanager would listen for peers on port 9094 of every interface.
    """
    _check_port(port, "Alertmanager")
    return [
        executable or require_tool("alertmanager"),
        f"--config.file={config_file}",
        f"--storage.path={storage_dir}",
        f"--web.listen-address={LOOPBACK}:{port}",
        "--cluster.listen-address=",
    ]


def start_prometheus(name: str, config_file: Path, storage_dir: Path, port: int, settings: Settings) -> ServiceStatus:
    """Start Prometheus in the background through the course's process seam; ready when ``/-/ready`` answers 200."""
    from course_utils.services import start_process

    Path(storage_dir).mkdir(parents=True, exist_ok=True)
    return start_process(name, prometheus_command(config_file, storage_dir, port), port, f"http://{LOOPBACK}:{port}",
                         settings, ready_path="/-/ready")


def start_alertmanager(name: str, config_file: Path, storage_dir: Path, port: int, settings: Settings) -> ServiceStatus:
    """Start Alertmanager in the background through the course's process seam; ready when ``/-/ready`` answers 200."""
    from course_utils.services import start_process

    Path(storage_dir).mkdir(parents=True, exist_ok=True)
    return start_process(name, alertmanager_command(config_file, storage_dir, port), port, f"http://{LOOPBACK}:{port}",
                         settings, ready_path="/-/ready")


# --- promtool --------------------------------------------------------------------------------


def _promtool(*args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("promtool"), *args], capture_output=True, text=True, check=False, timeout=timeout_s)


def check_rules(paths: Sequence[Path]) -> subprocess.CompletedProcess[str]:
    """``promtool check rules``: syntax, PromQL and templates of rule files (returncode 0 when valid)."""
    return _promtool("check", "rules", *map(str, paths))


def run_rule_tests(paths: Sequence[Path]) -> subprocess.CompletedProcess[str]:
    """``promtool test rules``: run rule unit tests (returncode 0 when every expectation holds)."""
    return _promtool("test", "rules", *map(str, paths))



def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    """``promtool check config``: a ``prometheus.yml`` and the rule files it names."""
    return _promtool("check", "config", str(path))
