"""The pipeline's steps: small functions, each one MLflow run keyed by its inputs (see ``context.run_step``).

=================  ==========================================================================
step               what it does (inputs in its key)
=================  ==========================================================================
``ingest``         a day's raw file (sha256) -> validated against the batch contract ->
                   appended to ``bronze``, or written to ``quarantine`` with its reason
``featurise``      ``bronze`` version -> model inputs in ``gold`` (Delta) -> exported and
                   registered in Feast (feature service :data:`FEATURE_SERVICE`)
``train``          ``gold`` version (+ the drift alert that triggered it) -> a tuned model,
                   training data fetched through the feature service
``register``       the training run -> a registered version with alias ``challenger``
``validate``       version vs the champion on the day's held-out rows (``registry.validate_model_version``)
``promote``        alias ``champion`` moved to the version if validation passed, else kept
``score_batch``    ``gold`` day + champion -> ``predictions`` (Delta)
``score_stream``   ``gold`` as a Structured Streaming source (availableNow) -> ``stream_predictions``
``monitor``        the day's inputs vs the champion's training data (``monitoring.drift_report``)
``score_rest``     the day's rows through the module 04 router to ``mlflow models serve``
=================  ==========================================================================

Delta tables are written by Spark; reads that need no Spark (versions, small frames) use
delta-rs. Every write of a day replaces that day's partition (``replaceWhere``), so a step
re-run after a crash rewrites its day instead of appending it twice.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from course_utils.pipeline.context import PipelineContext, StepRecord, run_step
from course_utils.pipeline.data import (
    HOLDOUT_MODULUS,
    INPUTS,
    LABEL,
    RAW_SCHEMA,
    file_digest,
    header_of,
    validate_batch,
)

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger("course_utils.pipeline")

FEAST_PROJECT = "pipeline"
FEATURE_VIEW = "pipeline_customer_inputs"
FEATURE_SERVICE = "pipeline_churn_v1"
CHAMPION, CHALLENGER = "champion", "challenger"
C_GRID = (0.01, 0.1, 1.0)
F1_TOLERANCE = 0.0  # a challenger must be at least as good as the champion on the same rows
# A column drifts when both a significance test and a distance say so (lesson 04a: p-values alone
# flag tiny shifts on large samples).
MONITOR_TESTS = {**{c: ["ks", "wasserstein"] for c in INPUTS if c != "plan"}, "plan": ["chi2_contingency", "psi"]}
NO_MODEL = "none"
SKOPS_TRUSTED = ["numpy.dtype"]


# --- Delta helpers -----------------------------------------------------------------------------


def delta_version(path: str) -> int:
    """Latest version of a Delta table, -1 when there is none yet (delta-rs: no Spark needed)."""
    from pathlib import Path

    from deltalake import DeltaTable

    if not (Path(path) / "_delta_log").is_dir():
        return -1
    return int(DeltaTable(path).version())


def read_delta(path: str, version: int | None = None, day: int | None = None, up_to_day: int | None = None) -> pd.DataFrame:
    """A (small) Delta table as pandas at ``version``, optionally one day or days up to one."""
    from deltalake import DeltaTable

    filters = [("day", "=", day)] if day is not None else [("day", "<=", up_to_day)] if up_to_day is not None else None
    frame = DeltaTable(path, version=version).to_pandas(filters=filters)
    return frame.sort_values([c for c in ("day", "customer_id") if c in frame]).reset_index(drop=True)


def _write_day(frame: Any, path: str, day: int) -> int:
    """Replace day ``day`` of the Delta table at ``path`` with a Spark DataFrame; returns the new version."""
    (frame.write.format("delta").mode("overwrite").option("replaceWhere", f"day = {day}")
     .partitionBy("day").save(path))
    return delta_version(path)


# --- 1-2: ingest and validate --------------------------------------------------------------------


def ingest(context: PipelineContext, day: int, raw_file: Any) -> StepRecord:
    """Validate a day's raw file against the batch contract; load it to ``bronze`` or quarantine it."""
    inputs = {"raw_file": raw_file.name, "raw_sha256": file_digest(raw_file)}

    def body(run_id: str) -> dict[str, Any]:
        import mlflow
        from pyspark.sql import functions as F

        spark = context.spark
        header = header_of(raw_file)
        raw = (spark.read.option("header", True).option("mode", "PERMISSIVE")
               .option("columnNameOfCorruptRecord", "_corrupt_record")
               .schema(RAW_SCHEMA + ", _corrupt_record STRING").csv(str(raw_file)))
        frame = raw.toPandas()
        corrupt = int(frame["_corrupt_record"].notna().sum())
        verdict = validate_batch(header, frame.drop(columns=["_corrupt_record"]), corrupt)
        mlflow.log_metric("rows", verdict.rows)
        if verdict.ok:
            bronze = (raw.drop("_corrupt_record").withColumn("source_file", F.lit(raw_file.name))
                      .withColumn("day", F.lit(day)))
            version = _write_day(bronze, context.table("bronze"), day)
            return {"status": "loaded", "rows": verdict.rows, "bronze_version": version}
        quarantine = spark.createDataFrame(
            [(day, raw_file.name, inputs["raw_sha256"], verdict.reason, verdict.rows)],
            "day INT, source_file STRING, sha256 STRING, reason STRING, rows INT")
        version = _write_day(quarantine, context.table("quarantine"), day)
        mlflow.log_artifact(str(raw_file), artifact_path="quarantined")
        logger.warning("quarantined: day %d (%s): %s; not loaded, the run continues with the next day",
                       day, raw_file.name, verdict.reason)
        return {"status": "quarantined", "reason": verdict.reason[:4000], "rows": verdict.rows,
                "quarantine_version": version}

    return run_step(context, "ingest", day, inputs, {"contract": "v1"}, body)


# --- 3: featurise ------------------------------------------------------------------------------


def featurise(context: PipelineContext, day: int, bronze_version: int) -> StepRecord:
    """Bronze day -> gold model inputs (Delta) -> a Feast source and feature service over that gold version."""
    params = {"holdout_modulus": HOLDOUT_MODULUS, "feature_service": FEATURE_SERVICE}

    def body(run_id: str) -> dict[str, Any]:
        from pyspark.sql import functions as F

        bronze = (context.spark.read.format("delta").option("versionAsOf", bronze_version)
                  .load(context.table("bronze")).where(F.col("day") == day))
        gold = bronze.select(
            "customer_id", "day",
            F.to_timestamp("event_date").alias("event_timestamp"),
            *INPUTS, F.col(LABEL).cast("int").alias(LABEL),
            ((F.col("customer_id") % HOLDOUT_MODULUS) == 0).alias("holdout"),
        )
        version = _write_day(gold, context.table("gold"), day)
        source = register_features(context, version)
        return {"gold_version": version, "feature_service": FEATURE_SERVICE, "feast_source": source}

    return run_step(context, "featurise", day, {"bronze": bronze_version}, params, body)


def register_features(context: PipelineContext, gold_version: int) -> str:
    """Export ``gold`` at ``gold_version`` to Parquet and apply the Feast definitions over it."""
    from datetime import timedelta

    from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64, String

    from course_utils.feature_store import open_feature_store, write_feature_store_yaml

    repo = context.feature_repo
    export = repo / "data" / f"gold_v{gold_version}.parquet"
    export.parent.mkdir(parents=True, exist_ok=True)
    frame = read_delta(context.table("gold"), gold_version)
    frame["event_timestamp"] = frame["event_timestamp"].dt.tz_localize("UTC") if frame["event_timestamp"].dt.tz is None else frame["event_timestamp"]
    frame.to_parquet(export, index=False)
    write_feature_store_yaml(repo, FEAST_PROJECT)
    store = open_feature_store(repo, FEAST_PROJECT)
    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
    source = FileSource(name="pipeline_gold", path=str(export), timestamp_field="event_timestamp",
                        tags={"delta_path": context.table("gold"), "delta_version": str(gold_version)})
    view = FeatureView(
        name=FEATURE_VIEW, entities=[customer], ttl=timedelta(days=1), source=source,
        schema=[*(Field(name=c, dtype=Float64) for c in INPUTS if c != "plan"), Field(name="plan", dtype=String)],
        tags={"delta_version": str(gold_version)})
    service = FeatureService(name=FEATURE_SERVICE, features=[view],
                             description="The churn model's inputs, from the pipeline's gold table.")
    store.apply([customer, source, view, service])
    return str(export)


def training_features(context: PipelineContext, entities: pd.DataFrame) -> pd.DataFrame:
    """The feature service's values for ``entities`` (customer_id, event_timestamp), point in time."""
    from course_utils.feature_store import open_feature_store

    store = open_feature_store(context.feature_repo, FEAST_PROJECT)
    service = store.get_feature_service(FEATURE_SERVICE)
    return store.get_historical_features(entity_df=entities, features=service).to_df()


# --- 4: train with tuning ------------------------------------------------------------------------


def churn_model(c: float, seed: int) -> Any:
    """Impute, scale, one-hot, then a class-balanced logistic regression."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [c_ for c_ in INPUTS if c_ != "plan"]
    encode = ColumnTransformer([
        ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
        ("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
    ])
    return Pipeline([("encode", encode), ("model", LogisticRegression(C=c, class_weight="balanced",
                                                                       max_iter=500, random_state=seed))])


def train(context: PipelineContext, day: int, gold_version: int, alert: str = NO_MODEL,
          degraded: bool = False) -> StepRecord:
    """Tune C by 3-fold cross-validated AUC on every non-held-out gold row up to ``day``; log the best model."""
    params = {"train_days": f"1-{day}", "c_grid": ",".join(map(str, C_GRID)), "seed": context.seed,
              "triggered_by_alert": alert, "degraded": degraded}

    def body(run_id: str) -> dict[str, Any]:
        import mlflow
        import numpy as np
        from sklearn.model_selection import GridSearchCV

        from course_utils.experiments import code_version_tags, delta_dataset

        gold = read_delta(context.table("gold"), gold_version, up_to_day=day)
        rows = gold[~gold["holdout"]]
        entities = rows[["customer_id", "event_timestamp", LABEL]].copy()
        entities["event_timestamp"] = entities["event_timestamp"].dt.tz_localize("UTC") \
            if entities["event_timestamp"].dt.tz is None else entities["event_timestamp"]
        training = training_features(context, entities).sort_values("customer_id", ignore_index=True)
        inputs = model_inputs(training)
        labels = training[LABEL].to_numpy()
        if degraded:  # a deliberately bad challenger: trained on shuffled labels
            labels = np.random.default_rng(context.seed).permutation(labels)
        search = GridSearchCV(churn_model(1.0, context.seed), {"model__C": list(C_GRID)}, scoring="roc_auc", cv=3)
        search.fit(inputs, labels)
        for c, score in zip(C_GRID, search.cv_results_["mean_test_score"]):
            mlflow.log_metric(f"cv_auc_C_{c}", float(score))
        best_c = float(search.best_params_["model__C"])
        mlflow.log_params({"best_C": best_c, "rows": len(inputs)})
        mlflow.log_metric("cv_auc", float(search.best_score_))
        mlflow.set_tags({"feature_service": FEATURE_SERVICE, "gold_table": context.table("gold"),
                         "gold_version": str(gold_version), **code_version_tags(context.settings.root)})
        mlflow.log_input(delta_dataset(training, context.table("gold"), gold_version, name="gold", targets=LABEL),
                         context="training")
        info = log_model(search.best_estimator_, inputs)
        return {"model_uri": info.model_uri, "model_id": info.model_id, "best_C": best_c, "cv_auc": round(float(search.best_score_), 4)}

    return run_step(context, "train", day, {"gold": gold_version}, params, body)


def log_model(pipeline: Any, example: pd.DataFrame) -> Any:
    """Log the fitted pipeline with signature, example and pinned requirements (as ``models.log_churn_model``).

    skops must be told to trust ``numpy.dtype`` (the encoders keep their output dtype); the
    course created the file itself, and every other check stays on.
    """
    import mlflow
    from mlflow.models import infer_signature

    from course_utils.models import pinned_requirements

    import warnings

    # Inferred from complete rows: a day with missing values would otherwise mark columns optional,
    # and the challenger's signature would differ from the champion's.
    complete = example.dropna()
    with warnings.catch_warnings():  # "integer output column": the 0/1 class labels are never missing
        warnings.simplefilter("ignore", UserWarning)
        signature = infer_signature(complete, pipeline.predict(complete))
    return mlflow.sklearn.log_model(
        pipeline, name="model", signature=signature, input_example=example.head(5),
        pip_requirements=pinned_requirements(), skops_trusted_types=SKOPS_TRUSTED)


def model_inputs(frame: pd.DataFrame) -> pd.DataFrame:
    """The model's input columns, numerics as float64 (a stable signature)."""
    inputs = frame[list(INPUTS)].copy()
    for column in INPUTS:
        if column != "plan":
            inputs[column] = inputs[column].astype("float64")
    return inputs


# --- 5-7: register, validate, promote ----------------------------------------------------------


def register(context: PipelineContext, day: int, train_record: StepRecord) -> StepRecord:
    """Register the trained model (once per training run) and point alias ``challenger`` at it."""
    train_run = train_record.run_id

    def body(run_id: str) -> dict[str, Any]:
        from mlflow.exceptions import MlflowException

        from course_utils.tracking import LESSON_TAG

        client = context.client
        try:
            client.create_registered_model(context.model_name, tags={LESSON_TAG: context.name},
                                           description="Churn model trained by the module 05 pipeline.")
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        existing = client.search_model_versions(f"name = '{context.model_name}' and run_id = '{train_run}'")
        if existing:  # a job killed after registering: the version is there, reuse it
            version = existing[0].version
        else:
            version = client.create_model_version(
                context.model_name, train_record.outputs["model_uri"], run_id=train_run,
                model_id=train_record.outputs["model_id"], tags={"pipeline_day": str(day)}).version
        client.set_registered_model_alias(context.model_name, CHALLENGER, version)
        return {"version": version}

    return run_step(context, "register", day, {"train_run": train_run}, {"alias": CHALLENGER}, body)


def validate(context: PipelineContext, day: int, version: str, gold_version: int, champion: str) -> StepRecord:
    """The candidate against the champion on the day's held-out rows: signature, dtype, F1 not worse."""
    inputs = {"version": version, "gold": gold_version, "champion": champion}

    def body(run_id: str) -> dict[str, Any]:
        import mlflow

        from course_utils.registry import record_verdict, validate_model_version

        day_rows = read_delta(context.table("gold"), gold_version, day=day)
        holdout = model_inputs(day_rows[day_rows["holdout"]])
        holdout[LABEL] = day_rows.loc[day_rows["holdout"], LABEL].to_numpy()
        result = validate_model_version(context.client, context.model_name, version, holdout,
                                        champion_alias=CHAMPION, label=LABEL, f1_tolerance=F1_TOLERANCE)
        record_verdict(context.client, context.model_name, version, result)
        mlflow.log_metric("candidate_f1", result["candidate_f1"] or 0.0)
        if result["champion_f1"] is not None:
            mlflow.log_metric("champion_f1", result["champion_f1"])
        mlflow.log_dict(result, "validation.json")
        return {"verdict": result["verdict"], "failed_checks": ",".join(result["failed_checks"]) or "none",
                "candidate_f1": round(result["candidate_f1"] or 0.0, 4),
                "champion_f1": "none" if result["champion_f1"] is None else round(result["champion_f1"], 4),
                "holdout_rows": len(holdout)}

    return run_step(context, "validate", day, inputs, {"f1_tolerance": F1_TOLERANCE}, body)


def promote(context: PipelineContext, day: int, version: str, verdict: str, champion: str) -> StepRecord:
    """Move ``champion`` to the version when its validation passed; otherwise keep the champion."""
    inputs = {"version": version, "verdict": verdict, "champion": champion}

    def body(run_id: str) -> dict[str, Any]:
        client = context.client
        if verdict == "passed":
            client.set_registered_model_alias(context.model_name, CHAMPION, version)
            client.delete_registered_model_alias(context.model_name, CHALLENGER)
            client.set_model_version_tag(context.model_name, version, "promoted_on_day", str(day))
            logger.info("promoted: version %s is the champion (was %s)", version, champion)
            return {"decision": "promoted", "champion_version": version}
        client.set_model_version_tag(context.model_name, version, "refused_on_day", str(day))
        logger.warning("refused: version %s failed validation; the champion stays version %s", version, champion)
        return {"decision": "kept", "champion_version": champion}

    return run_step(context, "promote", day, inputs, {}, body)


# --- 8: score ------------------------------------------------------------------------------------


def load_model(context: PipelineContext, version: str) -> Any:
    """A registered version as a pyfunc model (loaded once per process and version)."""
    import mlflow

    cache = context.__dict__.setdefault("_models", {})
    if version not in cache:
        mlflow.set_tracking_uri(context.tracking_uri)
        cache[version] = mlflow.pyfunc.load_model(f"models:/{context.model_name}/{version}")
    return cache[version]


def score_batch(context: PipelineContext, day: int, gold_version: int, champion: str) -> StepRecord:
    """Score the day's gold rows with the champion; replace the day in ``predictions``."""

    def body(run_id: str) -> dict[str, Any]:
        import mlflow

        gold = read_delta(context.table("gold"), gold_version, day=day)
        scored = gold[["customer_id", "day"]].copy()
        scored["model_version"] = int(champion)
        scored["prediction"] = load_model(context, champion).predict(model_inputs(gold)).astype("int32")
        frame = context.spark.createDataFrame(
            scored, "customer_id BIGINT, day INT, model_version INT, prediction INT")
        version = _write_day(frame, context.table("predictions"), day)
        mlflow.log_metric("positive_rate", float(scored["prediction"].mean()))
        return {"predictions_version": version, "rows": len(scored)}

    return run_step(context, "score_batch", day, {"gold": gold_version, "model_version": champion}, {}, body)


def score_stream(context: PipelineContext, day: int, gold_version: int, champion: str) -> StepRecord:
    """``gold`` as a streaming source (availableNow, checkpointed): new rows scored into ``stream_predictions``.

    Each micro-batch is written with Delta's idempotent-write options (``txnAppId``/``txnVersion``),
    so a batch replayed after a crash between the write and the checkpoint is not written twice.
    """

    def body(run_id: str) -> dict[str, Any]:
        import mlflow
        from pyspark.sql import functions as F

        model = load_model(context, champion)
        target = context.table("stream_predictions")
        counted: list[int] = []

        def score(batch: Any, batch_id: int) -> None:
            rows = batch.toPandas()
            if rows.empty:
                return
            scored = rows[["customer_id", "day"]].copy()
            scored["model_version"] = int(champion)
            scored["prediction"] = model.predict(model_inputs(rows)).astype("int32")
            (batch.sparkSession.createDataFrame(scored, "customer_id BIGINT, day INT, model_version INT, prediction INT")
             .write.format("delta").mode("append").option("txnAppId", f"{context.name}-stream")
             .option("txnVersion", batch_id).save(target))
            counted.append(len(scored))

        source = (context.spark.readStream.format("delta").option("skipChangeCommits", True)
                  .load(context.table("gold")).where(F.col("day") <= day))
        query = (source.writeStream.foreachBatch(score).trigger(availableNow=True)
                 .option("checkpointLocation", context.checkpoint("stream_predictions")).start())
        query.awaitTermination()
        mlflow.log_metric("rows_streamed", sum(counted))
        return {"stream_version": delta_version(target), "rows_streamed": sum(counted)}

    return run_step(context, "score_stream", day, {"gold": gold_version, "model_version": champion}, {}, body)


def score_rest(context: PipelineContext, day: int, gold_version: int, champion: str) -> StepRecord:
    """The day's rows through the module 04 router to ``mlflow models serve`` of the champion, checked in process."""

    def body(run_id: str) -> dict[str, Any]:
        from concurrent.futures import ThreadPoolExecutor

        import mlflow

        from course_utils.ports import free_port
        from course_utils.router import start_router, write_config, RouterConfig
        from course_utils.routing import weighted_policy
        from course_utils.serving import predict_rest, start_model_server, stop_model_server
        from course_utils.services import stop

        gold = read_delta(context.table("gold"), gold_version, day=day)
        server_name, router_name = f"{context.name}-model", f"{context.name}-router"
        server_port, router_port = free_port(), free_port()
        config = write_config(context.dir / "router.json", RouterConfig(
            policy=weighted_policy({"champion": f"http://127.0.0.1:{server_port}"}, {"champion": 100})))
        # The router and the model server start side by side: each waits for its own health check.
        with ThreadPoolExecutor(1) as pool:
            router = pool.submit(start_router, router_name, config, router_port, context.settings)
            try:
                server = start_model_server(f"models:/{context.model_name}/{champion}", context.settings,
                                            tracking_uri=context.tracking_uri, name=server_name, port=server_port)
                try:
                    router.result()
                    predictions = predict_rest(f"http://127.0.0.1:{router_port}", model_inputs(gold))
                finally:
                    stop_model_server(server, context.settings)
            finally:
                router.exception()  # the start has ended (started or failed) before it is stopped
                stop(router_name, context.settings)
        rest = gold[["customer_id", "day"]].copy()
        rest["model_version"] = int(champion)
        rest["prediction"] = [int(p) for p in predictions]
        frame = context.spark.createDataFrame(rest, "customer_id BIGINT, day INT, model_version INT, prediction INT")
        version = _write_day(frame, context.table("rest_predictions"), day)
        in_process = load_model(context, champion).predict(model_inputs(gold))
        agree = float((rest["prediction"].to_numpy() == in_process).mean())
        mlflow.log_metric("agreement_with_in_process", agree)
        return {"rest_version": version, "rows": len(rest), "agreement_with_in_process": agree}

    return run_step(context, "score_rest", day, {"gold": gold_version, "model_version": champion}, {}, body)


# --- 9: monitor ----------------------------------------------------------------------------------


def training_reference(context: PipelineContext, champion: str) -> pd.DataFrame:
    """The rows the champion was trained on, found from its training run's tags (not remembered)."""
    version = context.client.get_model_version(context.model_name, champion)
    run = context.client.get_run(version.run_id)
    gold_version = int(run.data.tags["input.gold"])
    last_day = int(run.data.tags["pipeline_day"])
    gold = read_delta(context.table("gold"), gold_version, up_to_day=last_day)
    return gold[~gold["holdout"]]


def monitor(context: PipelineContext, day: int, gold_version: int, champion: str) -> StepRecord:
    """Drift of the day's inputs against the champion's training data; an alert names the drifted columns."""
    params = {"tests": json.dumps(MONITOR_TESTS, sort_keys=True)}

    def body(run_id: str) -> dict[str, Any]:
        import mlflow

        from course_utils.monitoring import drift_report

        reference = model_inputs(training_reference(context, champion))
        current = model_inputs(read_delta(context.table("gold"), gold_version, day=day))
        report = drift_report(reference, current, tests=MONITOR_TESTS)
        verdict = report.groupby("column")["drifted"].all()
        drifted = sorted(verdict[verdict].index)
        for row in report.itertuples():
            mlflow.log_metric(f"{row.column}.{row.test}", float(row.statistic))
        mlflow.log_table(report, "drift_report.json")
        if drifted:
            logger.warning("drift alert: day %d, columns %s (run %s)", day, drifted, run_id)
        return {"drift_detected": bool(drifted), "drifted_columns": ",".join(drifted) or "none",
                "alert": run_id if drifted else NO_MODEL}

    return run_step(context, "monitor", day, {"gold": gold_version, "model_version": champion}, params, body)
