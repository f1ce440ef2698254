"""Alert rules under ``promtool`` (offline, a fraction of a second each), and course_utils.prometheus.

promtool comes from Debian's ``prometheus`` package. When it is missing these tests fail (they
do not skip) with the install command in the message.
"""

from __future__ import annotations

import os
import subprocess
import re
import stat
from pathlib import Path

import pytest
import yaml

from course_utils.prometheus import (
    INSTALL_COMMAND,
    ROUTER_JOB,
    PrometheusToolError,
    alertmanager_command,
    alertmanager_config,
    check_config,
    check_rules,
    find_tool,
    parse_version,
    prometheus_command,
    prometheus_config,
    require_tool,
    rule_files,
    rule_tests_dir,
    rules_dir,
    run_rule_tests,
    write_alertmanager_config,
    write_prometheus_config,
)
from course_utils.router import METRIC_NAMES, build_metrics
from course_utils.routing import DEFAULT_MAX_ERROR_RATE, DEFAULT_MAX_P99_S, DEFAULT_MIN_REQUESTS


def _rules(path: Path) -> dict[str, dict]:
    """Alert name -> rule, from one rule file."""
    groups = yaml.safe_load(path.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def _rule_tests() -> list[Path]:
    return sorted(rule_tests_dir().glob("*.yml"))


@pytest.fixture(scope="module")
def promtool() -> str:
    """promtool's path; fails (never skips) with the install command when it is missing."""
    return require_tool("promtool")


# --- the rules, checked and unit-tested by promtool ------------------------------------------


def test_rule_files_exist_for_drift_and_router() -> None:
    assert [path.name for path in rule_files()] == ["drift.yml", "router.yml"]


def test_rule_files_pass_promtool_check(promtool: str) -> None:
    result = check_rules(rule_files())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 2 rules found" in result.stdout  # drift.yml
    assert "SUCCESS: 3 rules found" in result.stdout  # router.yml


@pytest.mark.parametrize("test_file", _rule_tests(), ids=lambda path: path.name)
def test_promtool_rule_tests_pass(promtool: str, test_file: Path) -> None:
    result = run_rule_tests([test_file])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_a_wrong_expectation_makes_promtool_fail(promtool: str, tmp_path: Path) -> None:
    """The harness can fail: expect the error-rate alert on the healthy arm instead of the canary."""
    wrong = (rule_tests_dir() / "router_test.yml").read_text().replace("arm: canary", "arm: stable", 1)
    wrong = wrong.replace("../rules/router.yml", str(rules_dir() / "router.yml"))
    test_file = tmp_path / "wrong_test.yml"
    test_file.write_text(wrong)
    result = run_rule_tests([test_file])
    assert result.returncode == 1
    assert "FAILED" in result.stdout + result.stderr
    assert 'Labels:{alertname="RouterArmHighErrorRate", arm="stable", severity="page"}' in result.stdout + result.stderr


def test_every_rule_file_and_alert_has_a_promtool_test() -> None:
    tested_files, tested_alerts = set(), set()
    for test_file in _rule_tests():
        spec = yaml.safe_load(test_file.read_text())
        tested_files |= {(test_file.parent / name).resolve() for name in spec["rule_files"]}
        for case in spec["tests"]:
            tested_alerts |= {check["alertname"] for check in case.get("alert_rule_test", [])}
    assert tested_files == {path.resolve() for path in rule_files()}
    assert tested_alerts == {name for path in rule_files() for name in _rules(path)}


def test_router_rules_use_metric_names_the_router_exports() -> None:
    metrics = build_metrics()
    metrics.requests.labels("a", "primary").inc()
    metrics.latency.labels("a", "primary").observe(0.1)
    metrics.errors.labels("a", "primary", "5xx").inc()
    exported = {sample.name for family in metrics.registry.collect() for sample in family.samples}
    used = set(re.findall(r"course_router_\w+", (rules_dir() / "router.yml").read_text()))
    assert used == {METRIC_NAMES["errors"], METRIC_NAMES["requests"], METRIC_NAMES["latency"] + "_bucket"}
    assert used <= exported


def test_router_alert_thresholds_match_the_routers_rollback_defaults() -> None:
    rules = _rules(rules_dir() / "router.yml")
    assert f") > {DEFAULT_MAX_ERROR_RATE:g}\n" in rules["RouterArmHighErrorRate"]["expr"]
    assert f") > {DEFAULT_MAX_P99_S:g}\n" in rules["RouterArmSlowP99"]["expr"]
    for name in ("RouterArmHighErrorRate", "RouterArmSlowP99"):
        assert f">= {DEFAULT_MIN_REQUESTS}\n" in rules[name]["expr"]
    assert f'job="{ROUTER_JOB}"' in rules["RouterDown"]["expr"]


# --- finding the tools -----------------------------------------------------------------------


def _executable(folder: Path, name: str) -> Path:
    path = folder / name
    path.write_text("#!/bin/sh\necho 'alertmanager, version 0.25.0 (branch: debian/sid)'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_missing_tools_name_the_package_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    messages = {}
    for tool in ("prometheus", "promtool", "alertmanager"):
        with pytest.raises(PrometheusToolError) as error:
            require_tool(tool)
        messages[tool] = str(error.value)
    assert messages == {
        "prometheus": "prometheus was not found on PATH (looked for prometheus): install it with "
        "`sudo apt-get install -y prometheus` (Debian/Ubuntu; macOS: `brew install prometheus`).",
        "promtool": "promtool was not found on PATH (looked for promtool): install it with "
        "`sudo apt-get install -y prometheus` (Debian/Ubuntu; macOS: `brew install prometheus`).",
        "alertmanager": "alertmanager was not found on PATH (looked for alertmanager, prometheus-alertmanager): install it "
        "with `sudo apt-get install -y prometheus-alertmanager` (Debian/Ubuntu; macOS: `brew install alertmanager`).",
    }
    assert INSTALL_COMMAND == "sudo apt-get install -y prometheus prometheus-alertmanager"


def test_alertmanager_is_found_under_debians_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    debian = _executable(tmp_path, "prometheus-alertmanager")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_tool("alertmanager") == str(debian)
    upstream = _executable(tmp_path, "alertmanager")
    assert find_tool("alertmanager") == str(upstream)  # the upstream name wins when both exist


def test_unknown_tool_is_refused() -> None:
    with pytest.raises(ValueError) as error:
        find_tool("grafana")
    assert str(error.value) == "Unknown tool 'grafana'; the course uses prometheus, promtool, alertmanager, amtool."


def test_parse_version_reads_debians_version_lines() -> None:
    assert parse_version("promtool, version 2.42.0+ds (branch: debian/sid, revision: 2.42.0+ds-5)") == "2.42.0+ds"
    assert parse_version("alertmanager, version 0.25.0 (branch: debian/sid)") == "0.25.0"
    with pytest.raises(PrometheusToolError) as error:
        parse_version("command not understood")
    assert str(error.value) == "Could not read a version from: 'command not understood'"


# --- configuration and command lines ---------------------------------------------------------


def test_prometheus_config_scrapes_loopback_and_loads_the_course_rules(promtool: str, tmp_path: Path) -> None:
    path = write_prometheus_config(tmp_path, {ROUTER_JOB: 8100, "drift-monitor": 8101}, alertmanager_port=9093)
    config = yaml.safe_load(path.read_text())
    assert [(job["job_name"], job["static_configs"][0]["targets"]) for job in config["scrape_configs"]] == [
        ("router", ["127.0.0.1:8100"]), ("drift-monitor", ["127.0.0.1:8101"])
    ]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:9093"]
    assert config["rule_files"] == [str(path) for path in rule_files()]
    result = check_config(path)  # Prometheus's own validation, rule files included
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ({"router": 70000}, "Scrape target 'router' port 70000 is not a TCP port; give a number from 1 to 65535."),
        ({"my router": 8100}, "Scrape job name 'my router' must match ^[a-zA-Z_][a-zA-Z0-9_-]*$."),
    ],
)
def test_bad_scrape_targets_are_refused(targets: dict, message: str) -> None:
    with pytest.raises(ValueError) as error:
        prometheus_config(targets)
    assert str(error.value) == message


def test_alertmanager_config_sends_every_alert_to_the_webhook(tmp_path: Path) -> None:
    path = write_alertmanager_config(tmp_path, "http://127.0.0.1:8200/alerts")
    config = yaml.safe_load(path.read_text())
    assert config["route"]["receiver"] == config["receivers"][0]["name"]
    assert config["receivers"][0]["webhook_configs"] == [{"url": "http://127.0.0.1:8200/alerts", "send_resolved": True}]
    amtool = require_tool("amtool")
    result = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alertmanager_config_needs_a_url() -> None:
    with pytest.raises(ValueError) as error:
        alertmanager_config("127.0.0.1:8200")
    assert str(error.value) == "webhook_url='127.0.0.1:8200' is not an http(s) URL; give e.g. http://127.0.0.1:8200/alerts."


def test_command_lines_listen_on_loopback_only_and_keep_data_where_told(tmp_path: Path) -> None:
    prometheus = prometheus_command(tmp_path / "prometheus.yml", tmp_path / "tsdb", 9090, executable="prometheus")
    alertmanager = alertmanager_command(tmp_path / "alertmanager.yml", tmp_path / "am", 9093, executable="alertmanager")
    assert prometheus == [
        "prometheus", f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        "--web.listen-address=127.0.0.1:9090", "--storage.tsdb.retention.time=1d", "--web.enable-lifecycle",
    ]
    assert alertmanager == [
        "alertmanager", f"--config.file={tmp_path / 'alertmanager.yml'}", f"--storage.path={tmp_path / 'am'}",
        "--web.listen-address=127.0.0.1:9093", "--cluster.listen-address=",
    ]


def test_command_lines_use_the_installed_tools() -> None:
    assert prometheus_command(Path("p.yml"), Path("d"), 9090)[0] == require_tool("prometheus")
    assert alertmanager_command(Path("a.yml"), Path("d"), 9093)[0] == require_tool("alertmanager")
    assert os.access(require_tool("alertmanager"), os.X_OK)
