"""What the module 05 pipeline notebook must have recorded (see ``lesson.record`` in the notebook).

Every value is read back from Delta and MLflow by the notebook. Both runs (the second skips every
step) must meet the same expectations.
"""

from typing import Any

STEPS = ["ingest", "featurise", "train", "register", "validate", "promote",
         "score_batch", "score_stream", "monitor", "score_rest"]


def pipeline(r: dict[str, Any]) -> None:
    # The broken day is quarantined with its reason, not loaded; the days before it are.
    quarantine = r["quarantine"]
    assert quarantine["days"] == [4]
    assert quarantine["reason"].startswith("schema: missing columns ['support_tickets_28d']")
    assert quarantine["bronze_days"] == [1, 2, 3]
    assert quarantine["statuses"] == ["loaded", "loaded", "loaded", "quarantined"]

    # The injected drift (day 3, minutes_per_session) is found there and nowhere else, and its alert
    # started exactly one retraining; the decision follows the measured F1s.
    drift = r["drift"]
    assert drift["drifted_by_day"] == {"1": "none", "2": "none", "3": "minutes_per_session"}
    assert drift["alert_day"] == 3 and drift["retrain_runs_from_alert"] == 1
    assert 0 < drift["candidate_f1"] <= 1 and 0 < drift["champion_f1"] <= 1
    assert drift["decision"] == ("promoted" if drift["candidate_f1"] >= drift["champion_f1"] else "kept")

    # Batch, stream and REST agree row for row; the stream wrote each row once.
    scoring = r["scoring"]
    assert scoring["batch_rows"] == scoring["stream_rows"] == 3 * scoring["rest_rows"]
    assert scoring["stream_duplicates"] == 0 and scoring["stream_agrees"] == 1.0
    assert scoring["rest_day"] == 3 and scoring["rest_rows"] == scoring["gold_rows_rest_day"] > 0
    assert scoring["rest_agrees"] == 1.0 and scoring["rest_model_version"] == scoring["champion_now"]

    # The degraded challenger failed validation on F1 and the champion did not move.
    degraded = r["degraded"]
    assert degraded["verdict"] == "failed" and "f1_not_worse" in degraded["failed_checks"]
    assert degraded["candidate_f1"] < degraded["champion_f1"]
    assert degraded["decision"] == "kept" and degraded["champion_after"] == degraded["champion_before"]
    assert degraded["refused_version"] != degraded["champion_after"]

    # Running the days again changed nothing.
    idempotence = r["idempotence"]
    assert idempotence["all_skipped"] and idempotence["steps"] > 10
    assert idempotence["same_delta_versions"] and idempotence["same_runs"] and idempotence["same_aliases"]

    # Lineage, read back: the champion's alias, its data, features, code and the alert behind it.
    lineage = r["lineage"]
    assert lineage["champion_version"] == lineage["alias_version"]
    assert lineage["validation"] == "passed"
    assert lineage["gold_operation"] == lineage["gold_history_operation"] == "WRITE"
    assert lineage["feature_service"] == "pipeline_churn_v1"
    assert lineage["code_version"] == lineage["code_version_now"]
    assert f'"delta_table_version": {lineage["gold_version"]}' in lineage["mlflow_dataset_source"]
    assert set(lineage["params"]) >= {"best_C", "c_grid", "train_days", "triggered_by_alert"}
    if drift["decision"] == "promoted":
        assert lineage["triggered_by_alert"]["day"] == 3
        assert lineage["triggered_by_alert"]["drifted_columns"] == "minutes_per_session"
        assert lineage["train_days"] == "1-3"
    else:
        assert lineage["triggered_by_alert"] is None and lineage["train_days"] == "1-1"

    # Headless: a scheduled workflow runs one simulated day; one MLproject entry point per step.
    headless = r["headless"]
    assert headless["runs_pipeline"] and len(headless["cron"].split()) == 5
    assert sorted(headless["entry_points"]) == sorted(headless["steps"]) == sorted(STEPS)


EXPECTATIONS = {"05_end_to_end_pipeline": pipeline}
