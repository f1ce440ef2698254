"""Serving latency and throughput of `mlflow models serve`, against in-process predict; batch scoring rows/s.

Two models trained on the course data (ci profile features, computed with pandas): the
course's churn pipeline (one-hot + 50-tree random forest, as registered by
``require_champion``) and a linear model (one-hot + logistic regression). Each is saved to a
temporary folder, served on 127.0.0.1 with ``--env-manager local``, and timed from one client
with single-row and 100-row requests; the same rows go through ``model.predict`` in-process.
The forest is also converted to ONNX (what 03d teaches) and timed with onnxruntime, and
scored as a Spark UDF over a Spark DataFrame (batch rows/s).

Numbers are written to ``build/bench.json``; nothing is asserted.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

SINGLE_REQUESTS = 300
BATCH_ROWS = 100
BATCH_REQUESTS = 50
SPARK_ROWS = 20_000


def _training_data(settings):
    """Features and churn labels of the ci profile's reference window, computed with pandas."""
    import pandas as pd

    from course_utils.datasets import dataset_paths, ensure_datasets, snapshot_features
    from course_utils.models import LABEL, feature_frame, reference_window

    paths = dataset_paths(ensure_datasets(replace(settings, profile="ci")))
    events = pd.concat(pd.read_csv(p) for p in sorted(paths.events_dir.glob("*.csv")))
    customers = pd.read_csv(paths.customers)
    snapshots = pd.read_csv(paths.customer_months)
    start, end = reference_window()
    snapshots = snapshots[(snapshots.snapshot_date >= start) & (snapshots.snapshot_date <= end)].reset_index(drop=True)
    features = snapshot_features(events, customers, snapshots)
    return feature_frame(features), snapshots[LABEL].to_numpy()


def _linear_pipeline():
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from course_utils.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES

    encode = ColumnTransformer(
        [
            ("categorical", OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL_FEATURES)),
            ("numeric", StandardScaler(), list(NUMERIC_FEATURES)),
        ]
    )
    return Pipeline([("encode", encode), ("model", LogisticRegression(max_iter=1000, class_weight="balanced"))])


def _serve_and_measure(model_path: Path, name: str, inputs, settings) -> dict:
    """Start a server for the saved model, time single rows and batches, compare with in-process predict."""
    import mlflow

    from course_utils.serving import measure_in_process, measure_rest, start_model_server, stop_model_server

    model = mlflow.pyfunc.load_model(str(model_path))
    single, batch = inputs.head(1), inputs.head(BATCH_ROWS)
    started = time.perf_counter()
    server = start_model_server(str(model_path), settings, name=f"bench-{name}")
    start_seconds = time.perf_counter() - started
    try:
        served_single, _ = measure_rest(server.url, single, n=SINGLE_REQUESTS, warmup=10)
        served_batch, _ = measure_rest(server.url, batch, n=BATCH_REQUESTS, warmup=3)
    finally:
        stop_model_server(server, settings)
    local_single, _ = measure_in_process(model.predict, single, n=SINGLE_REQUESTS, warmup=10)
    local_batch, _ = measure_in_process(model.predict, batch, n=BATCH_REQUESTS, warmup=3)

    def summary(stats) -> dict:
        return {"p50_ms": stats.p50_ms, "p95_ms": stats.p95_ms, "p99_ms": stats.p99_ms,
                "requests_per_s": stats.calls_per_s, "rows_per_s": stats.rows_per_s}

    return {
        "server_start_seconds": round(start_seconds, 2),
        "served_single_row": summary(served_single),
        f"served_batch_{BATCH_ROWS}": summary(served_batch),
        "in_process_single_row": summary(local_single),
        f"in_process_batch_{BATCH_ROWS}": summary(local_batch),
        "served_to_in_process_p50_single_row": round(served_single.p50_ms / local_single.p50_ms, 2),
        f"served_to_in_process_p50_batch_{BATCH_ROWS}": round(served_batch.p50_ms / local_batch.p50_ms, 2),
    }


def _onnx_single_row(pipeline, inputs) -> dict:
    """The forest as ONNX in onnxruntime: single-row and 100-row latency (the 03d conversion)."""
    import numpy as np
    import onnxruntime as ort
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    from course_utils.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES
    from course_utils.serving import measure_in_process

    types = [(c, FloatTensorType([None, 1])) for c in NUMERIC_FEATURES] + [(c, StringTensorType([None, 1])) for c in CATEGORICAL_FEATURES]
    onnx_model = convert_sklearn(pipeline, initial_types=types, options={id(pipeline.steps[-1][1]): {"zipmap": False}})
    session = ort.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])

    def predict(frame):
        feeds = {c: frame[c].to_numpy(np.float32).reshape(-1, 1) for c in NUMERIC_FEATURES}
        feeds.update({c: frame[c].to_numpy(object).reshape(-1, 1) for c in CATEGORICAL_FEATURES})
        return session.run(None, feeds)

    single, _ = measure_in_process(predict, inputs.head(1), n=SINGLE_REQUESTS, warmup=10)
    batch, _ = measure_in_process(predict, inputs.head(BATCH_ROWS), n=BATCH_REQUESTS, warmup=3)
    return {"single_row_p50_ms": single.p50_ms, "single_row_p99_ms": single.p99_ms, f"batch_{BATCH_ROWS}_rows_per_s": batch.rows_per_s}


def _batch_scoring(model_path: Path, inputs, settings) -> dict:
    """Rows/s of mlflow.pyfunc.spark_udf over a Spark DataFrame (noop sink) vs in-process predict."""
    import mlflow
    from pyspark.sql import functions as F

    from course_utils.spark import get_spark

    os.environ["PYSPARK_PYTHON"] = sys.executable  # the UDF's Python workers need this environment
    repeats = -(-SPARK_ROWS // len(inputs))
    rows = inputs.loc[inputs.index.repeat(repeats)].head(SPARK_ROWS).reset_index(drop=True)
    spark = get_spark("bench-serving", settings)
    try:
        frame = spark.createDataFrame(rows).cache()
        frame.count()
        udf = mlflow.pyfunc.spark_udf(spark, str(model_path), result_type="double", env_manager="local")
        scored = frame.select(udf(F.struct(*rows.columns)).alias("prediction"))
        scored.limit(10).collect()  # warm-up: starts the Python workers and loads the model
        started = time.perf_counter()
        scored.write.format("noop").mode("overwrite").save()
        spark_seconds = time.perf_counter() - started
    finally:
        spark.stop()
    model = mlflow.pyfunc.load_model(str(model_path))
    started = time.perf_counter()
    model.predict(rows)
    local_seconds = time.perf_counter() - started
    return {
        "rows": len(rows),
        "spark_udf_rows_per_s": round(len(rows) / spark_seconds, 1),
        "in_process_rows_per_s": round(len(rows) / local_seconds, 1),
        "spark_master": settings.spark_master,
    }


def run(settings) -> dict:
    import mlflow

    from course_utils.models import TRUSTED_TREE_TYPES, churn_pipeline  # the pipeline require_champion registers

    inputs, labels = _training_data(settings)
    forest = churn_pipeline(seed=42).fit(inputs, labels)
    linear = _linear_pipeline().fit(inputs, labels)
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as folder:
        run_settings = replace(settings, workspace=Path(folder) / "workspace")  # pid files and logs stay in the temp folder
        paths = {}
        for name, pipeline in (("forest", forest), ("linear", linear)):
            paths[name] = Path(folder) / name
            mlflow.sklearn.save_model(
                pipeline, str(paths[name]), signature=mlflow.models.infer_signature(inputs.head(5), pipeline.predict(inputs.head(5))),
                skops_trusted_types=TRUSTED_TREE_TYPES,
            )
        result = {
            "rows_trained": len(inputs),
            "random_forest_50_trees": _serve_and_measure(paths["forest"], "forest", inputs, run_settings),
            "logistic_regression": _serve_and_measure(paths["linear"], "linear", inputs, run_settings),
            "onnx_random_forest_in_process": _onnx_single_row(forest, inputs),
            "batch_scoring_random_forest": _batch_scoring(paths["forest"], inputs, run_settings),
        }
    return result
