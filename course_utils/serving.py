"""Real-time model serving on 127.0.0.1: ``mlflow models serve``, its REST API, and latency.

The deployment lessons start MLflow's own scoring server for a registered model, talk to
it over HTTP like any client would, and measure it. This module keeps those three jobs
small and explicit:

- **process**: :func:`start_model_server` runs ``mlflow models serve -m <uri> --env-manager
  local --host 127.0.0.1 --port <free port>`` through :func:`course_utils.services.start_process`
  (pid file, log file, its own process group) and :func:`stop_model_server` ends it and
  checks that the port is free again. ``--env-manager local`` means "use this virtual
  environment": no conda or virtualenv is created and nothing is downloaded.
- **requests**: :func:`request_body` builds the documented JSON formats of ``/invocations``
  (``dataframe_split``, ``dataframe_records``, ``inputs``) from a pandas frame;
  :func:`predict_rest` posts one and returns the predictions or raises
  :class:`ScoringRequestError` with the server's own message.
- **latency**: :func:`time_calls` times any callable; :func:`summarize_latency` turns the
  timings into p50/p95/p99 and throughput (:class:`LatencyStats`), so the REST server and
  in-process ``model.predict`` are measured the same way.

Example:
    >>> body = request_body(pd.DataFrame({"x": [1.0, 2.0]}), "dataframe_split")   # doctest: +SKIP
    >>> body
    {'dataframe_split': {'columns': ['x'], 'data': [[1.0], [2.0]]}}
    >>> summarize_latency([0.010, 0.012, 0.011], rows_per_call=1).p50_ms             # doctest: +SKIP
    11.0
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence

from course_utils.config import LOOPBACK, Settings, load_settings
from course_utils.ports import free_port, is_listening

if TYPE_CHECKING:
    import pandas as pd
    import requests


DEFAULT_SERVER_NAME = "model-server"
REQUEST_FORMATS = ("dataframe_split", "dataframe_records", "inputs")
RequestFormat = Literal["dataframe_split", "dataframe_records", "inputs"]
JSON_CONTENT_TYPE = "application/json"


class ScoringRequestError(RuntimeError):
    """The scoring server refused a request (a 4xx or 5xx answer); carries its status and message."""

    def __init__(self, status_code: int, message: str) -> None:
        self.status_code = status_code
        self.message = message
        super().__init__(f"HTTP {status_code}: {message}")


@dataclass(frozen=True)
class ModelServer:
    """A running ``mlflow models serve`` process started by :func:`start_model_server`."""

    name: str
    model_uri: str
    port: int
    pid: int
    log: Path

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:51234``."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def invocations_url(self) -> str:
        return f"{self.url}/invocations"


# ---------------------------------------------------------------------------------------
# The server process
# ---------------------------------------------------------------------------------------


def serve_command(model_uri: str, port: int, workers: int = 1) -> list[str]:
    """The ``mlflow models serve`` command line: local environment, loopback only, ``workers`` processes."""
    if workers < 1:
        raise ValueError(f"workers={workers}: a scoring server needs at least one worker process.")
    return [
        sys.executable, "-m", "mlflow", "models", "serve",
        "--model-uri", model_uri,
        "--env-manager", "local",  # use this venv: no conda/virtualenv is built, nothing is downloaded
        "--host", LOOPBACK,
        "--port", str(port),
        "--workers", str(workers),
    ]


def serving_env(tracking_uri: str | None = None) -> dict[str, str]:
    """Environment of the scoring server: the registry to resolve ``models:/`` URIs, no telemetry.

    ``mlflow models serve`` execs ``uvicorn`` by name, so this virtual environment's ``bin``
    folder goes first on ``PATH`` (a notebook kernel does not always have it there).
    """
    from course_utils.services import tracking_server_env

    env = dict(tracking_server_env())  # MLFLOW_DISABLE_TELEMETRY / DO_NOT_TRACK: nothing phoned home
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
        env["MLFLOW_REGISTRY_URI"] = tracking_uri
    return env


def start_model_server(
    model_uri: str,
    settings: Settings | None = None,
    *,
    tracking_uri: str | None = None,
    name: str = DEFAULT_SERVER_NAME,
    port: int | None = None,
    workers: int = 1,
    stop_at_exit: bool = True,
) -> ModelServer:
    """Start ``mlflow models serve`` for ``model_uri`` on 127.0.0.1 and wait until it answers ``/ping``.

    Args:
        model_uri: e.g. ``models:/streamly-churn@champion`` or ``runs:/<id>/model``.
        settings: where pid and log files go (default: from the environment).
        tracking_uri: the tracking/registry server that resolves ``models:/`` URIs.
        name: the service name (pid file ``workspace/run/<name>.json``); one server per name.
        port: a free loopback port (default: one the OS picks).
        workers: uvicorn worker processes (each loads the model).
        stop_at_exit: also stop the server when this Python process exits (a safety net for a
            notebook that fails before its own ``stop_model_server`` cell; still stop it yourself).

    Raises:
        course_utils.services.ServiceError: the server exited or did not answer ``/ping`` within
            ``COURSE_SERVICE_TIMEOUT`` seconds (the message shows the end of its log).
    """
    from course_utils.services import ServiceError, start_process, status

    settings = settings or load_settings()
    if status(name, settings).running:
        raise ServiceError(
            f"A model server named {name!r} is already running (see {settings.run_dir / (name + '.json')}). "
            f"Stop it first with stop_model_server({name!r}) or give another name."
        )
    port = port or free_port()
    url = f"http://{LOOPBACK}:{port}"
    # The port listens before the model is loaded; /ping answers 200 only once it is.
    started = start_process(
        name, serve_command(model_uri, port, workers), port, url, settings, env=serving_env(tracking_uri),
        ready_path="/ping", port_setting="start_model_server(..., port=None) picks a free one", stop_at_exit=stop_at_exit,
    )
    return ModelServer(name=name, model_uri=model_uri, port=port, pid=int(started.pid or 0), log=Path(started.log or ""))


def stop_model_server(server: ModelServer | str, settings: Settings | None = None, timeout_s: float = 20.0) -> bool:
    """Stop a model server (by object or name); True when a process was stopped.

    Raises:
        course_utils.services.ServiceError: something still listens on the server's port afterwards.
    """
    from course_utils.services import ServiceError, stop

    settings = settings or load_settings()
    name = server.name if isinstance(server, ModelServer) else server
    port = server.port if isinstance(server, ModelServer) else _recorded_port(name, settings)
    stopped = stop(name, settings, timeout_s=timeout_s)
    if port is not None:
        deadline = time.monotonic() + timeout_s
        while is_listening(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        if is_listening(port):
            raise ServiceError(f"Port {port} still listens after stopping {name!r}; find the process with `ss -ltnp`.")
    return stopped


def _recorded_port(name: str, settings: Settings) -> int | None:
    path = settings.run_dir / f"{name}.json"
    try:
        return int(json.loads(path.read_text())["port"])
    except (FileNotFoundError, KeyError, ValueError, TypeError):
        return None


def server_processes(server: ModelServer) -> list[int]:
    """Pids of the server and its children still alive (empty once it is stopped)."""
    import psutil

    try:
        parent = psutil.Process(server.pid)
        processes = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    return [p.pid for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


# ---------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------


def request_body(frame: pd.DataFrame, request_format: RequestFormat = "dataframe_split") -> dict[str, Any]:
    """The ``/invocations`` JSON body for ``frame`` in one of the documented formats.

    - ``dataframe_split``: ``{"dataframe_split": {"columns": [...], "data": [[...], ...]}}`` (compact)
    - ``dataframe_records``: ``{"dataframe_records": [{"col": value, ...}, ...]}`` (one dict per row)
    - ``inputs``: ``{"inputs": {"col": [values...], ...}}`` (columns as lists; tensors use plain lists)
    """
    if request_format not in REQUEST_FORMATS:
        raise ValueError(f"request_format={request_format!r}; use one of {', '.join(REQUEST_FORMATS)}.")
    # to_json + loads gives plain JSON types (numpy ints/floats, NaN -> null) in one step.
    if request_format == "dataframe_split":
        split = json.loads(frame.to_json(orient="split", index=False))
        return {"dataframe_split": {"columns": split["columns"], "data": split["data"]}}
    if request_format == "dataframe_records":
        return {"dataframe_records": json.loads(frame.to_json(orient="records"))}
    return {"inputs": {column: json.loads(frame[column].to_json(orient="values")) for column in frame.columns}}


def post_invocations(
    url: str, body: dict[str, Any] | str | bytes, session: requests.Session | None = None, timeout_s: float = 30.0
) -> requests.Response:
    """POST a body (a dict is sent as JSON, text or bytes as they are) to ``<url>/invocations``."""
    import requests

    client = session or requests
    data = json.dumps(body) if isinstance(body, dict) else body
    return client.post(
        f"{url.rstrip('/')}/invocations", data=data, headers={"Content-Type": JSON_CONTENT_TYPE}, timeout=timeout_s
    )


def predict_rest(
    url: str,
    frame: pd.DataFrame,
    request_format: RequestFormat = "dataframe_split",
    session: requests.Session | None = None,
) -> list[Any]:
    """Predictions for ``frame`` from the scoring server at ``url``.

    Raises:
        ScoringRequestError: the server answered with an error status; its message says why.
    """
    response = post_invocations(url, request_body(frame, request_format), session)
    if response.status_code != 200:
        raise ScoringRequestError(response.status_code, error_message(response))
    return response.json()["predictions"]


def error_message(response: requests.Response, limit: int = 300) -> str:
    """The readable part of a scoring server error: its ``message`` field without echoed data, shortened."""
    try:
        message = str(response.json().get("message", response.text))
    except ValueError:
        message = response.text
    message = " ".join(message.split())
    if message.startswith(("Failed to predict data", "Failed to enforce schema")) and "Error: " in message:
        # The server echoes the whole input frame first; the reason is the last "Error: ..." part.
        message = message.rsplit("Error: ", 1)[-1]
    return message if len(message) <= limit else message[: limit - 1] + "…"


# ---------------------------------------------------------------------------------------
# Latency
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LatencyStats:
    """Latency percentiles (milliseconds) and throughput of repeated calls of one kind."""

    calls: int
    rows_per_call: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    calls_per_s: float
    rows_per_s: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def time_calls(call: Callable[[], Any], n: int, warmup: int = 3) -> list[float]:
    """Seconds taken by each of ``n`` sequential calls of ``call`` (after ``warmup`` untimed calls)."""
    if n < 1:
        raise ValueError(f"n={n}: time at least one call.")
    for _ in range(warmup):
        call()
    timings = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        timings.append(time.perf_counter() - started)
    return timings


def summarize_latency(seconds: Sequence[float], rows_per_call: int = 1) -> LatencyStats:
    """p50/p95/p99 and throughput from per-call timings in seconds (sequential calls, one client)."""
    import numpy as np

    if len(seconds) == 0:
        raise ValueError("summarize_latency needs at least one timing.")
    values = np.asarray(seconds, dtype=float)
    if not np.isfinite(values).all() or (values < 0).any():
        raise ValueError("Timings must be finite, non-negative numbers of seconds.")
    total = float(values.sum())
    calls_per_s = len(values) / total if total > 0 else math.inf
    p50, p95, p99 = (float(np.percentile(values, q)) * 1000 for q in (50, 95, 99))
    return LatencyStats(
        calls=len(values),
        rows_per_call=int(rows_per_call),
        p50_ms=round(p50, 3),
        p95_ms=round(p95, 3),
        p99_ms=round(p99, 3),
        mean_ms=round(float(values.mean()) * 1000, 3),
        calls_per_s=round(calls_per_s, 1),
        rows_per_s=round(calls_per_s * rows_per_call, 1),
    )


def measure_rest(
    url: str, frame: pd.DataFrame, n: int, request_format: RequestFormat = "dataframe_split", warmup: int = 3
) -> tuple[LatencyStats, list[float]]:
    """Time ``n`` requests that each send all of ``frame`` (kept-alive connection, as a real client would).

    Returns the summary and the raw timings in seconds (for plots).
    """
    import requests

    body = json.dumps(request_body(frame, request_format))
    with requests.Session() as session:

        def call() -> None:
            response = post_invocations(url, body, session)
            if response.status_code != 200:
                raise ScoringRequestError(response.status_code, error_message(response))

        timings = time_calls(call, n, warmup)
    return summarize_latency(timings, rows_per_call=len(frame)), timings


def measure_in_process(
    predict: Callable[[pd.DataFrame], Any], frame: pd.DataFrame, n: int, warmup: int = 3
) -> tuple[LatencyStats, list[float]]:
    """Time ``n`` calls of ``predict(frame)`` in this process: the same measurement without HTTP."""
    timings = time_calls(lambda: predict(frame), n, warmup)
    return summarize_latency(timings, rows_per_call=len(frame)), timings
