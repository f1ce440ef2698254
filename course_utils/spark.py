"""A Spark session with Delta Lake, built from the cached jars.

Local mode by default; ``COURSE_SPARK_MASTER`` (for example ``spark://host:7077`` or
``local-cluster[2,1,1024]``) runs the same code on a cluster.

Example:
    >>> spark = get_spark("my_lesson")          # doctest: +SKIP
    >>> spark.range(3).count()                   # doctest: +SKIP
    3
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING

from course_utils.config import MIN_JAVA, Settings, load_settings
from course_utils.jars import cached_jars
from course_utils.ports import free_port

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


class JavaError(RuntimeError):
    """Java is missing or too old for Spark 4."""


JAVA_INSTALL_HINT = (
    "install a JDK 17 or newer (Debian/Ubuntu: `sudo apt-get install openjdk-17-jdk-headless`; "
    "macOS: `brew install openjdk@17`; conda: `conda install -c conda-forge openjdk=17`) "
    "and make sure `java` is on PATH or JAVA_HOME points to it"
)


def java_executable() -> str | None:
    """The java binary Spark will use: ``$JAVA_HOME/bin/java`` first, then PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = os.path.join(java_home, "bin", "java")
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("java")


def parse_java_major(version_output: str) -> int:
    """The major version from ``java -version`` output ('1.8.0_392' -> 8, '17.0.15' -> 17)."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if match is None:
        raise JavaError(f"Could not read a Java version from: {version_output.strip()[:200]!r}")
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def java_major_version() -> int:
    """The installed Java's major version; raises JavaError with the fix when absent."""
    java = java_executable()
    if java is None:
        raise JavaError(f"Java was not found; Spark 4 needs Java {MIN_JAVA}+: {JAVA_INSTALL_HINT}.")
    result = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    return parse_java_major(result.stderr + result.stdout)


def require_java(minimum: int = MIN_JAVA) -> int:
    """Check Java is at least ``minimum``; returns its major version."""
    major = java_major_version()
    if major < minimum:
        raise JavaError(f"Java {major} found; Spark 4 needs Java {minimum}+: {JAVA_INSTALL_HINT}.")
    return major


def get_spark(app_name: str = "ml-in-production", settings: Settings | None = None) -> SparkSession:
    """The course's Spark session: Delta enabled from the jar cache, UTC, laptop-sized.

    Returns the already running session when there is one (Spark allows one per process).
    """
    from pyspark.sql import SparkSession

    settings = settings or load_settings()
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    require_java()
    jars = cached_jars(settings.jar_cache)
    # Spark's launcher otherwise picks a non-loopback interface for its own sockets.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # Python workers (UDFs, mlflow spark_udf) must use this interpreter, not the first python3 on
    # PATH: PySpark reads PYSPARK_PYTHON when it creates the context (the conf below alone is not
    # enough for a script run as .venv/bin/python; its workers failed with "No module named pandas").
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    warehouse = settings.workspace / "spark-warehouse"
    builder = (
        SparkSession.builder.appName(app_name)
        .master(settings.spark_master)
        .config("spark.jars", ",".join(str(p) for p in jars))
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.pyspark.python", sys.executable)
        .config("spark.sql.session.timeZone", "UTC")
        # Two cores and small data: 200 shuffle partitions would mean 200 tiny tasks per shuffle.
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.default.parallelism", "4")
        .config("spark.sql.warehouse.dir", str(warehouse))
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.port", str(free_port()))
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", os.environ.get("COURSE_SPARK_DRIVER_MEMORY", "2g"))
        # Lessons demonstrate VACUUM with short retention on their own tables.
        .config("spark.databricks.delta.retentionDurationCheck.enabled", "false")
        .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={settings.workspace / 'derby'}")
    )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def spark_ui_url(spark: SparkSession) -> str | None:
    """The Spark UI address of a running session (None when the UI is disabled)."""
    return spark.sparkContext.uiWebUrl
