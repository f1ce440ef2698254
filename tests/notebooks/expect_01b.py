"""What 01b_feature_store must have recorded (see ``lesson.record`` in the notebook)."""

from typing import Any


def feature_store(r: dict[str, Any]) -> None:
    # The registry: two views, two services, a dictionary entry per feature (10 model inputs + the audit column).
    assert r["feature_views"] == 2 and r["feature_services"] == 2
    assert r["dictionary_features"] == 11
    assert r["feature_rows"] > 1000

    # Point in time: the naive join leaks on most rows, Feast's join on none.
    assert r["pit_leaked_rows"] == 0
    assert r["naive_leaked_rows"] > 0.5 * r["training_rows"], "most customers have later snapshots than their label"
    auc = r["auc"]
    naive_gap = auc["naive_validation"] - auc["naive_later"]
    assert naive_gap > 0.05, "the leak makes validation over-optimistic"
    assert naive_gap > auc["pit_validation"] - auc["pit_later"]
    assert auc["pit_later"] > auc["naive_later"], "on later months, the point-in-time model is the better one"
    assert 0.5 < r["holdout_auc"] <= 1.0 and abs(r["holdout_auc"] - auc["pit_later"]) < 1e-9

    # Online store: same values as the offline table, unknown keys reported. The lookup latency is
    # shown as an illustration (its histogram), not claimed, so nothing is asserted on it.
    assert r["online_matches_offline"] is True and r["online_sample_size"] == 5
    assert r["unknown_keys_reported"] == 2

    # Versioning and lineage: the run names the Delta version the training set came from.
    assert r["delta_versions"] == [0, 1, 2]
    assert r["training_delta_version"] == 1 and r["run_delta_version"] == 1
    assert r["run_feature_service"] == "churn_model_v1"
    assert r["feature_view_versions"] == {"customer_activity_28d": ["v0", "v1"], "customer_profile": ["v0"]}
    assert r["training_reproducible"] is True

    # Keys-only model: identical scores to full feature rows, online and as of a past time.
    assert r["keys_only_scored"] > 100
    assert r["max_score_difference"] < 1e-12 and r["as_of_difference"] < 1e-12


EXPECTATIONS = {"01b_feature_store": feature_store}
