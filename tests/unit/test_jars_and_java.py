"""The Delta jar cache and the Java version check."""

from __future__ import annotations

import zipfile

import pytest

from course_utils.config import DELTA_JARS, load_settings
from course_utils.jars import JarCacheError, cached_jars, jar_file_name
from course_utils.spark import JavaError, parse_java_major, require_java


def test_jar_file_name_follows_maven() -> None:
    assert jar_file_name("io.delta:delta-storage:4.4.0") == "delta-storage-4.4.0.jar"
    with pytest.raises(ValueError, match="group:artifact:version"):
        jar_file_name("io.delta:delta-storage")


def test_missing_cache_says_to_run_setup(tmp_path) -> None:
    with pytest.raises(JarCacheError, match=r"lacks or has damaged.*\./setup\.sh"):
        cached_jars(tmp_path)


def test_half_downloaded_jar_is_reported_as_damaged(tmp_path) -> None:
    for coordinate in DELTA_JARS:
        with zipfile.ZipFile(tmp_path / jar_file_name(coordinate), "w") as jar:
            jar.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n")
    assert len(cached_jars(tmp_path)) == len(DELTA_JARS)
    broken = tmp_path / jar_file_name(DELTA_JARS[0])
    broken.write_bytes(broken.read_bytes()[:20])
    with pytest.raises(JarCacheError, match=broken.name):
        cached_jars(tmp_path)


def test_the_repository_cache_is_complete_after_setup() -> None:
    """setup.sh ran before the suite: the jars Spark loads must be there and readable."""
    assert [p.name for p in cached_jars(load_settings().jar_cache)] == [jar_file_name(c) for c in DELTA_JARS]


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('java version "1.8.0_392"', 8),
        ('openjdk version "21" 2023-09-19', 21),
        ('openjdk version "11.0.2" 2019-01-15', 11),
    ],
)
def test_java_versions_are_parsed(output: str, major: int) -> None:
    assert parse_java_major(output) == major


def test_unparseable_java_output_is_an_error() -> None:
    with pytest.raises(JavaError, match="Could not read a Java version"):
        parse_java_major("command not found")


def test_old_java_is_refused_with_install_instructions(monkeypatch) -> None:
    monkeypatch.setattr("course_utils.spark.java_major_version", lambda: 11)
    with pytest.raises(JavaError, match=r"Java 11 found; Spark 4 needs Java 17\+.*openjdk-17"):
        require_java()


def test_missing_java_is_reported_with_the_fix(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(JavaError, match="Java was not found.*install a JDK 17"):
        require_java()
