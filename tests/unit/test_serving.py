"""course_utils.serving: request bodies, latency statistics, and a real ``mlflow models serve`` on 127.0.0.1."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from course_utils.config import load_settings
from course_utils.ports import is_listening
from course_utils.serving import (
    REQUEST_FORMATS,
    ModelServer,
    ScoringRequestError,
    error_message,
    measure_in_process,
    measure_rest,
    post_invocations,
    predict_rest,
    request_body,
    serve_command,
    server_processes,
    start_model_server,
    stop_model_server,
    summarize_latency,
    time_calls,
)
from course_utils.services import ServiceError, status

FRAME = pd.DataFrame({"tenure": [1.0, 24.0, 60.0], "plan": ["basic", "premium", "standard"]})


# --- request bodies ------------------------------------------------------------------------


def test_request_bodies_have_the_documented_shapes() -> None:
    assert request_body(FRAME, "dataframe_split") == {
        "dataframe_split": {"columns": ["tenure", "plan"], "data": [[1.0, "basic"], [24.0, "premium"], [60.0, "standard"]]}
    }
    assert request_body(FRAME, "dataframe_records") == {
        "dataframe_records": [{"tenure": 1.0, "plan": "basic"}, {"tenure": 24.0, "plan": "premium"}, {"tenure": 60.0, "plan": "standard"}]
    }
    assert request_body(FRAME, "inputs") == {"inputs": {"tenure": [1.0, 24.0, 60.0], "plan": ["basic", "premium", "standard"]}}


def test_request_body_is_plain_json_for_numpy_types_and_missing_values() -> None:
    frame = pd.DataFrame({"n": np.array([1, 2], dtype=np.int64), "x": [np.float32(0.5), np.nan]})
    for request_format in REQUEST_FORMATS:
        text = json.dumps(request_body(frame, request_format))  # raises on numpy scalars
        assert "NaN" not in text and "null" in text


def test_unknown_request_format_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="'split'.*dataframe_split, dataframe_records, inputs"):
        request_body(FRAME, "split")  # type: ignore[arg-type]


def test_serve_command_uses_the_local_environment_on_loopback() -> None:
    command = serve_command("models:/m@champion", 5123, workers=2)
    assert command[1:5] == ["-m", "mlflow", "models", "serve"]
    text = " ".join(command)
    assert "--env-manager local" in text and "--host 127.0.0.1" in text and "--port 5123" in text and "--workers 2" in text
    with pytest.raises(ValueError, match="at least one worker"):
        serve_command("models:/m@champion", 5123, workers=0)


class _Answer:
    """A stand-in for requests.Response with a fixed body (only what error_message reads)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def json(self):
        return json.loads(self.text)


def test_error_message_keeps_the_reason_not_the_echoed_data() -> None:
    echoed = json.dumps({"error_code": "BAD_REQUEST", "message": "Failed to predict data '   a  b\n0  1  2'. \nError: Failed to enforce schema of data '...' with schema '...'. Error: Model is missing inputs ['age']."})
    assert error_message(_Answer(echoed)) == "Model is missing inputs ['age']."
    assert error_message(_Answer("plain text, not JSON")) == "plain text, not JSON"
    assert error_message(_Answer(json.dumps({"message": "x" * 500})), limit=50).endswith("…")


# --- latency -------------------------------------------------------------------------------


def test_summarize_latency_matches_numpy_percentiles_and_counts_throughput() -> None:
    seconds = np.random.default_rng(0).gamma(2.0, 0.01, size=500)
    stats = summarize_latency(seconds, rows_per_call=10)
    assert stats.p50_ms == pytest.approx(np.percentile(seconds, 50) * 1000, abs=1e-3)
    assert stats.p99_ms == pytest.approx(np.percentile(seconds, 99) * 1000, abs=1e-3)
    assert stats.p50_ms <= stats.p95_ms <= stats.p99_ms
    assert stats.calls == 500 and stats.rows_per_call == 10
    assert stats.calls_per_s == pytest.approx(500 / seconds.sum(), rel=1e-3)
    assert stats.rows_per_s == pytest.approx(stats.calls_per_s * 10, rel=1e-3)
    assert set(stats.as_dict()) >= {"p50_ms", "p95_ms", "p99_ms", "rows_per_s"}


@pytest.mark.parametrize("bad", [[], [0.1, float("nan")], [0.1, -0.2]])
def test_summarize_latency_rejects_bad_timings(bad) -> None:
    with pytest.raises(ValueError):
        summarize_latency(bad)


def test_time_calls_warms_up_then_times_each_call() -> None:
    calls = []
    timings = time_calls(lambda: calls.append(1), n=5, warmup=2)
    assert len(calls) == 7 and len(timings) == 5 and all(t >= 0 for t in timings)
    with pytest.raises(ValueError, match="at least one call"):
        time_calls(lambda: None, n=0)


def test_measure_in_process_reports_rows_per_call() -> None:
    stats, timings = measure_in_process(lambda frame: frame.sum(), FRAME, n=4, warmup=0)
    assert stats.rows_per_call == len(FRAME) and stats.calls == len(timings) == 4


# --- a real scoring server -----------------------------------------------------------------


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    return replace(load_settings({}), workspace=tmp_path_factory.mktemp("serving") / "workspace")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A logistic regression on one number and one category, saved with its signature."""
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.DataFrame({"tenure": [1.0, 2.0, 30.0, 40.0, 3.0, 50.0], "plan": ["basic", "basic", "premium", "standard", "basic", "premium"]})
    labels = [1, 1, 0, 0, 1, 0]
    pipeline = Pipeline(
        [
            ("encode", ColumnTransformer([("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"])], remainder="passthrough")),
            ("model", LogisticRegression()),
        ]
    ).fit(frame, labels)
    path = tmp_path_factory.mktemp("model") / "tiny"
    mlflow.sklearn.save_model(pipeline, str(path), signature=infer_signature(frame, pipeline.predict(frame)))
    return path


@pytest.fixture(scope="module")
def server(settings, tiny_model):
    running = start_model_server(str(tiny_model), settings, name="test-model-server")
    try:
        yield running
    finally:
        stop_model_server(running, settings)


@pytest.mark.slow
def test_ping_and_version(server: ModelServer) -> None:
    assert requests.get(f"{server.url}/ping", timeout=10).status_code == 200
    assert requests.get(f"{server.url}/version", timeout=10).text.strip().startswith("3.")
    assert server.url.startswith("http://127.0.0.1:")


@pytest.mark.slow
@pytest.mark.parametrize("request_format", REQUEST_FORMATS)
def test_every_documented_format_gives_the_same_predictions(server: ModelServer, request_format: str) -> None:
    frame = pd.DataFrame({"tenure": [1.0, 45.0], "plan": ["basic", "premium"]})
    assert predict_rest(server.url, frame, request_format) == [1, 0]


BAD_BODIES = {
    "malformed JSON": '{"dataframe_split": {"columns": ["tenure"], "data": [[1.0]]',
    "missing column": {"dataframe_split": {"columns": ["tenure"], "data": [[1.0]]}},
    "wrong type": {"dataframe_split": {"columns": ["tenure", "plan"], "data": [["long", "basic"]]}},
    "no format key": {"rows": [[1.0, "basic"]]},
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_requests_get_a_4xx_with_a_message_and_the_server_stays_up(server: ModelServer, case: str) -> None:
    response = post_invocations(server.url, BAD_BODIES[case])
    assert 400 <= response.status_code < 500, f"{case}: {response.status_code} {response.text[:300]}"
    message = error_message(response)
    assert message and len(message) <= 300
    if case == "missing column":
        assert "plan" in message
    assert requests.get(f"{server.url}/ping", timeout=10).status_code == 200, "the server survives a bad request"


@pytest.mark.slow
def test_predict_rest_raises_with_the_server_message(server: ModelServer) -> None:
    with pytest.raises(ScoringRequestError, match=r"HTTP 400: .*plan") as caught:
        predict_rest(server.url, pd.DataFrame({"tenure": [1.0]}))
    assert caught.value.status_code == 400


@pytest.mark.slow
def test_measure_rest_times_every_request(server: ModelServer) -> None:
    frame = pd.DataFrame({"tenure": [1.0] * 10, "plan": ["basic"] * 10})
    stats, timings = measure_rest(server.url, frame, n=20, warmup=2)
    assert stats.calls == len(timings) == 20 and stats.rows_per_call == 10
    assert 0 < stats.p50_ms <= stats.p95_ms <= stats.p99_ms


@pytest.mark.slow
def test_a_second_server_with_the_same_name_is_refused(server: ModelServer, settings, tiny_model) -> None:
    with pytest.raises(ServiceError, match="already running.*stop_model_server"):
        start_model_server(str(tiny_model), settings, name=server.name)


@pytest.mark.slow
def test_stop_ends_the_process_and_frees_the_port(settings, tiny_model) -> None:
    server = start_model_server(str(tiny_model), settings, name="short-lived-model-server")
    pids = server_processes(server)
    assert pids and server.pid in pids and is_listening(server.port)
    assert stop_model_server(server, settings)
    assert server_processes(server) == [], "the server and its uvicorn worker are gone"
    assert not is_listening(server.port)
    assert not status(server.name, settings).running
    assert not stop_model_server(server, settings), "stopping twice is harmless"


@pytest.mark.slow
def test_a_model_that_cannot_load_reports_the_server_log(settings, tmp_path) -> None:
    with pytest.raises(ServiceError) as caught:
        start_model_server(str(tmp_path / "no-such-model"), settings, name="broken-model-server")
    assert "last lines of" in str(caught.value)
    assert not status("broken-model-server", settings).running
