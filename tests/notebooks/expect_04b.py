"""What ``04b_model_monitoring`` must have recorded (see ``lesson.record`` in the notebook).

Timings and resource use vary from machine to machine, so they are checked against each other
(client vs Prometheus, within the margins the notebook derived and recorded), never as numbers.
"""

from typing import Any

LATENCY_BUCKETS_MS = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]  # course_utils.router.LATENCY_BUCKETS


def model_monitoring(r: dict[str, Any]) -> None:
    client, prometheus = r["software_client"], r["software_prometheus"]
    # software: counters equal, latency and throughput within the derived margins, CPU and memory agree
    assert client["requests"] == prometheus["requests"] == r["load_requests"] > 0
    assert client["failed"] == prometheus["failed"] == 0
    assert 0 < prometheus["mean latency ms"] <= client["mean latency ms"]
    assert r["client_p99_bucket_edge_ms"] in LATENCY_BUCKETS_MS and r["client_p99_bucket_edge_ms"] >= client["p99 latency ms"]
    assert 0 < prometheus["p99 latency ms"] <= r["client_p99_bucket_edge_ms"]
    low, high = r["throughput_bounds"]
    assert low <= prometheus["throughput per s"] <= high and low <= client["throughput per s"] <= high
    assert abs(prometheus["model server CPU s"] - client["model server CPU s"]) <= 0.2 and client["model server CPU s"] > 0
    assert abs(prometheus["model server RSS MB"] / client["model server RSS MB"] - 1) <= 0.10
    assert r["targets_up"] == {"router": 1.0, "exporter": 1.0, "prometheus": 1.0}
    assert abs(r["prometheus_rss_ratio"] - 1) <= 0.25, "Prometheus's own memory metric must agree with psutil's"
    # outputs and business
    outputs, business = r["output_metrics"], r["business"]
    assert outputs["answers in Prometheus"] == outputs["answers"] == r["load_requests"] == business["customers"]
    assert outputs["zeros in Prometheus"] == outputs["answers"] - business["retention offers"]
    assert 0 < business["retention offers"] < business["customers"] and 0 < business["share of monthly revenue under review"] < 1
    assert r["served_equals_registered_model"] is True
    # performance without labels, then with them
    estimates = {row["estimate"]: row for row in r["expected_vs_measured"]}
    for name in ("likelier class (expected_accuracy)", "served decisions"):
        row = estimates[name]
        assert abs(row["expected"] - row["measured"]) <= row["3 standard errors"] and row["within"] is True
    assert estimates["served decisions, raw scores (not calibrated)"]["within"] is False
    assert estimates["served decisions"]["measured"] == r["accuracy"]
    # model tests, each checked against a second computation
    assert all(abs(row["pandas"] - row["scipy r"]) < 1e-9 for row in r["pearson"])
    assert max(r["pearson"], key=lambda row: row["pandas"])["feature"] == "support_tickets_28d"  # the true model's driver
    assert set(r["contingency_chi2_p"]) == {"country", "plan"}
    assert 0 < r["mse"] < 0.25 and 0.5 < r["auc"] < 1 and abs(r["auc"] - r["auc_from_mann_whitney"]) < 1e-9
    assert abs(r["f1"] - r["f1_by_hand"]) < 1e-12 and 0 < r["f1"] < 1
    (tn, fp), (fn, tp) = r["confusion_matrix"]
    assert tn + fp + fn + tp == r["load_requests"] and tp + fp == business["retention offers"]
    assert all(abs(value - r["accuracy"]) < 1e-9 for value in r["slice_weighted_accuracy"].values())
    assert r["train_seconds"] > 0 and r["retrain_seconds"] > 0
    # the alert, through Alertmanager to the receiver, and the retrain it triggered
    assert r["july_drift_flags"] == 0 and list(r["september_drift_flags"]) == ["minutes_watched_28d"]
    assert r["deliveries_before_drift"] == 0 and r["alert_names"] == ["FeatureDriftDetected"]
    assert r["alert_labels"]["feature"] == "minutes_watched_28d" and r["alert_labels"]["action"] == "retrain"
    assert r["seconds_to_alert"] >= 15  # the rule's `for: 15s`
    challenger = r["challenger"]
    assert challenger["version"] != challenger["champion_version"] and challenger["created_at"] >= r["alert_received_at"]
    assert challenger["trigger"] == "FeatureDriftDetected" and challenger["drifted_feature"] == "minutes_watched_28d"
    assert r["all_servers_stopped"] is True


EXPECTATIONS = {
    "04b_model_monitoring": model_monitoring,
}
