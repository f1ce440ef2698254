"""03a's batch scoring job (features -> mlflow spark_udf -> date-partitioned Delta) on local[2] vs the
course's Spark standalone cluster with 1 and 2 workers (1 core, 1 GiB each), in rows/s.

Profile ``full`` when its data is generated (``course datasets generate --profile full``), else ``ci``
(``COURSE_PROFILE`` chooses). Every configuration scores the same rows with the same registered model,
in a fresh driver process, after its executors are up; the job runs ``REPEATS`` times: ``rows_per_s`` is
the median of the runs after the first (warm Python workers, model loaded), ``rows_per_s_first_run`` the first.

What a 2-core machine can show: that the code runs unchanged on a real cluster and what the
cluster's overheads cost (executor JVMs, task scheduling and result transfer over RPC, Python
workers per executor). What it cannot show: a speed-up. Two 1-core workers plus the driver and the
daemons share the same two cores that local[2] uses alone, so more workers cannot run more work at
once; on a real cluster each worker brings its own cores and memory and rows/s grows with workers
until the job's fixed costs (driver, Delta commit, model load per executor) dominate.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPEATS = 3  # the first run starts the Python workers and loads the model in each; reported apart

DRIVER = """
import json, sys, time
from pyspark.sql import functions as F
import mlflow
from course_utils import start_lesson
from course_utils.features import ENTITY_KEY, NUMERIC_FEATURES, TIMESTAMP_COLUMN, require_customer_features
from course_utils.models import FEATURES, require_champion

repeats = int(sys.argv[1])
lesson = start_lesson("03a_batch", reset=False, seed=42)
spark = lesson.spark
features_path = require_customer_features(lesson)
champion_uri = require_champion(lesson)
spark.range(64).repartition(8).count()  # executors up and warm before timing
to_score = spark.read.format("delta").load(features_path)
rows = to_score.count()
churn_udf = mlflow.pyfunc.spark_udf(spark, champion_uri, result_type="double", env_manager="local")
inputs = [F.col(c).cast("double").alias(c) if c in NUMERIC_FEATURES else F.col(c) for c in FEATURES]
predictions = to_score.select(ENTITY_KEY, F.col(TIMESTAMP_COLUMN).alias("scoring_date"),
                              churn_udf(F.struct(*inputs)).cast("int").alias("churn_prediction"))
seconds = []
for attempt in range(repeats):
    started = time.perf_counter()
    predictions.repartition(8).write.format("delta").mode("overwrite").partitionBy("scoring_date").save(
        lesson.delta_path("bench_cluster_predictions"))
    seconds.append(time.perf_counter() - started)
executors = spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() - (0 if spark.sparkContext.master.startswith("local") else 1)
print(json.dumps({"rows": rows, "seconds": seconds, "master": spark.sparkContext.master, "executors": executors}))
lesson.stop()
"""


def _score(master: str, env: dict[str, str]) -> dict:
    output = subprocess.run([sys.executable, "-c", DRIVER, str(REPEATS)], env={**env, "COURSE_SPARK_MASTER": master},
                            capture_output=True, text=True, check=False, timeout=3600)
    if output.returncode != 0:
        raise RuntimeError(f"scoring on {master} failed:\n{output.stderr[-3000:]}")
    result = json.loads(output.stdout.strip().splitlines()[-1])
    cold, warm = result["seconds"][0], statistics.median(result["seconds"][1:])
    return {"rows": result["rows"], "executors": result["executors"], "job_seconds": [round(s, 2) for s in result["seconds"]],
            "rows_per_s": round(result["rows"] / warm, 1), "rows_per_s_first_run": round(result["rows"] / cold, 1)}


def run(settings) -> dict:
    from course_utils.cluster import start_cluster, stop_cluster
    from course_utils.config import load_settings
    from course_utils.ports import free_port
    from course_utils.services import ensure_tracking_server, stop

    profile = os.environ.get("COURSE_PROFILE") or ("full" if (settings.datasets / "generated" / "full").is_dir() else "ci")
    result: dict = {"profile": profile, "repeats": REPEATS, "cpus": os.cpu_count(),
                    "worker": "1 core, 1 GiB each; executors with the course's JVM options"}
    if profile != "full":
        result["why_not_full"] = ("datasets/generated/full is missing; `.venv/bin/course datasets generate --profile full` "
                                  "generates it offline")
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as folder:
        workspace = Path(folder) / "workspace"
        env = {**os.environ, "COURSE_WORKSPACE": str(workspace), "COURSE_PROFILE": profile, "COURSE_MLFLOW_PORT": str(free_port())}
        env.pop("MLFLOW_TRACKING_URI", None)
        env.pop("COURSE_SPARK_MASTER", None)
        bench_settings = load_settings(env)
        try:
            ensure_tracking_server(bench_settings)
            env["MLFLOW_TRACKING_URI"] = bench_settings.tracking_uri
            result["local[2]"] = _score("local[2]", env)  # also builds the feature table and the champion
            for workers in (1, 2):
                state = start_cluster(bench_settings, workers=workers)
                started = time.perf_counter()
                result[f"cluster_{workers}_worker{'s' if workers > 1 else ''}"] = _score(state.master_url, env)
                result[f"cluster_{workers}_worker{'s' if workers > 1 else ''}"]["driver_seconds"] = round(time.perf_counter() - started, 1)
        finally:
            stop_cluster(bench_settings)
            stop("mlflow", bench_settings)
    local = result["local[2]"]["rows_per_s"]
    for key in ("cluster_1_worker", "cluster_2_workers"):
        result[key]["vs_local"] = round(result[key]["rows_per_s"] / local, 2)
    return result
