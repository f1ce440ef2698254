"""A Spark session with Delta Lake, built from the cached jars.

Local mode by default; ``COURSE_SPARK_MASTER`` (for example ``spark://host:7077`` or
``local-cluster[2,1,1024]``) runs the same code on a cluster.

Example:
    >>> spark = get_spark("my_lesson")          # doctest: +SKIP
    >>> spark.range(3).count()                   # doctest: +SKIP
    3
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from course_utils.config import DELTA_JARS, MIN_JAVA, Settings, load_settings
from course_utils.errors import CourseError
from course_utils.jars import cached_jars
from course_utils.ports import free_port
from course_utils.timing import timed
from course_utils.workspace import claim_workspace

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


# JVM flags every driver gets (and the class archive is dumped with); see driver_java_options.
JVM_TUNING = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")
# Bump when _archive_warm_up changes, so setup.sh dumps a new archive.
ARCHIVE_WARM_UP_VERSION = 2
# Heap per profile: the ci data is a few MB; a smaller heap keeps a notebook under 2 GiB in all.
DRIVER_MEMORY = {"ci": "1g", "full": "2g"}


class JavaError(CourseError, RuntimeError):
    """Java is missing or too old for Spark 4."""


JAVA_INSTALL_HINT = (
    "install a JDK 17 or newer (Debian/Ubuntu: `sudo apt-get install openjdk-17-jdk-headless`; "
    "macOS: `brew install openjdk@17`; conda: `conda install -c conda-forge openjdk=17`) "
    "and make sure `java` is on PATH or JAVA_HOME points to it"
)


def java_executable() -> str | None:
    """The java binary Spark will use: ``$JAVA_HOME/bin/java`` when JAVA_HOME is set, else PATH's.

    Spark's launcher never falls back to PATH when JAVA_HOME is set, so neither does this: a
    stale JAVA_HOME is an error naming it, not a pass on a different Java.
    """
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = os.path.join(java_home, "bin", "java")
        if not os.access(candidate, os.X_OK):
            on_path = shutil.which("java")
            alternative = f"unset it to use the java on PATH ({on_path})" if on_path else "unset it"
            raise JavaError(f"JAVA_HOME={java_home!r} has no bin/java, and Spark uses JAVA_HOME when it is set. "
                            f"Point JAVA_HOME at a Java {MIN_JAVA}+ installation, or {alternative}.")
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


def class_archive_path(settings: Settings) -> Path:
    """Where the JVM's class-data-sharing archive for this Java, PySpark and Delta jars lives.

    The name carries a key of all three, so an upgrade of any of them simply misses the old
    archive (and ``setup.sh`` builds a new one) instead of loading a mismatched one.
    """
    import pyspark

    java = os.path.realpath(java_executable() or "java")
    identity = f"{java}|{pyspark.__version__}|{'|'.join(sorted(DELTA_JARS))}|{' '.join(JVM_TUNING)}|{ARCHIVE_WARM_UP_VERSION}"
    key = hashlib.sha256(identity.encode()).hexdigest()[:12]
    return settings.root / ".cache" / "jvm" / f"spark-{key}.jsa"


def driver_java_options(settings: Settings, archive_at_exit: Path | None = None) -> str:
    """The driver JVM's options: Derby's folder, the C1 JIT, and the class archive when there is one.

    - ``-XX:TieredStopAtLevel=1``: compile with the quick C1 compiler only. Course jobs run for
      seconds, so C2's heavier optimisation costs two cores more than it returns.
    - ``-XX:+UseSerialGC``: a 1 GB heap needs no concurrent collector; measured 150 MB less
      resident memory than G1 for the same Delta work, at the same speed.
    - ``-XX:SharedArchiveFile``: map the classes Spark and Delta load at start-up from an archive
      that ``setup.sh`` dumped once (``-XX:ArchiveClassesAtExit``), instead of parsing and
      verifying ~20,000 classes from jars at every start.
    """
    options = [f"-Dderby.system.home={settings.workspace / 'derby'}", *JVM_TUNING]
    archive = class_archive_path(settings)
    if archive_at_exit is not None:
        options.append(f"-XX:ArchiveClassesAtExit={archive_at_exit}")
    elif archive.is_file():
        options.append(f"-XX:SharedArchiveFile={archive}")
    return " ".join(options)


def get_spark(
    app_name: str = "ml-in-production", settings: Settings | None = None, *, archive_at_exit: Path | None = None
) -> SparkSession:
    """The course's Spark session: Delta enabled from the jar cache, UTC, laptop-sized.

    Returns the already running session when there is one (Spark allows one per process).
    ``archive_at_exit`` is for ``build_class_archive`` only: the JVM writes its classes there.
    """
    from pyspark.sql import SparkSession

    settings = settings or load_settings()
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    require_java()
    claim_workspace(settings)  # Derby and the warehouse live in it
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
        .config("spark.driver.memory", os.environ.get("COURSE_SPARK_DRIVER_MEMORY", DRIVER_MEMORY[settings.profile]))
        # Lessons demonstrate VACUUM with short retention on their own tables.
        .config("spark.databricks.delta.retentionDurationCheck.enabled", "false")
        # Laptop-sized Delta: rebuilding a table's snapshot (its list of files) is a 50-task shuffle by
        # default, sized for clusters; measured 11.6 s -> 3.8 s for a first read on two cores.
        .config("spark.databricks.delta.snapshotPartitions", "1")
        # Listing a folder (VACUUM, partition discovery) in parallel uses up to 10,000 tasks by default.
        .config("spark.sql.sources.parallelPartitionDiscovery.parallelism", "4")
        .config("spark.driver.extraJavaOptions", driver_java_options(settings, archive_at_exit))
        # On a cluster (COURSE_SPARK_MASTER=spark://...) executors are JVMs of their own; same tuning.
        .config("spark.executor.extraJavaOptions", " ".join(JVM_TUNING))
    )
    if settings.spark_master.startswith("spark://"):
        from course_utils.cluster import check_master

        check_master(settings.spark_master)  # fail in seconds, not after a minute of retries
    with timed("spark session start"):
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def build_class_archive(settings: Settings | None = None) -> Path:
    """Dump the JVM class archive once (``setup.sh``), from a warm-up in a child process.

    The JVM writes the archive when it exits, so the warm-up (:func:`_archive_warm_up`) runs in
    its own Python process.
    """
    settings = settings or load_settings()
    archive = class_archive_path(settings)
    if archive.is_file():
        return archive
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    warm_up = (
        "import sys\n"
        "from pathlib import Path\n"
        "from course_utils.spark import _archive_warm_up\n"
        "_archive_warm_up(Path(sys.argv[1]))\n"
    )
    result = subprocess.run([sys.executable, "-c", warm_up, str(partial)], capture_output=True, text=True, check=False)
    if result.returncode != 0 or not partial.is_file():
        lines = (result.stderr or result.stdout).splitlines()
        tail = "\n".join([line for line in lines if "Error" in line or "Exception" in line][-5:] or lines[-10:])
        raise JavaError(f"Could not build the JVM class archive {archive} (Spark still works without it, only slower):\n{tail}")
    partial.replace(archive)
    return archive


def _archive_warm_up(archive_at_exit: Path) -> None:
    """Run what the lessons run, so the archive holds those classes (in a throwaway process).

    Delta's writes, MERGE, DELETE, RESTORE, OPTIMIZE ZORDER, VACUUM and time travel; a Structured
    Streaming query into Delta; a Spark ML pipeline; Arrow transfers to and from pandas.
    """
    import tempfile

    from delta.tables import DeltaTable
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import RandomForestClassifier
    from pyspark.ml.feature import OneHotEncoder, StringIndexer, VectorAssembler

    spark = get_spark("course-class-archive", archive_at_exit=archive_at_exit)
    with tempfile.TemporaryDirectory(prefix="course-jvm-archive-") as folder:
        table = f"{folder}/warm_up"
        rows = spark.range(200).selectExpr("id", "id % 7 AS bucket", "CAST(id AS DOUBLE) / 3 AS score",
                                           "IF(id % 3 = 0, 'a', 'b') AS plan", "CAST(id % 2 AS INT) AS label")
        rows.write.format("delta").partitionBy("bucket").save(table)
        rows.where("id > 150").withColumn("score", rows.score + 1).createOrReplaceTempView("updates")
        DeltaTable.forPath(spark, table).alias("t").merge(spark.table("updates").alias("u"), "t.id = u.id") \
            .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute()
        spark.sql(f"DELETE FROM delta.`{table}` WHERE id < 10")
        spark.sql(f"RESTORE TABLE delta.`{table}` TO VERSION AS OF 1").collect()
        spark.sql(f"OPTIMIZE delta.`{table}` ZORDER BY (id)").collect()
        spark.read.format("delta").option("versionAsOf", 0).load(table).groupBy("bucket").count().toPandas()
        spark.sql(f"VACUUM delta.`{table}` RETAIN 0 HOURS").collect()
        spark.sql(f"DESCRIBE DETAIL delta.`{table}`").collect()
        spark.createDataFrame(spark.read.format("delta").load(table).where("score > 3").orderBy("id").toPandas())
        DeltaTable.forPath(spark, table).history().collect()
        stream = (spark.readStream.format("delta").load(table).writeStream.format("delta")
                  .option("checkpointLocation", f"{folder}/checkpoint").trigger(availableNow=True).start(f"{folder}/sink"))
        stream.awaitTermination()
        model = Pipeline(stages=[
            StringIndexer(inputCols=["plan"], outputCols=["plan_index"]),
            OneHotEncoder(inputCols=["plan_index"], outputCols=["plan_onehot"]),
            VectorAssembler(inputCols=["score", "plan_onehot"], outputCol="features"),
            RandomForestClassifier(labelCol="label", numTrees=3, maxDepth=3, seed=1),
        ]).fit(spark.read.format("delta").load(table))
        model.transform(rows).select("prediction").collect()
    spark.stop()


def spark_ui_url(spark: SparkSession) -> str | None:
    """The Spark UI address of a running session (None when the UI is disabled)."""
    return spark.sparkContext.uiWebUrl
