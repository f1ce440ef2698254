"""The speed levers keep their promises: pinned requirements equal the lock file, the JVM class
archive is really mapped by Spark's driver, and setup's doctor skips round trips only when
nothing they depend on changed."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path

import pytest

from course_utils.config import load_settings
from course_utils.doctor import record_passing_round_trips, round_trip_inputs_digest, round_trips_still_valid
from course_utils.models import LockFileError, churn_pipeline, feature_frame, log_churn_model, pinned_requirements
from course_utils.spark import class_archive_path, driver_java_options


def test_pinned_requirements_are_the_lock_files_versions() -> None:
    lock = (load_settings().root / "requirements.lock").read_text()
    for requirement in pinned_requirements():
        name, pinned = requirement.split("==")
        assert re.search(rf"^{re.escape(name)}=={re.escape(pinned)}$", lock, flags=re.MULTILINE), requirement
        assert version(name) == pinned, f"{name}: installed {version(name)}, locked {pinned}; re-run ./setup.sh"


def test_a_package_missing_from_the_lock_is_named_with_the_fix() -> None:
    with pytest.raises(LockFileError, match=r"not-a-real-package not pinned in requirements.lock; add it to requirements.in"):
        pinned_requirements(("mlflow", "not-a-real-package"))


def test_log_churn_model_pins_requirements_unless_asked_to_infer(tmp_path, monkeypatch) -> None:
    import mlflow
    import pandas as pd

    monkeypatch.chdir(tmp_path)  # the default artifact root ./mlruns lands in tmp_path
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    inferred_calls: list[object] = []
    monkeypatch.setattr("mlflow.models.infer_pip_requirements", lambda *a, **k: inferred_calls.append(a) or ["mlflow"])
    frame = pd.DataFrame({
        "active_days_28d": [1, 20, 3, 25], "sessions_28d": [2, 40, 5, 50], "minutes_watched_28d": [10.0, 900.0, 30.0, 800.0],
        "support_tickets_28d": [3, 0, 2, 0], "payment_failures_28d": [1, 0, 1, 0], "tenure_months": [1, 30, 2, 40],
        "age": [20, 40, 30, 50], "monthly_fee": [9.0, 15.0, 9.0, 20.0],
        "country": ["DE", "US", "FR", "US"], "plan": ["basic", "premium", "basic", "standard"],
    })
    inputs = feature_frame(frame)
    pipeline = churn_pipeline(n_estimators=3, max_depth=2).fit(inputs, [1, 0, 1, 0])
    mlflow.set_experiment("pins")
    with mlflow.start_run():
        pinned = log_churn_model(pipeline, inputs)
    location = mlflow.get_logged_model(pinned.model_id).artifact_location
    assert mlflow.artifacts.load_text(f"{location}/requirements.txt").split() == pinned_requirements()
    assert not inferred_calls, "pinned requirements must not run MLflow's inference"
    with mlflow.start_run():
        log_churn_model(pipeline, inputs, infer_requirements=True)
    assert len(inferred_calls) == 1, "infer_requirements=True leaves the requirements to MLflow's inference"


def test_driver_options_use_the_archive_only_when_it_exists(tmp_path) -> None:
    settings = replace(load_settings(), root=tmp_path)
    assert "SharedArchiveFile" not in driver_java_options(settings)
    assert "-XX:TieredStopAtLevel=1" in driver_java_options(settings)
    dumping = driver_java_options(settings, archive_at_exit=tmp_path / "new.jsa")
    assert f"-XX:ArchiveClassesAtExit={tmp_path / 'new.jsa'}" in dumping and "SharedArchiveFile" not in dumping
    archive = class_archive_path(settings)
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"archive")
    assert f"-XX:SharedArchiveFile={archive}" in driver_java_options(settings)


def test_setup_built_the_class_archive_and_the_spark_driver_maps_it() -> None:
    """setup.sh ran before the suite: the driver JVM must really load its classes from the archive."""
    from course_utils.spark import get_spark

    settings = load_settings()
    archive = class_archive_path(settings)
    assert archive.is_file(), f"{archive} is missing: run ./setup.sh (or `.venv/bin/course jvm-archive`)"
    spark = get_spark("archive-check", settings)
    jvm_pid = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
    mapped = Path(f"/proc/{jvm_pid}/maps").read_text()
    assert str(archive) in mapped, "the JVM started but rejected the archive (mismatched Java or classpath?)"


def _settings_in(root: Path):
    """Settings whose inputs (lock, manifest, jars) are copies under ``root``."""
    real = load_settings()
    (root / "datasets").mkdir(parents=True)
    shutil.copy(real.root / "requirements.lock", root / "requirements.lock")
    shutil.copy(real.root / "pyproject.toml", root / "pyproject.toml")
    shutil.copy(real.datasets / "manifest.json", root / "datasets" / "manifest.json")
    return replace(real, root=root)


def test_round_trips_are_skipped_only_on_unchanged_inputs(tmp_path) -> None:
    settings = _settings_in(tmp_path)
    assert round_trips_still_valid(settings) is None, "never passed here: run them"
    record_passing_round_trips(settings)
    assert round_trips_still_valid(settings), "same inputs: the earlier pass still holds"
    manifest = settings.datasets / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "changed": True}))
    assert round_trips_still_valid(settings) is None, "a changed dataset manifest re-runs the round trips"
    record_passing_round_trips(settings)
    (tmp_path / "requirements.lock").write_text((tmp_path / "requirements.lock").read_text() + "\nnew-package==1.0\n")
    assert round_trips_still_valid(settings) is None, "a changed lock file re-runs the round trips"


def test_digest_covers_the_jars(tmp_path) -> None:
    settings = _settings_in(tmp_path)
    before = round_trip_inputs_digest(settings)
    settings.jar_cache.mkdir(parents=True)
    (settings.jar_cache / "delta-spark.jar").write_bytes(b"a jar")
    assert round_trip_inputs_digest(settings) != before


def test_nested_phases_count_only_their_own_time(tmp_path, monkeypatch) -> None:
    from course_utils.timing import TIMINGS_ENV, read_phases, timed

    log = tmp_path / "timings.jsonl"
    ticks = iter([0.0, 1.0, 3.0, 10.0])  # champion 0-10 s, spark start 1-3 s inside it
    monkeypatch.setattr("course_utils.timing.time.time", lambda: next(ticks))
    monkeypatch.setenv(TIMINGS_ENV, str(log))
    with timed("prerequisite: champion"):
        with timed("spark session start"):
            pass
    assert read_phases(log) == {"prerequisite": 8.0, "spark session start": 2.0}


def test_mlflow_requests_do_not_import_feast_through_its_header_plugin() -> None:
    """Feast's request-header plugin is left out (it imports all of feast); MLflow's own providers stay."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from course_utils.tracking import skip_unused_request_header_providers\n"
        "skip_unused_request_header_providers()\n"
        "from mlflow.tracking.request_header.registry import _request_header_provider_registry, resolve_request_headers\n"
        "print(sorted(type(p).__name__ for p in _request_header_provider_registry))\n"
        "print('User-Agent' in resolve_request_headers(), 'feast' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["['DatabricksRequestHeaderProvider', 'DefaultRequestHeaderProvider']", "True False"], out
