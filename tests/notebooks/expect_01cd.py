"""What the 01c/01d/01e lessons and the two 01 labs must have recorded (see ``lesson.record`` in each)."""

import statistics
from typing import Any

MODEL_FILES = {"MLmodel", "model.skops", "input_example.json", "requirements.txt", "python_env.yaml", "conda.yaml"}


def experiment_tracking(r: dict[str, Any]) -> None:
    # Data lineage: the dataset inputs name the feature table version the lesson read.
    assert r["feature_table_version"] >= 0
    assert r["logged_delta_versions"] == [r["feature_table_version"]]
    assert r["reloaded_rows_match"] is True
    assert r["train_rows"] > 1000 and r["validation_rows"] > 500
    # The hand-tracked run: params as strings, artifacts, figure, model with its environment.
    assert r["first_run_params"]["max_depth"] == "8" and r["first_run_params"]["model_type"] == "random_forest"
    assert 0.55 < r["first_run_val_roc_auc"] < 0.9
    assert r["code_version"] == "unknown" or len(r["code_version"]) == 40
    assert MODEL_FILES <= set(r["model_files"])
    assert {"data/features.json", "plots/roc_curve_validation.png"} <= set(r["run_artifacts"])
    assert "course services up" in r["server_down_message"]
    # Metric history: one value per boosting round for both learning rates.
    assert r["metric_history_lengths"] == {"learning_rate=0.01": r["boosting_rounds"], "learning_rate=0.3": r["boosting_rounds"]}
    fast, slow = r["boosting_curves"]["learning_rate=0.3"], r["boosting_curves"]["learning_rate=0.01"]
    assert fast["best_round"] < r["boosting_rounds"] // 4 and fast["last_loss"] > fast["best_loss"] + 0.01
    assert slow["best_round"] >= 0.9 * r["boosting_rounds"]
    # Querying: search_runs and REST agree; the counts are the runs the lesson made.
    assert r["forest_runs_found"] == len(r["depth_grid"]) == 6
    assert r["rest_runs_found"] == r["forest_runs_found"] and r["rest_matches_search_runs"] is True
    assert r["all_runs_found"] == r["runs_with_this_code_version"] == 9  # 6 forests, 2 boosters, 1 logistic
    assert r["best_depth"] in r["depth_grid"] and r["best_depth"] < max(r["depth_grid"])
    assert r["best_run_name"] == "logistic-regression-C-0.01"
    assert 0.65 < r["best_val_roc_auc"] < 0.9


def autologging_and_tuning(r: dict[str, Any]) -> None:
    # Autolog defaults, and why the course logs tree models itself.
    assert r["autolog_defaults"]["serialization_format"] == "cloudpickle" and r["autolog_defaults"]["log_models"] is True
    assert r["skops_autolog_model_status"] and not any("READY" in s for s in r["skops_autolog_model_status"])
    assert r["autolog_param_count"] > 30
    assert {"training_roc_auc", "training_log_loss", "training_accuracy_score"} <= set(r["autolog_training_metrics"])
    assert {"estimator.html", "training_confusion_matrix.png", "training_roc_curve.png"} <= set(r["autolog_artifacts"])
    assert MODEL_FILES <= set(r["autolog_model_files"]) and r["autolog_model_serialization"] == "skops"
    # Spark ML autologging: stage params, the evaluator's metric, a Spark model with its environment.
    assert r["spark_autolog_param_count"] > 20
    (spark_metric, spark_auc), = r["spark_autolog_metrics"].items()
    assert spark_metric.startswith("areaUnderROC") and 0.55 < spark_auc < 0.9
    assert {"model/MLmodel", "model/requirements.txt", "model/sparkml"} <= set(r["spark_model_files"])
    assert "mlflow-spark" in r["datasource_autolog_error"]
    # Hyperopt: one nested child run per trial, for Trials and SparkTrials.
    assert r["tpe_trials"] == r["tpe_child_runs"] == r["tpe_evals"]
    assert -0.9 < r["tpe_best_loss"] < -0.65
    # The search paid off: TPE's best beats the median trial of a random search with the same budget.
    assert len(r["random_search_losses"]) == r["tpe_evals"]
    assert r["tpe_best_loss"] < statistics.median(r["random_search_losses"])
    assert r["spark_trials"] == r["spark_child_runs"] == r["spark_evals"]
    assert r["spark_trial_statuses"] == ["ok"] * r["spark_evals"] and -0.9 < r["spark_best_loss"] < -0.5
    # The chosen model reproduces its trial and is logged with its explanation.
    assert abs(r["best_model_val_roc_auc"] + r["tpe_best_loss"]) < 1e-12
    assert r["best_config"]["model_type"] in {"logistic_regression", "random_forest"}
    assert MODEL_FILES <= set(r["best_model_files"])
    assert r["best_run_interpretability_files"] == [
        "interpretability/permutation_importance.json",
        "interpretability/permutation_importance.png",
    ]
    assert "minutes_watched_28d" not in r["permutation_top_features"]


def access_control(r: dict[str, Any]) -> None:
    denied = [403, "PERMISSION_DENIED"]
    # Authentication: no credentials and a wrong password are both turned away (401); health stays open.
    assert r["unauthenticated_status"] == 401 and r["health_status"] == 200
    assert "HTTP 401" in r["wrong_password_error"] and "a-guessed-password" not in r["wrong_password_error"]
    # The creator manages; another user has nothing (default NO_PERMISSIONS), reads nothing, grants himself nothing.
    assert r["owner_permissions"] == {"alice": {"experiment": "MANAGE", "registered model": "MANAGE"},
                                      "bob": {"experiment": "NO_PERMISSIONS", "registered model": "NO_PERMISSIONS"}}
    assert len(r["bob_without_grant"]) == 5 and all(outcome == denied for outcome in r["bob_without_grant"].values())
    assert "/team-alice/churn" not in r["bob_sees_in_search"]
    assert r["bob_self_grant"] == denied
    # READ: reads what Alice logged, still cannot write.
    assert r["read_permissions"] == {"experiment": "READ", "registered model": "READ"}
    assert r["bob_read_back"] == {"experiment": "/team-alice/churn", "run's val_roc_auc": 0.74, "model's description": "Alice's churn model"}
    assert len(r["bob_with_read"]) == 3 and all(outcome == denied for outcome in r["bob_with_read"].values())
    # EDIT: logs runs and edits the model; deleting still needs MANAGE; revoke takes it back.
    assert r["edit_permissions"] == {"experiment": "EDIT", "registered model": "EDIT"}
    assert r["runs_alice_sees"] == {"baseline": 0.74, "bob-deeper-trees": 0.76}
    assert r["bob_run_user"] == "alice", "a run's user is the client's claim (Bob's client claimed alice)"
    assert r["description_alice_sees"] == "Alice's churn model, reviewed by Bob"
    assert r["bob_with_edit_delete"] == denied and r["bob_after_revoke"] == denied
    # The default permission: MLflow ships READ; this server's applies once nothing is granted.
    assert r["mlflow_default_permission"] == "READ" and r["bob_default_on_model"] == "NO_PERMISSIONS"
    # The admin reads everything and alone manages users.
    assert r["admin_reads"] == "/team-alice/churn" and r["alice_reads_user"] == denied
    # Credentials: private files in the workspace, never in the recorded results.
    assert r["credential_file_modes"] == {"credentials.json": "0o600", "basic_auth.ini": "0o600"}
    assert r["credentials_in_workspace"] is True and r["passwords_in_results"] is False


def lab_experiment_tracking(r: dict[str, Any]) -> None:
    assert r["grid_size"] == r["grid_runs_found"] == 6
    assert r["best_params"]["max_depth"] in {3, 5, 8} and r["best_params"]["n_estimators"] in {20, 60}
    assert 0.6 < r["best_val_roc_auc"] < 0.9


def lab_tuning(r: dict[str, Any]) -> None:
    assert r["trials"] == r["nested_child_runs"] == r["max_evals"] == 8
    assert -0.9 < r["best_trial_loss"] < -0.6
    assert 2 <= r["best_config"]["max_depth"] <= 10 and r["best_config"]["max_features"] in ("sqrt", 0.5, 1.0)


EXPECTATIONS = {
    "01c_experiment_tracking": experiment_tracking,
    "01d_autologging_and_tuning": autologging_and_tuning,
    "01e_access_control": access_control,
    "01_lab_experiment_tracking": lab_experiment_tracking,
    "01_lab_tuning": lab_tuning,
}
