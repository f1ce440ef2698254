"""What the 03_deployment notebooks must have recorded (see ``lesson.record`` in each notebook).

Timings are never asserted as absolute numbers (the machine may be busy): the performance claims are
asserted as ratios and orderings, with margins well below what was measured (the measured values are
noted next to each) and well above what a false claim would give.
"""

from typing import Any

DOCKERFILE_INSTRUCTIONS = {"FROM", "RUN", "WORKDIR", "COPY", "ADD", "ENV", "ARG", "EXPOSE", "USER", "LABEL", "ENTRYPOINT", "CMD"}
SCORING_DATES = ["2025-09-30", "2025-10-31", "2025-11-30", "2025-12-31"]


def _latency_is_sane(stats: dict[str, Any], calls: int, rows_per_call: int) -> None:
    """Only what the notebook chose (calls, rows per call): timings are asserted as ratios by the callers."""
    assert stats["calls"] == calls and stats["rows_per_call"] == rows_per_call


def _batching_gain_p50(single: dict[str, Any], batch: dict[str, Any]) -> float:
    """Rows per second of a batch call over a single-row call, both at their p50 latency."""
    return (batch["rows_per_call"] / batch["p50_ms"]) / (single["rows_per_call"] / single["p50_ms"])


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
    assert r["first_run_batches"] >= 2
    # maxFilesPerTrigger caps every micro-batch, also when availableNow catches up after the restart
    assert r["max_files_per_batch"] <= r["files_per_trigger"] == 2
    assert 0 < r["files_after_restart"] and r["restart_batches"] >= -(-r["files_after_restart"] // r["files_per_trigger"])
    # "seconds, not milliseconds, and not hours" (measured 5.7-14 s on a busy machine)
    assert 0.5 <= r["freshness_s"] <= 600


def real_time(r: dict[str, Any]) -> None:
    assert r["ping_status"] == 200 and r["formats_agree"] is True
    assert set(r["bad_request_codes"]) == {"malformed JSON", "missing column", "wrong type", "unknown format key"}
    assert all(code == 400 for code in r["bad_request_codes"].values()), r["bad_request_codes"]
    assert r["server_up_after_bad_requests"] is True
    _latency_is_sane(r["served_single"], calls=200, rows_per_call=1)
    _latency_is_sane(r["served_batch"], calls=30, rows_per_call=100)
    _latency_is_sane(r["in_process_single"], calls=200, rows_per_call=1)
    _latency_is_sane(r["in_process_batch"], calls=30, rows_per_call=100)
    # batching: 100-row requests give at least 5x the rows/s of single rows (measured x136-151 served, x87-97 in process)
    assert r["batching_gain_rows_per_s"] >= 5 and r["in_process_batching_gain_rows_per_s"] >= 5
    # the server adds HTTP, JSON and schema enforcement to the model's own predict (measured x1.7 at p50)
    assert r["served_to_in_process_p50"] >= 1.2
    assert r["online_predictions_match"] is True
    assert {"FROM", "COPY", "ENTRYPOINT"} <= set(r["dockerfile_instructions"]) <= DOCKERFILE_INSTRUCTIONS
    assert r["server_stopped"] is True


def edge(r: dict[str, Any]) -> None:
    assert r["rows_compared"] > 5000
    assert r["max_abs_probability_difference"] < 1e-5, "ONNX parity"
    assert r["label_agreement"] == 1.0
    assert r["onnx_operators"]["TreeEnsembleClassifier"] == 1 and r["onnx_operators"]["OneHotEncoder"] == 2
    # "several times smaller" file (measured 0.36 vs 2.04 MB) and runtime (80 vs 277 MB): deterministic sizes
    assert r["sklearn_file_mb"] >= 3 * r["onnx_file_mb"] > 0
    assert r["runtime_mb"]["scikit-learn"] >= 2 * r["runtime_mb"]["onnxruntime"]
    assert r["reloaded_difference"] == 0.0
    assert r["onnx_model_uri"].startswith("models:/")
    for key, calls, rows in (("sklearn_single", 200, 1), ("onnx_single", 200, 1), ("sklearn_batch", 20, 100), ("onnx_batch", 20, 100)):
        _latency_is_sane(r[key], calls=calls, rows_per_call=rows)
    # one row: onnxruntime at least 10x faster than scikit-learn at p50 (measured x95-96)
    assert r["onnx_speedup_single_p50"] >= 10
    assert r["onnx_speedup_single_p50"] == r["sklearn_single"]["p50_ms"] / r["onnx_single"]["p50_ms"]
    # ... and than the pyfunc wrapper MLflow's scoring server runs (signature enforcement on top)
    _latency_is_sane(r["pyfunc_single"], calls=50, rows_per_call=1)
    assert r["onnx_speedup_vs_pyfunc_single_p50"] >= 10
    assert r["onnx_speedup_vs_pyfunc_single_p50"] == r["pyfunc_single"]["p50_ms"] / r["onnx_single"]["p50_ms"]
    # 100-row calls: at least 5x the rows/s of single rows, at p50 (measured x90 scikit-learn, x25-46 onnxruntime)
    for runtime, single, batch in (("scikit-learn", "sklearn_single", "sklearn_batch"), ("onnxruntime", "onnx_single", "onnx_batch")):
        assert r["batching_gain_p50"][runtime] >= 5
        assert abs(r["batching_gain_p50"][runtime] - _batching_gain_p50(r[single], r[batch])) < 1e-6 * r["batching_gain_p50"][runtime]


def latency_summary(r: dict[str, Any]) -> None:
    paradigms = ["batch", "streaming", "real time (REST)", "edge (ONNX)"]
    assert r["paradigms"] == paradigms
    # measured freshness orders the paradigms (batch's is its job plus the schedule, a parameter; the rest measured):
    # streaming seconds (measured 5.7-14 s) >= 10x REST's request p50 (12-24 ms) >= 10x ONNX's call (0.09 ms)
    assert r["paradigms_by_freshness"] == paradigms
    freshness = r["freshness_s"]
    assert freshness["streaming"] >= 10 * freshness["real time (REST)"] and freshness["real time (REST)"] >= 10 * freshness["edge (ONNX)"]
    # real time and edge: the data comes with the request, so freshness is the request latency, measured
    assert freshness["real time (REST)"] == round(r["request_p50_ms"]["real time (REST)"] / 1000, 6)
    assert freshness["edge (ONNX)"] == round(r["request_p50_ms"]["edge (ONNX)"] / 1000, 6)
    # nothing typed in: a latency not measured is recorded as missing, not copied from another paradigm
    assert r["request_p50_ms"]["streaming"] is None and r["request_p99_ms"]["batch"] is None
    assert r["request_p50_ms"]["real time (REST)"] >= 10 * r["request_p50_ms"]["edge (ONNX)"]
    _service_levels_follow_from_the_measurements(r, paradigms)
    _deployment_options_are_read_from_mlflow(r)


def _same(a: float | None, b: float | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and abs(a - b) <= 1e-6 * max(1.0, abs(b)))


def _sla_verdict(level: dict[str, Any], numbers: dict[str, float | None]) -> str:
    """'meets', 'misses' or 'not measured', recomputed here from the recorded numbers (p99 >= p50 when no p99)."""
    outcomes: list[bool | None] = []
    if level["max_freshness_s"] is not None:
        outcomes.append(numbers["freshness_s"] <= level["max_freshness_s"])
    if level["max_p99_ms"] is not None:
        p99, p50, limit = numbers["p99_ms"], numbers["p50_ms"], level["max_p99_ms"]
        outcomes.append(p99 <= limit if p99 is not None else False if p50 is not None and p50 > limit else None)
    if level["min_requests_per_s"] is not None:
        rate = numbers["requests_per_s"]
        outcomes.append(None if rate is None else rate >= level["min_requests_per_s"])
    return "misses" if False in outcomes else "meets" if all(o is True for o in outcomes) else "not measured"


def _service_levels_follow_from_the_measurements(r: dict[str, Any], paradigms: list[str]) -> None:
    numbers = r["sla_measured"]
    assert set(numbers) == set(paradigms)  # (results are stored with sorted keys)
    # the SLA check reads the numbers the summary measured, not other ones
    for p in paradigms:
        assert _same(numbers[p]["freshness_s"], r["freshness_s"][p]) and _same(numbers[p]["p50_ms"], r["request_p50_ms"][p])
        assert _same(numbers[p]["p99_ms"], r["request_p99_ms"][p])
    # REST's and the edge's request rates were measured (one client), the stored-prediction lookups' were not
    assert numbers["real time (REST)"]["requests_per_s"] > 0 and numbers["edge (ONNX)"]["requests_per_s"] > 0
    assert numbers["batch"]["requests_per_s"] is None and numbers["streaming"]["p99_ms"] is None
    levels = {level["use_case"]: level for level in r["service_levels"]}
    assert set(r["sla_verdicts"]) == set(r["chosen_paradigm"]) == set(levels) and len(levels) >= 3
    for use_case, level in levels.items():
        expected = {p: _sla_verdict(level, numbers[p]) for p in paradigms}
        assert r["sla_verdicts"][use_case] == expected, (use_case, r["sla_verdicts"][use_case], expected)
        # the cheapest paradigm (batch first, edge last) whose numbers meet the level
        assert r["chosen_paradigm"][use_case] == next((p for p in paradigms if expected[p] == "meets"), None)
        if level["max_freshness_s"] is not None and level["max_freshness_s"] < r["batch_schedule_s"]:
            assert expected["batch"] == "misses", "a prediction made on a schedule is older than the schedule"
    # the p99 SLA splits the paradigms (REST measured p99 22-90 ms and ONNX 0.2-0.3 ms against 250 ms; batch is a day old)
    account_page = set(r["sla_verdicts"]["churn offer on the account page"].values())
    assert {"meets", "misses"} <= account_page


def _deployment_options_are_read_from_mlflow(r: dict[str, Any]) -> None:
    assert r["deployment_options_found"] and all(r["deployment_options_found"].values())
    assert "mlflow.pyfunc.spark_udf" in r["deployment_options_found"]
    # targets from get_deploy_client's registry: SageMaker is built in, the rest come from entry points
    assert "sagemaker" in r["deployment_targets"]
    assert all(cls.endswith("DeploymentClient") for cls in r["deployment_targets"].values())
    assert {"serve", "generate-dockerfile", "build-docker"} <= set(r["models_cli_commands"])
    assert {"--model-uri", "--env-manager", "--host", "--port", "--workers"} == set(r["course_serve_flags"]) <= set(r["serve_options"])
    server = r["scoring_server"]
    assert server["runner"] == "uvicorn" and server["app class"] == "fastapi.applications.FastAPI"
    assert server["command"].endswith("mlflow.pyfunc.scoring_server.app:app") and "--host 127.0.0.1" in server["command"]
    assert server["routes"]["/invocations"] == ["POST"] and {"/ping", "/version"} <= set(server["routes"])


def lab_batch_scoring(r: dict[str, Any]) -> None:
    assert r["predictions_rows"] == r["expected_rows"] > 400


def lab_real_time_serving(r: dict[str, Any]) -> None:
    assert r["ping_status"] == 200 and 400 <= r["bad_status"] < 500
    assert len(r["served_predictions"]) == 3 and set(r["served_predictions"]) <= {0, 1}
    # the timed requests reached the server: its own access log counts them (plus measure_rest's warm-up calls)
    assert r["invocations_answered"] >= 50
    assert r["server_stopped"] is True


EXPECTATIONS = {
    "03a_batch": batch,
    "03b_streaming": streaming,
    "03c_real_time": real_time,
    "03d_edge": edge,
    "03e_latency_summary": latency_summary,
    "03_lab_batch_scoring": lab_batch_scoring,
    "03_lab_real_time_serving": lab_real_time_serving,
}
