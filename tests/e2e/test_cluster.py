"""The course on a real Spark standalone cluster (master + 2 workers on 127.0.0.1, `course cluster up`).

One cluster for the whole file. A named subset of lessons' code paths runs twice, in two fresh
driver processes: once with ``COURSE_SPARK_MASTER=local[2]`` and once with the cluster's
``spark://`` URL, and the values are compared with each other (none is typed in here):

- 01a_delta_lake: raw CSV to a bronze Delta table, a re-delivery appended, typed and deduplicated
  silver, DELETE, time travel by version, RESTORE, MERGE of a change feed (counts and metrics);
- 03a_batch: the customer feature table built by ``require_customer_features``, the registered
  champion (``require_champion``) scored with ``mlflow.pyfunc.spark_udf`` into a date-partitioned
  Delta table, one date re-scored with ``replaceWhere`` (every stored prediction compared).

The cluster's driver process then runs Hyperopt's ``SparkTrials`` as 01d does, and a job during
which one worker (its JVM and its executor) is killed with SIGKILL. What ran where is read from
Spark's own REST API (the driver's ``/api/v1`` and the workers' ``/json``).

The whole notebooks on the cluster are a benchmark (``benchmarks/bench_cluster.py``), not this test:
it runs in CI next to the notebook tests and must stay within a few minutes.

Run as a script (``python tests/e2e/test_cluster.py <workload> <out.json> [args]``) it is the
driver program of one of those runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

WORKERS = 2
SCORING_DATES = ["2025-09-30", "2025-10-31", "2025-11-30", "2025-12-31"]  # 03a's month-end snapshots


# --- driver programs (run in a fresh Python process each) ---------------------------------------


def lessons_workload() -> dict:
    """01a's Delta code paths and 03a's batch scoring path, through course_utils; returns their values."""
    import mlflow
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from course_utils import start_lesson
    from course_utils.delta_files import table_files
    from course_utils.features import ENTITY_KEY, NUMERIC_FEATURES, TIMESTAMP_COLUMN, require_customer_features
    from course_utils.models import FEATURES, require_champion

    values: dict = {"_phases": {}}
    clock = time.monotonic()
    lesson = start_lesson("01a_delta_lake", reset=True, seed=42, profile="ci")
    spark, data = lesson.spark, lesson.datasets
    values["master"] = spark.sparkContext.master
    values["_phases"]["spark start"] = round(time.monotonic() - clock, 1)
    bronze, silver, customers = (lesson.delta_path(t) for t in ("bronze_events", "silver_events", "silver_customers"))
    event_columns = ["event_date", "customer_id", "sessions", "minutes_watched", "support_tickets", "payment_failed", "event_ts"]
    schema = T.StructType([T.StructField(c, T.StringType()) for c in event_columns])
    # The first quarter's daily files (01a lands the whole year; a quarter keeps this test's time down).
    raw = spark.read.csv(str(data.events_dir / "2025-0[1-3]-*.csv"), header=True, schema=schema) \
        .withColumn("_source_file", F.col("_metadata.file_name"))
    raw.write.format("delta").save(bronze)
    spark.read.csv(str(data.events_dir / "2025-03-0[1-7].csv"), header=True, schema=schema) \
        .withColumn("_source_file", F.col("_metadata.file_name")).write.format("delta").mode("append").save(bronze)
    values["bronze_rows"] = spark.read.format("delta").load(bronze).count()
    values["bronze_versions"] = DeltaTable.forPath(spark, bronze).history().count()
    types = {"event_date": "date", "customer_id": "bigint", "sessions": "int", "minutes_watched": "double",
             "support_tickets": "int", "payment_failed": "boolean", "event_ts": "timestamp"}
    typed = spark.read.format("delta").load(bronze).select([F.col(c).cast(k).alias(c) for c, k in types.items()])
    typed.where("sessions >= 1 AND minutes_watched >= 0").dropDuplicates(["customer_id", "event_date"]) \
        .write.format("delta").save(silver)
    values["silver_rows"] = spark.read.format("delta").load(silver).count()
    spark.sql(f"DELETE FROM delta.`{silver}` WHERE event_date >= DATE'2025-03-15'")
    values["rows_after_delete"] = spark.read.format("delta").load(silver).count()
    values["rows_version_0"] = spark.read.format("delta").option("versionAsOf", 0).load(silver).count()
    values["minutes_version_0"] = round(spark.read.format("delta").option("versionAsOf", 0).load(silver)
                                        .agg(F.sum("minutes_watched")).first()[0], 3)
    spark.sql(f"RESTORE TABLE delta.`{silver}` TO VERSION AS OF 0")
    values["rows_after_restore"] = spark.read.format("delta").load(silver).count()
    values["restored_same_files"] = table_files(silver) == table_files(silver, version=0)
    customer_types = {"customer_id": "bigint", "signup_date": "date", "country": "string", "plan": "string",
                      "age": "int", "acquisition_channel": "string", "monthly_fee": "double"}
    all_customers = spark.read.csv(str(data.customers), header=True).select(
        [F.col(c).cast(k).alias(c) for c, k in customer_types.items()])
    all_customers.where("signup_date < DATE'2025-10-01'").write.format("delta").save(customers)
    order = F.xxhash64("customer_id", F.lit(42))
    current = spark.read.format("delta").load(customers)
    upgrades = current.where("plan = 'basic'").orderBy(order).limit(25).withColumn("plan", F.lit("standard"))
    change_feed = upgrades.unionByName(all_customers.where("signup_date >= DATE'2025-10-01'"))
    DeltaTable.forPath(spark, customers).alias("t").merge(change_feed.alias("c"), "t.customer_id = c.customer_id") \
        .whenMatchedUpdate(condition="t.plan <> c.plan", set={"plan": "c.plan"}).whenNotMatchedInsertAll().execute()
    metrics = DeltaTable.forPath(spark, customers).history(1).first().operationMetrics
    values["merge"] = {k: int(metrics[k]) for k in ("numSourceRows", "numTargetRowsUpdated", "numTargetRowsInserted")}
    values["customer_rows"] = spark.read.format("delta").load(customers).count()

    values["_phases"]["01a"] = round(time.monotonic() - clock, 1)
    lesson = start_lesson("03a_batch", reset=True, seed=42, profile="ci")
    features_path = require_customer_features(lesson)
    values["_phases"]["features"] = round(time.monotonic() - clock, 1)
    champion_uri = require_champion(lesson)
    values["_phases"]["champion"] = round(time.monotonic() - clock, 1)
    mlflow.set_tracking_uri(lesson.tracking_uri)
    to_score = spark.read.format("delta").load(features_path).where(F.col(TIMESTAMP_COLUMN).isin(SCORING_DATES))
    values["features_digest"] = spark.read.format("delta").load(features_path) \
        .select(F.bit_xor(F.xxhash64(*spark.read.format("delta").load(features_path).columns))).first()[0]
    churn_udf = mlflow.pyfunc.spark_udf(spark, champion_uri, result_type="double", env_manager="local")
    inputs = [F.col(c).cast("double").alias(c) if c in NUMERIC_FEATURES else F.col(c) for c in FEATURES]
    predictions = to_score.select(ENTITY_KEY, F.col(TIMESTAMP_COLUMN).alias("scoring_date"),
                                  churn_udf(F.struct(*inputs)).cast("int").alias("churn_prediction"))
    predictions_path = lesson.delta_path("churn_predictions")
    predictions.repartition(8).write.format("delta").mode("overwrite").partitionBy("scoring_date").save(predictions_path)
    predictions.where(F.col("scoring_date") == SCORING_DATES[-1]).write.format("delta").mode("overwrite") \
        .option("replaceWhere", f"scoring_date = '{SCORING_DATES[-1]}'").save(predictions_path)
    stored = spark.read.format("delta").load(predictions_path).orderBy("scoring_date", ENTITY_KEY).toPandas()
    values["predictions_rows"] = len(stored)
    values["predictions_versions"] = DeltaTable.forPath(spark, predictions_path).history().count()
    values["predictions"] = [[str(d), int(c), int(p)] for d, c, p in stored[["scoring_date", ENTITY_KEY, "churn_prediction"]].itertuples(index=False)]
    values["executors"] = _executors(spark)
    values["_phases"]["03a"] = round(time.monotonic() - clock, 1)
    lesson.stop()
    return values


def _rest(spark, path: str):
    import requests

    app = spark.sparkContext.applicationId
    session = requests.Session()
    session.trust_env = False
    response = session.get(f"{spark.sparkContext.uiWebUrl}/api/v1/applications/{app}/{path}", timeout=30)
    response.raise_for_status()
    return response.json()


def _executors(spark) -> list[dict]:
    """Every executor the application had, from the driver's REST API (id, host:port, tasks, active)."""
    return [{"id": e["id"], "hostPort": e["hostPort"], "totalTasks": e["totalTasks"], "isActive": e["isActive"]}
            for e in _rest(spark, "allexecutors")]


def _wait_for_executors(spark, count: int, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sum(1 for e in _executors(spark) if e["id"] != "driver" and e["isActive"]) >= count:
            return
        time.sleep(0.5)
    raise AssertionError(f"fewer than {count} executors registered within {timeout_s} s")


def _tasks_of_jobs(spark, jobs: list[dict]) -> list[dict]:
    tasks = []
    for job in jobs:
        for stage_id in job["stageIds"]:
            for attempt in _rest(spark, f"stages/{stage_id}"):
                for task in _rest(spark, f"stages/{stage_id}/{attempt['attemptId']}/taskList?length=1000"):
                    tasks.append({"job": job["jobId"], "stage": stage_id, "index": task["index"], "executorId": task["executorId"],
                                  "status": task["status"], "errorMessage": (task.get("errorMessage") or "")[:300]})
    return tasks


def _worker_executors(ui_url: str, app_id: str) -> list[str]:
    """Ids of the application's executors a worker runs, from the worker's own status page."""
    import requests

    session = requests.Session()
    session.trust_env = False
    executors = session.get(f"{ui_url}/json/", timeout=30).json()["executors"]
    return sorted(str(e["id"]) for e in executors if e["appid"] == app_id)  # the driver's REST API names them as strings


def cluster_workload(victim_pgid: int, victim_ui: str, master_ui: str) -> dict:
    """On the cluster: SparkTrials as 01d runs it, then a job during which one worker is SIGKILLed."""
    import signal
    import threading

    import numpy as np
    from hyperopt import STATUS_OK, SparkTrials, fmin, hp, tpe
    from sklearn.metrics import roc_auc_score

    from course_utils import start_lesson
    from course_utils.experiments import logistic_churn_pipeline
    from course_utils.features import training_frame
    from course_utils.models import LABEL, feature_frame, reference_window

    results: dict = {}
    lesson = start_lesson("01d_autologging_and_tuning", reset=True, seed=42, profile="ci")
    spark = lesson.spark
    _wait_for_executors(spark, WORKERS)
    from course_utils.cluster import master_state

    app_id = spark.sparkContext.applicationId
    results["worker_executors"] = {w["id"]: _worker_executors(w["webuiaddress"], app_id)
                                   for w in master_state(master_ui)["workers"] if w["state"] == "ALIVE"}
    results["victim_executors"] = _worker_executors(victim_ui, app_id)
    frame = training_frame(lesson, *reference_window())
    is_validation = frame["snapshot_date"] >= __import__("pandas").Timestamp("2025-05-01").date()
    X_train, y_train = feature_frame(frame[~is_validation]), frame[~is_validation][LABEL]
    X_val, y_val = feature_frame(frame[is_validation]), frame[is_validation][LABEL]

    def objective(config: dict) -> dict:
        import os as worker_os

        pipeline = logistic_churn_pipeline(config["C"]).fit(X_train, y_train)
        return {"loss": -roc_auc_score(y_val, pipeline.predict_proba(X_val)[:, 1]), "status": STATUS_OK,
                "worker_pid": worker_os.getpid()}

    trials = SparkTrials(parallelism=2, spark_session=spark)
    fmin(objective, {"C": hp.loguniform("C", np.log(1e-3), np.log(10.0))}, algo=tpe.suggest, max_evals=4,
         trials=trials, rstate=np.random.default_rng(42), show_progressbar=False)
    jobs = [job for job in _rest(spark, "jobs") if str(job.get("jobGroup", "")).startswith("Hyperopt_SparkTrials")]
    results["trials"] = {"statuses": [t["result"].get("status") for t in trials.trials], "losses": trials.losses(),
                         "driver_pid": os.getpid(), "worker_pids": [t["result"].get("worker_pid") for t in trials.trials],
                         "jobs": len(jobs), "tasks": _tasks_of_jobs(spark, jobs)}

    # A job of 8 two-second tasks; once both executors run one, the second worker (JVM + executor) is killed.
    outcome: dict = {}

    def job() -> None:
        spark.sparkContext.setJobGroup("worker-killed", "a worker is killed mid-job")
        try:
            outcome["sum"] = spark.sparkContext.parallelize(range(8), 8).map(lambda x: (time.sleep(2), x * x)[1]).sum()
        except Exception as error:  # noqa: BLE001 - reported to the test
            outcome["error"] = repr(error)[:500]

    thread = threading.Thread(target=job)
    thread.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        running = [s for s in _rest(spark, "stages?status=active")]
        if running and sum(s.get("numActiveTasks", 0) for s in running) >= 2:
            break
        time.sleep(0.2)
    os.killpg(victim_pgid, signal.SIGKILL)
    results["killed_at"] = time.time()
    thread.join(300)
    results["kill_job"] = outcome
    kill_jobs = [j for j in _rest(spark, "jobs") if j.get("jobGroup") == "worker-killed"]
    results["kill_job_status"] = [j["status"] for j in kill_jobs]
    results["kill_tasks"] = _tasks_of_jobs(spark, kill_jobs)
    results["executors"] = _executors(spark)
    lesson.stop()
    return results


# --- the tests -----------------------------------------------------------------------------------


def _run_driver(workload: str, out: Path, env: dict[str, str], *args: str, timeout: float = 600) -> dict:
    started = time.monotonic()
    result = subprocess.run([sys.executable, __file__, workload, str(out), *args], env=env, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, f"{workload} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    values = json.loads(out.read_text())
    values["_seconds"] = round(time.monotonic() - started, 1)
    return values


@pytest.fixture(scope="module")
def cluster(course_settings):
    """The cluster (`course cluster up`), the tracking server, and both runs of the lessons' code paths."""
    from course_utils.cluster import cluster_status, start_cluster, stop_cluster
    from course_utils.services import ensure_tracking_server

    tracking_uri = ensure_tracking_server(course_settings)
    base = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    base.pop("COURSE_SPARK_MASTER", None)
    base.pop("COURSE_MLFLOW_PORT", None)  # the session's server is "a remote one" to the driver programs
    out = course_settings.workspace.parent / "cluster-test"
    out.mkdir(exist_ok=True)
    try:
        # The local run first (it registers the champion both runs score with); the cluster starts meanwhile.
        local_env = {**base, "COURSE_SPARK_MASTER": "local[2]", "COURSE_WORKSPACE": str(out / "ws-local")}
        local = subprocess.Popen([sys.executable, __file__, "lessons", str(out / "local.json")], env=local_env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        started = time.monotonic()
        state = start_cluster(course_settings, workers=WORKERS)
        cluster_start_s = round(time.monotonic() - started, 1)
        local_output = local.communicate(timeout=600)[0]
        assert local.returncode == 0, local_output[-4000:]
        local_values = json.loads((out / "local.json").read_text())
        cluster_env = {**base, "COURSE_SPARK_MASTER": state.master_url, "COURSE_WORKSPACE": str(out / "ws-cluster")}
        cluster_values = _run_driver("lessons", out / "cluster.json", cluster_env)
        yield {"state": state, "settings": course_settings, "env": cluster_env, "out": out, "local": local_values,
               "cluster": cluster_values, "cluster_start_s": cluster_start_s}
    finally:
        stop_cluster(course_settings)
        assert not cluster_status(course_settings).running


@pytest.mark.slow
def test_cluster_is_up_on_loopback_with_its_files_in_the_workspace(cluster) -> None:
    from course_utils.cluster import MASTER, cluster_dir, master_state
    from course_utils.services import listener_on, status

    state, settings = cluster["state"], cluster["settings"]
    master = master_state(state.ui_url)
    assert [w["state"] for w in master["workers"]] == ["ALIVE"] * WORKERS
    assert all(w["cores"] == 1 and w["memory"] == 1024 for w in master["workers"])
    assert status(MASTER, settings).running and state.master_url == f"spark://127.0.0.1:{status(MASTER, settings).port}"
    for port in [status(MASTER, settings).port, int(state.ui_url.rsplit(":", 1)[1])]:
        listener = listener_on(port)
        assert listener is not None
        addresses = {c.laddr.ip for c in listener.net_connections("tcp") if c.status == "LISTEN"}
        assert addresses <= {"127.0.0.1", "::ffff:127.0.0.1"}, addresses
    spark_home_work = Path(__import__("pyspark").__file__).parent / "work"
    assert not spark_home_work.exists(), "nothing written into site-packages"
    assert any((cluster_dir(settings) / "work-1").iterdir()), "executors ran in the workspace's work folder"


@pytest.mark.slow
def test_lessons_give_the_same_values_on_the_cluster_as_on_local(cluster) -> None:
    local, on_cluster = cluster["local"], cluster["cluster"]
    assert local["master"] == "local[2]" and on_cluster["master"] == cluster["state"].master_url
    cluster_executors = [e for e in on_cluster["executors"] if e["id"] != "driver"]
    assert len(cluster_executors) == WORKERS and all(e["totalTasks"] > 0 for e in cluster_executors), on_cluster["executors"]
    driver = next(e for e in on_cluster["executors"] if e["id"] == "driver")
    assert driver["totalTasks"] == 0, "in cluster mode every task ran on an executor"
    compared = [k for k in local if k not in ("master", "executors") and not k.startswith("_")]
    assert {k: on_cluster[k] for k in compared} == {k: local[k] for k in compared}
    # The values are meaningful, not two empty results.
    assert local["rows_after_restore"] == local["silver_rows"] > local["rows_after_delete"] > 0
    assert local["merge"]["numTargetRowsUpdated"] == 25 and local["predictions_rows"] > 1000


@pytest.mark.slow
def test_sparktrials_and_a_killed_worker(cluster) -> None:
    """SparkTrials' trials run on the workers' executors; after SIGKILL of a worker mid-job the job still finishes."""
    from course_utils.cluster import worker_name
    from course_utils.services import _read_record, status

    settings = cluster["settings"]
    victim = _read_record(settings, worker_name(WORKERS))
    values = _run_driver("cluster", cluster["out"] / "cluster-jobs.json", cluster["env"], str(victim["pgid"]),
                         status(worker_name(WORKERS), settings).url, cluster["state"].ui_url)
    cluster["jobs_seconds"] = values["_seconds"]

    trials = values["trials"]
    on_workers = {executor for executors in values["worker_executors"].values() for executor in executors}
    victim_executors = set(values["victim_executors"])
    assert len(values["worker_executors"]) == WORKERS and all(values["worker_executors"].values()), values["worker_executors"]
    assert trials["statuses"] == ["ok"] * 4 and len(trials["tasks"]) >= 4
    assert all(t["status"] == "SUCCESS" for t in trials["tasks"])
    assert {t["executorId"] for t in trials["tasks"]} <= on_workers, (trials["tasks"], values["worker_executors"])
    assert trials["driver_pid"] not in trials["worker_pids"], "the objective ran outside the driver"

    # The killed worker: its executor's tasks failed, were retried on the surviving one, and the job finished.
    assert values["kill_job"] == {"sum": sum(x * x for x in range(8))}, values["kill_job"]
    assert values["kill_job_status"] == ["SUCCEEDED"]
    tasks = values["kill_tasks"]
    lost = [t for t in tasks if t["status"] != "SUCCESS"]
    succeeded = {t["index"]: t["executorId"] for t in tasks if t["status"] == "SUCCESS"}
    assert sorted(succeeded) == list(range(8))
    assert all(succeeded[t["index"]] not in victim_executors for t in lost), "retried on the surviving worker"
    assert lost and {t["executorId"] for t in lost} <= victim_executors, lost
    assert all("ExecutorLostFailure" in t["errorMessage"] for t in lost), lost
    dead = {e["id"] for e in values["executors"] if not e["isActive"]}
    assert victim_executors & dead, values["executors"]
    assert not psutil_alive(victim["pid"])


def psutil_alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


if __name__ == "__main__":
    workload, out_path, *rest = sys.argv[1:]
    produced = lessons_workload() if workload == "lessons" else cluster_workload(int(rest[0]), rest[1], rest[2])
    Path(out_path).write_text(json.dumps(produced, default=str))
