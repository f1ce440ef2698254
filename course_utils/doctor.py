"""``course doctor``: check the workspace works end to end, and say how to fix what does not.

Each check is a small function returning a :class:`CheckResult`; a failing check carries
the fix a learner should apply.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from course_utils.config import MIN_JAVA, Settings, load_settings

MIN_FREE_DISK_GB = 5.0


@dataclass(frozen=True)
class CheckResult:
    """One doctor check: what was checked, whether it passed, details, the fix and its duration."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    seconds: float = 0.0


def check_java(settings: Settings) -> CheckResult:
    """Java is present and recent enough for Spark 4."""
    from course_utils.spark import JavaError, java_major_version

    try:
        major = java_major_version()
    except JavaError as error:
        return CheckResult("java", False, str(error), "Install Java 17+ and re-run ./setup.sh.")
    if major < MIN_JAVA:
        return CheckResult("java", False, f"Java {major} found", f"Install Java {MIN_JAVA}+ (Spark 4 needs it).")
    return CheckResult("java", True, f"Java {major}")


def check_jars(settings: Settings) -> CheckResult:
    """The Delta jars are in the local cache."""
    from course_utils.jars import JarCacheError, cached_jars

    try:
        jars = cached_jars(settings.jar_cache)
    except JarCacheError as error:
        return CheckResult("delta jars", False, str(error), "Run ./setup.sh (it fetches the jars once).")
    return CheckResult("delta jars", True, ", ".join(p.name for p in jars))


def check_datasets(settings: Settings) -> CheckResult:
    """The generated datasets exist and match the manifest."""
    from course_utils.datasets import DatasetError, verify

    folder = settings.datasets / "generated" / settings.profile
    try:
        verify(settings.profile, folder, settings.datasets)
    except DatasetError as error:
        return CheckResult("datasets", False, str(error), f"Run `.venv/bin/course datasets generate --profile {settings.profile}`.")
    return CheckResult("datasets", True, f"profile {settings.profile} at {folder.relative_to(settings.root)}")


def check_spark_delta(settings: Settings) -> CheckResult:
    """Spark starts, writes a Delta table, appends, and reads version 0 back by time travel."""
    from course_utils.spark import get_spark

    spark = get_spark("course-doctor", settings)
    with tempfile.TemporaryDirectory(prefix="course-doctor-") as folder:
        table = f"{folder}/roundtrip"
        spark.range(5).write.format("delta").save(table)
        spark.range(5, 8).write.format("delta").mode("append").save(table)
        latest = spark.read.format("delta").load(table).count()
        first = spark.read.format("delta").option("versionAsOf", 0).load(table).count()
    ui = spark.sparkContext.uiWebUrl
    if (latest, first) != (8, 5):
        return CheckResult("spark + delta", False, f"read {latest} and {first} rows, expected 8 and 5", "Re-run ./setup.sh.")
    return CheckResult("spark + delta", True, f"Spark {spark.version}, Delta write/append/time travel OK, UI {ui}")


def check_mlflow(settings: Settings) -> CheckResult:
    """The tracking server answers and a model survives the registry round trip."""
    from course_utils.services import ServiceError, check_tracking_server, ensure_tracking_server
    from course_utils.tracking import registry_round_trip, skip_unused_request_header_providers

    skip_unused_request_header_providers()

    try:
        uri = ensure_tracking_server(settings)
        check_tracking_server(uri)
    except (ServiceError, OSError) as error:
        return CheckResult("mlflow", False, str(error), "Run `.venv/bin/course services up` and read workspace/run/mlflow.log.")
    model_uri = registry_round_trip(uri)
    return CheckResult("mlflow", True, f"server {uri}; registered, aliased and loaded {model_uri.split('/')[-1]}")


def check_ports(settings: Settings) -> CheckResult:
    """The tracking server's port is either ours or free."""
    from course_utils.ports import is_port_free
    from course_utils.services import MLFLOW, status

    if not settings.uses_own_tracking_server:
        return CheckResult("ports", True, f"using external tracking server {settings.tracking_uri}")
    port = settings.mlflow_port
    if status(MLFLOW, settings).running or is_port_free(port):
        return CheckResult("ports", True, f"{port} free or used by the course's MLflow server")
    return CheckResult(
        "ports", False, f"port {port} is taken by another program", f"Stop it or `export COURSE_MLFLOW_PORT={port + 1}`."
    )


def check_disk(settings: Settings) -> CheckResult:
    """Enough free disk for Delta tables, MLflow artifacts and executed notebooks."""
    free_gb = shutil.disk_usage(settings.root).free / 1e9
    if free_gb < MIN_FREE_DISK_GB:
        return CheckResult("disk", False, f"{free_gb:.1f} GB free", f"Free at least {MIN_FREE_DISK_GB:.0f} GB.")
    return CheckResult("disk", True, f"{free_gb:.0f} GB free")


def check_prometheus(settings: Settings) -> CheckResult:
    """Prometheus, promtool and Alertmanager are on PATH (module 04 monitors and alerts with them)."""
    from course_utils.prometheus import INSTALL_COMMAND, MONITORING_TOOLS, PrometheusToolError, tool_version

    try:
        versions = {tool: tool_version(tool) for tool in MONITORING_TOOLS}
    except PrometheusToolError as error:
        return CheckResult("prometheus", False, str(error),
                           f"Run `{INSTALL_COMMAND}` (macOS: `brew install prometheus alertmanager`); module 04 needs them.")
    return CheckResult("prometheus", True, ", ".join(f"{tool} {version}" for tool, version in versions.items()))


QUICK_CHECKS: tuple[Callable[[Settings], CheckResult], ...] = (
    check_java, check_jars, check_datasets, check_prometheus, check_ports, check_disk,
)
ROUND_TRIPS: tuple[Callable[[Settings], CheckResult], ...] = (check_spark_delta, check_mlflow)
ALL_CHECKS = QUICK_CHECKS + ROUND_TRIPS


def round_trip_inputs_digest(settings: Settings) -> str:
    """A digest of what the round trips depend on: lock file, jars, dataset manifest, Java, JVM archive.

    When it equals the digest of the last passing doctor, the round trips would exercise exactly
    the same installation again, so ``setup.sh`` may skip them (``course doctor`` never does).
    """
    from course_utils.spark import class_archive_path, java_executable

    digest = hashlib.sha256()
    for path in (settings.root / "requirements.lock", settings.root / "pyproject.toml", settings.datasets / "manifest.json"):
        digest.update(path.read_bytes() if path.is_file() else b"missing")
    for jar in sorted(settings.jar_cache.glob("*.jar")):
        digest.update(jar.name.encode() + hashlib.sha256(jar.read_bytes()).digest())
    archive = class_archive_path(settings)
    digest.update(f"{archive.name}:{archive.stat().st_size if archive.is_file() else 0}".encode())
    java = java_executable()
    version = subprocess.run([java, "-version"], capture_output=True, text=True).stderr if java else "no java"
    digest.update(version.encode())
    return digest.hexdigest()


def _stamp_path(settings: Settings) -> Path:
    return settings.root / ".cache" / "doctor-passed.json"


def round_trips_still_valid(settings: Settings) -> str | None:
    """When the last full doctor passed on these exact inputs, the time it passed; else None."""
    try:
        stamp = json.loads(_stamp_path(settings).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return stamp.get("passed_at") if stamp.get("digest") == round_trip_inputs_digest(settings) else None


def record_passing_round_trips(settings: Settings) -> None:
    """Remember that every check passed on the current inputs."""
    path = _stamp_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    passed_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    path.write_text(json.dumps({"digest": round_trip_inputs_digest(settings), "passed_at": passed_at}))


def run_doctor(settings: Settings | None = None, checks: tuple[Callable[[Settings], CheckResult], ...] = ALL_CHECKS) -> list[CheckResult]:
    """Run ``checks`` (later ones still run when an earlier one fails) and return the results."""
    settings = settings or load_settings()
    results = []
    for check in checks:
        started = time.perf_counter()
        try:
            result = check(settings)
        except Exception as error:  # a doctor reports, it does not crash
            result = CheckResult(check.__name__.removeprefix("check_"), False, f"{type(error).__name__}: {error}", "See the message above.")
        results.append(CheckResult(result.name, result.ok, result.detail, result.fix, round(time.perf_counter() - started, 2)))
    return results


def format_results(results: list[CheckResult]) -> str:
    """The doctor's report as text, one line per check plus its fix when it failed."""
    lines = []
    for r in results:
        lines.append(f"{'✔' if r.ok else '✘'} {r.name:<14} {r.detail}  ({r.seconds:.1f} s)")
        if not r.ok and r.fix:
            lines.append(f"    fix: {r.fix}")
    failed = sum(not r.ok for r in results)
    lines.append("All checks passed." if failed == 0 else f"{failed} check(s) failed.")
    return "\n".join(lines)
