"""What the 03_deployment notebooks must have recorded (see ``lesson.record`` in each notebook).

Timings are recorded but never asserted as numbers: only their sanity (positive, p50 <= p95 <= p99).
"""

from typing import Any

DOCKERFILE_INSTRUCTIONS = {"FROM", "RUN", "WORKDIR", "COPY", "ADD", "ENV", "ARG", "EXPOSE", "USER", "LABEL", "ENTRYPOINT", "CMD"}
SCORING_DATES = ["2025-09-30", "2025-10-31", "2025-11-30", "2025-12-31"]


def _latency_is_sane(stats: dict[str, Any], rows_per_call: int | None = None) -> None:
    assert stats["calls"] > 0
    assert 0 < stats["p50_ms"] <= stats["p95_ms"] <= stats["p99_ms"]
    assert stats["rows_per_s"] > 0
    if rows_per_call is not None:
        assert stats["rows_per_call"] == rows_per_call


def batch(r: dict[str, Any]) -> None:
    # every customer snapshot of the four dates scored exactly once, into four partitions
    assert r["rows_to_score"] > 1500
    assert r["predictions_rows"] == r["rows_to_score"] == r["distinct_predictions"]
    assert r["predictions_partitions"] == SCORING_DATES
    assert r["rows_after_rescore"] == r["predictions_rows"], "re-scoring a date replaces it"
    # Z-ordering: a lookup opens at least 3x fewer files (measured 19 -> 4), exactly the files the log's min/max keeps
    assert r["files_read_per_lookup_before"] >= 3 * r["files_read_per_lookup_after"]
    assert r["files_read_per_lookup_before"] <= r["files_before_optimize"]
    assert r["files_read_match_log_statistics"] is True
    assert r["files_after_optimize"] >= len(SCORING_DATES)
    # the feature-store path gives the same predictions as the Delta path
    assert r["feature_store_rows"] > 400 and r["feature_store_agreement"] == 1.0
    # in-process predict beats the Spark job's rows/s by a wide margin on a few thousand rows (measured ~500x)
    assert r["in_process_to_spark_rows_per_s"] >= 10


def streaming(r: dict[str, Any]) -> None:
    # exactly once: stopped mid-way, restarted, and every event scored once
    assert r["files_landed"] == r["files_scored"] == 10
    assert r["expected_rows"] > 1000
    assert r["sink_rows"] == r["expected_rows"]
    assert r["duplicate_rows"] == 0 and r["missing_rows"] == 0
    assert 0 < r["rows_after_first_run"] < r["expected_rows"]
    assert r["first_run_batches"] >= 2 and r["restart_batches"] >= 1
    assert r["max_rows_per_batch"] > 0
    assert r["batch_p50_s"] > 0 and r["freshness_s"] >= r["batch_p50_s"]


def real_time(r: dict[str, Any]) -> None:
    assert r["ping_status"] == 200 and r["formats_agree"] is True
    assert set(r["bad_request_codes"]) == {"malformed JSON", "missing column", "wrong type", "unknown format key"}
    assert all(code == 400 for code in r["bad_request_codes"].values()), r["bad_request_codes"]
    assert r["server_up_after_bad_requests"] is True
    _latency_is_sane(r["served_single"], rows_per_call=1)
    _latency_is_sane(r["served_batch"], rows_per_call=100)
    _latency_is_sane(r["in_process_single"], rows_per_call=1)
    _latency_is_sane(r["in_process_batch"], rows_per_call=100)
    assert r["served_to_in_process_p50"] > 0 and r["batching_gain_rows_per_s"] > 0
    assert r["online_predictions_match"] is True
    assert 0 < r["online_lookup_p50_ms"] and 0 < r["online_end_to_end_p50_ms"]
    assert {"FROM", "COPY", "ENTRYPOINT"} <= set(r["dockerfile_instructions"]) <= DOCKERFILE_INSTRUCTIONS
    assert r["server_stopped"] is True


def edge(r: dict[str, Any]) -> None:
    assert r["rows_compared"] > 5000
    assert r["max_abs_probability_difference"] < 1e-5, "ONNX parity"
    assert r["label_agreement"] == 1.0
    assert r["onnx_operators"]["TreeEnsembleClassifier"] == 1 and r["onnx_operators"]["OneHotEncoder"] == 2
    assert 0 < r["onnx_file_mb"] < r["sklearn_file_mb"]
    assert r["reloaded_difference"] == 0.0
    assert r["onnx_model_uri"].startswith("models:/")
    for key, rows in (("sklearn_single", 1), ("onnx_single", 1), ("sklearn_batch", 100), ("onnx_batch", 100)):
        _latency_is_sane(r[key], rows_per_call=rows)
    assert r["onnx_speedup_single_p50"] > 0


def latency_summary(r: dict[str, Any]) -> None:
    paradigms = ["batch", "streaming", "real time (REST)", "edge (ONNX)"]
    assert r["paradigms"] == paradigms
    assert all(r["request_p50_ms"][p] > 0 for p in paradigms)
    assert r["freshness_s"]["batch"] >= 24 * 3600 and r["freshness_s"]["streaming"] > 0
    assert r["freshness_s"]["real time (REST)"] == r["freshness_s"]["edge (ONNX)"] == 0


def lab_batch_scoring(r: dict[str, Any]) -> None:
    assert r["predictions_rows"] == r["expected_rows"] > 400
    assert r["checks_passed"] == r["checks_total"] == 5


def lab_real_time_serving(r: dict[str, Any]) -> None:
    assert r["ping_status"] == 200 and 400 <= r["bad_status"] < 500
    assert len(r["served_predictions"]) == 3 and set(r["served_predictions"]) <= {0, 1}
    assert 0 < r["single_p50_ms"] <= r["single_p99_ms"]
    assert r["server_stopped"] is True
    assert r["checks_passed"] == r["checks_total"] == 5


EXPECTATIONS = {
    "03a_batch": batch,
    "03b_streaming": streaming,
    "03c_real_time": real_time,
    "03d_edge": edge,
    "03e_latency_summary": latency_summary,
    "03_lab_batch_scoring": lab_batch_scoring,
    "03_lab_real_time_serving": lab_real_time_serving,
}
