"""The Delta jar cache: fetched once by ``setup.sh``, read by every Spark session.

Spark never resolves packages while a notebook runs (no ``spark.jars.packages``); it
loads the jars listed here from ``.cache/jars`` inside the repository.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import zipfile
from pathlib import Path

from course_utils.config import DELTA_JARS
from course_utils.errors import CourseError

logger = logging.getLogger(__name__)


class JarCacheError(CourseError, RuntimeError):
    """The jar cache is missing or damaged."""


def jar_file_name(coordinate: str) -> str:
    """``group:artifact:version`` -> ``artifact-version.jar`` (Maven's file name)."""
    parts = coordinate.split(":")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"{coordinate!r} is not a Maven coordinate of the form group:artifact:version.")
    _, artifact, version = parts
    return f"{artifact}-{version}.jar"


def cached_jars(cache_dir: Path, coordinates: tuple[str, ...] = DELTA_JARS) -> list[Path]:
    """Paths of the cached jars; raises JarCacheError naming what is missing and the fix."""
    paths = [cache_dir / jar_file_name(c) for c in coordinates]
    missing = [p.name for p in paths if not _is_valid_jar(p)]
    if missing:
        raise JarCacheError(
            f"The Delta jar cache {cache_dir} lacks or has damaged: {', '.join(missing)}. "
            "Run ./setup.sh (or `.venv/bin/course fetch-jars`) once with the network available."
        )
    return paths


def fetch_jars(cache_dir: Path, coordinates: tuple[str, ...] = DELTA_JARS) -> list[Path]:
    """Copy the jars from Maven Central into ``cache_dir``, skipping those already there."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    for coordinate in coordinates:
        target = cache_dir / jar_file_name(coordinate)
        if _is_valid_jar(target):
            continue
        _fetch_with_maven(coordinate, cache_dir)
    return cached_jars(cache_dir, coordinates)


def _fetch_with_maven(coordinate: str, cache_dir: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise JarCacheError(
            "Maven (mvn) is needed once to fetch the Delta jars: install it "
            "(Debian: `apt-get install maven`) and run ./setup.sh again."
        )
    logger.info("fetching %s", coordinate)
    result = subprocess.run(
        [mvn, "-q", "-B", "-U", "dependency:copy", f"-Dartifact={coordinate}", f"-DoutputDirectory={cache_dir}"],
        capture_output=True,
        text=True,
        cwd=cache_dir,
        check=False,
    )
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-5:])
        raise JarCacheError(f"Maven could not fetch {coordinate}:\n{tail}\nCheck the network and run ./setup.sh again.")


def _is_valid_jar(path: Path) -> bool:
    """A jar is valid when it exists and is a readable zip (catches half-written downloads)."""
    if not path.is_file():
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except zipfile.BadZipFile:
        return False
