"""The traffic router of module 04: a small Starlette service in front of ``mlflow models serve`` backends.

The routing decisions live in :mod:`course_utils.routing`; this module is the plumbing:

- ``POST /invocations``: choose an arm with the current policy, forward the body to
  ``<arm url>/invocations`` and return the backend's answer with an ``X-Router-Arm`` header.
  A backend that is down, too slow (``timeout_s``), answers 5xx, or answers the 400 with which
  ``mlflow models serve`` reports that the *model* raised inside ``predict``
  (:func:`failure_reason`) counts as a failure of that arm, and the next arm of
  :func:`~course_utils.routing.failover_order` is tried; any other 4xx (a malformed request)
  is passed back as it is, never retried elsewhere. When no arm answers, the router answers
  503 and says what happened to each arm.
- shadow arms get a copy of each request concurrently; both predictions are appended to the
  ``shadow_log`` JSON-lines file after the answer has gone out, so a shadow never slows a user.
- ``GET/PUT /admin/policy``: read or replace the policy (JSON). The router holds the policy in
  one attribute and every request reads it once, so a blue-green switch is a single assignment:
  each request is routed entirely by the old or entirely by the new policy.
- ``GET /metrics``: ``prometheus_client`` metrics per arm (:data:`METRIC_NAMES`) from the
  router's own ``CollectorRegistry``; ``GET /health``.

It runs as one uvicorn worker (the policy is in-process state) on 127.0.0.1 only:
``python -m course_utils.router --port 8100 --config router.json``, or in the background through
the course's process seam with :func:`start_router`.

Example:
    >>> from course_utils.routing import canary_policy
    >>> config = RouterConfig(canary_policy("http://127.0.0.1:5001", "http://127.0.0.1:5002"))
    >>> app = make_app(config)                                   # an ASGI app; serve it with uvicorn
    >>> prediction_values({"predictions": [0.2, [0.9, 0.1], {"p": 1}]})
    [0.2, 0.9, 0.1, 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import random
import sys
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Mapping

from course_utils.config import LOOPBACK, Settings
from course_utils.routing import (
    Arm,
    Outcome,
    Policy,
    PolicyError,
    arm_stats,
    choose_arm,
    failover_order,
    policy_from_dict,
    policy_to_dict,
    rollback,
    rollback_reason,
)

if TYPE_CHECKING:
    import httpx
    from prometheus_client import CollectorRegistry
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

logger = logging.getLogger(__name__)

USER_HEADER = "X-User-Id"
ARM_HEADER = "X-Router-Arm"
DEFAULT_TIMEOUT_S = 5.0
FAILURE_REASONS = ("5xx", "model_error", "timeout", "unreachable")
# ``mlflow models serve`` answers 400 with error_code BAD_REQUEST both for a malformed request and when
# the model raises inside predict: its scoring server (mlflow/pyfunc/scoring_server/__init__.py,
# ``invocations``) wraps any exception from ``model.predict`` that is not an MlflowException in an
# MlflowException with this message. Only the message tells the model's crash from the client's mistake
# (tests/unit/test_router.py checks it against the installed MLflow's own answers).
MLFLOW_PREDICT_CRASH_MESSAGE = "Encountered an unexpected error while evaluating the model"
ROLES = ("primary", "shadow")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
PREDICTION_BUCKETS = tuple(round(0.1 * step, 1) for step in range(11))  # 0.0 ... 1.0: labels or probabilities
# The names Prometheus sees; monitoring/prometheus/rules/router.yml alerts on them.
METRIC_NAMES = {
    "requests": "course_router_requests_total",
    "errors": "course_router_errors_total",
    "client_errors": "course_router_client_errors_total",
    "latency": "course_router_request_duration_seconds",
    "predictions": "course_router_prediction",
    "weight": "course_router_arm_weight",
    "rollbacks": "course_router_rollbacks_total",
}


@dataclass(frozen=True)
class RouterConfig:
    """What the router process reads from its JSON config file."""

    policy: Policy
    shadow_log: Path | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    user_header: str = USER_HEADER
    prediction_buckets: tuple[float, ...] = PREDICTION_BUCKETS


def check_shadow_log(policy: Policy, shadow_log: Path | None) -> None:
    """A policy with shadow arms needs a file to log their predictions to."""
    if policy.shadow and shadow_log is None:
        raise PolicyError(
            f"The policy has shadow arm(s) {', '.join(policy.shadow)} but the router config has no "
            "shadow_log file to write their predictions to."
        )


def config_from_dict(data: Mapping[str, Any], base_dir: Path) -> RouterConfig:
    """A RouterConfig from JSON; a relative ``shadow_log`` is taken relative to ``base_dir``."""
    unknown = sorted(set(data) - {"policy", "shadow_log", "timeout_s", "user_header", "prediction_buckets"})
    if unknown:
        raise PolicyError(f"Unknown router config field(s): {', '.join(unknown)}.")
    if "policy" not in data:
        raise PolicyError("The router config needs a 'policy' object.")
    shadow_log = Path(data["shadow_log"]) if data.get("shadow_log") else None
    if shadow_log is not None and not shadow_log.is_absolute():
        shadow_log = base_dir / shadow_log
    timeout_s = float(data.get("timeout_s", DEFAULT_TIMEOUT_S))
    if not timeout_s > 0:
        raise PolicyError(f"timeout_s={timeout_s!r} must be a positive number of seconds.")
    config = RouterConfig(
        policy=policy_from_dict(data["policy"]),
        shadow_log=shadow_log,
        timeout_s=timeout_s,
        user_header=str(data.get("user_header", USER_HEADER)),
        prediction_buckets=tuple(float(b) for b in data.get("prediction_buckets", PREDICTION_BUCKETS)),
    )
    check_shadow_log(config.policy, config.shadow_log)
    return config


def load_config(path: Path) -> RouterConfig:
    """Read the router's JSON config file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise PolicyError(f"{path} is not valid JSON: {error}.") from None
    return config_from_dict(data, path.parent)


def write_config(path: Path, config: RouterConfig) -> Path:
    """Write ``config`` as the JSON file ``python -m course_utils.router --config`` reads."""
    data: dict[str, Any] = {
        "policy": policy_to_dict(config.policy),
        "timeout_s": config.timeout_s,
        "user_header": config.user_header,
        "prediction_buckets": list(config.prediction_buckets),
    }
    if config.shadow_log is not None:
        data["shadow_log"] = str(config.shadow_log)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    return path


# --- responses and predictions ---------------------------------------------------------------


def is_mlflow_predict_crash(body: bytes) -> bool:
    """True when ``body`` is MLflow's error for a model that raised inside ``predict`` (sent with status 400).

    Other 400s of ``mlflow models serve`` are the request's fault and say so: no known input
    format ("The input must be a JSON dictionary with exactly one of the input fields ..."),
    invalid JSON or values that do not convert ("Invalid input. ..."), columns that do not fit the
    model's signature (INVALID_PARAMETER_VALUE, "Failed to predict data ... Failed to enforce
    schema ..."). A model that raises an MlflowException itself gets the status of the error code
    it chose, so that choice is respected. Caveat: a model *without* a signature can also crash on
    input that is the client's mistake; MLflow checks a signature before ``predict`` runs, so with
    one, a crash in ``predict`` is the model's.

    Example:
        >>> is_mlflow_predict_crash(b'{"error_code": "BAD_REQUEST", "message": "Encountered an unexpected error '
        ...                         b'while evaluating the model. Verify that ..."}')
        True
        >>> is_mlflow_predict_crash(b'{"error_code": "BAD_REQUEST", "message": "The input must be a JSON dictionary ..."}')
        False
    """
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return (
        isinstance(payload, dict)
        and payload.get("error_code") == "BAD_REQUEST"
        and str(payload.get("message", "")).startswith(MLFLOW_PREDICT_CRASH_MESSAGE)
    )


def failure_reason(status_code: int, body: bytes = b"") -> str | None:
    """Why an arm's answer is the arm's failure, or None when the arm answered (2xx) or the client erred (4xx).

    ``"5xx"`` for a server error; ``"model_error"`` for the 400 with which ``mlflow models serve``
    reports that the model crashed in ``predict`` (:func:`is_mlflow_predict_crash`): a failure of
    the backend, whatever the status code says, so it is retried on another arm and counts towards
    a rollback. Any other 4xx is the request's fault, passed back and never retried.
    """
    if status_code >= 500:
        return "5xx"
    if status_code == 400 and is_mlflow_predict_crash(body):
        return "model_error"
    return None


def prediction_values(payload: Any) -> list[float]:
    """Every finite number in an ``/invocations`` answer's ``predictions`` (lists and dicts flattened)."""
    predictions = payload.get("predictions", payload) if isinstance(payload, dict) else payload
    values: list[float] = []
    pending = [predictions]
    while pending:
        item = pending.pop(0)
        if isinstance(item, (bool, int, float)) and math.isfinite(float(item)):
            values.append(float(item))
        elif isinstance(item, list):
            pending[:0] = item  # keep the answer's order
        elif isinstance(item, dict):
            pending[:0] = list(item.values())
    return values


def _predictions_of(body: bytes) -> Any:
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return payload.get("predictions") if isinstance(payload, dict) else payload


@dataclass(frozen=True)
class Attempt:
    """One request forwarded to one arm and what came back (``failure`` is None when the arm answered)."""

    arm: Arm
    role: str
    seconds: float
    status_code: int | None = None
    body: bytes = b""
    content_type: str = "application/json"
    failure: str | None = None

    def as_log(self) -> dict[str, Any]:
        return {
            "arm": self.arm.name,
            "status": self.status_code,
            "seconds": round(self.seconds, 6),
            "predictions": _predictions_of(self.body) if self.failure is None else None,
            "error": self.failure,
        }


# --- metrics ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RouterMetrics:
    """The router's Prometheus metrics, in a registry of their own (never the process-global one)."""

    registry: CollectorRegistry
    requests: Any
    errors: Any
    client_errors: Any
    latency: Any
    predictions: Any
    weight: Any
    rollbacks: Any


def build_metrics(prediction_buckets: tuple[float, ...] = PREDICTION_BUCKETS) -> RouterMetrics:
    """Fresh metrics in a fresh CollectorRegistry (two routers in one process never share counts)."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

    registry = CollectorRegistry()

    def name(key: str) -> str:
        return METRIC_NAMES[key].removesuffix("_total")  # prometheus_client appends _total to counters

    return RouterMetrics(
        registry=registry,
        requests=Counter(name("requests"), "Requests forwarded to an arm", ["arm", "role"], registry=registry),
        errors=Counter(name("errors"), "Arm failures: 5xx, model_error (MLflow's 400 for a crash in predict), timeout, unreachable",
                       ["arm", "role", "reason"], registry=registry),
        client_errors=Counter(name("client_errors"), "4xx answers passed back to the client", ["arm", "role"], registry=registry),
        latency=Histogram(name("latency"), "Seconds an arm took to answer or fail", ["arm", "role"],
                          buckets=LATENCY_BUCKETS, registry=registry),
        predictions=Histogram(name("predictions"), "Predicted values per arm", ["arm", "role"],
                              buckets=prediction_buckets, registry=registry),
        weight=Gauge(name("weight"), "Current routing weight of an arm", ["arm"], registry=registry),
        rollbacks=Counter(name("rollbacks"), "Automatic rollbacks of an arm", ["arm"], registry=registry),
    )


def _show_arms(metrics: RouterMetrics, policy: Policy) -> None:
    """Create every arm's series at 0, so ``/metrics`` lists each arm before its first request."""
    for arm in policy.arms:
        role = "shadow" if arm.name in policy.shadow else "primary"
        metrics.requests.labels(arm.name, role)
        metrics.latency.labels(arm.name, role)
        metrics.client_errors.labels(arm.name, role)
        for reason in FAILURE_REASONS:
            metrics.errors.labels(arm.name, role, reason)
        metrics.weight.labels(arm.name).set(arm.weight)


def _record(metrics: RouterMetrics, attempt: Attempt) -> None:
    labels = (attempt.arm.name, attempt.role)
    metrics.requests.labels(*labels).inc()
    metrics.latency.labels(*labels).observe(attempt.seconds)
    if attempt.failure is not None:
        metrics.errors.labels(*labels, attempt.failure).inc()
    elif attempt.status_code is not None and attempt.status_code >= 400:
        metrics.client_errors.labels(*labels).inc()
    else:
        histogram = metrics.predictions.labels(*labels)
        for value in prediction_values(_predictions_of(attempt.body)):
            histogram.observe(value)


# --- the router ------------------------------------------------------------------------------


class Router:
    """The router's state: the current policy (swapped whole), an HTTP client, metrics, rollback windows."""

    def __init__(self, config: RouterConfig, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self.policy = config.policy
        self.metrics = build_metrics(config.prediction_buckets)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._windows: dict[str, deque[Outcome]] = {}
        self._random = random.Random()
        _show_arms(self.metrics, self.policy)

    # -- lifecycle --

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:  # noqa: ARG002 (Starlette's signature)
        import httpx

        # trust_env=False: backends are on loopback; a proxy from the environment would only get in the way.
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(self.config.timeout_s), transport=self._transport, trust_env=False)
        try:
            yield
        finally:
            await self._client.aclose()
            self._client = None

    # -- policy --

    def replace_policy(self, policy: Policy) -> None:
        """Swap the policy in one assignment (the blue-green switch); rollback windows start afresh."""
        check_shadow_log(policy, self.config.shadow_log)
        for arm in self.policy.arms:
            if all(arm.name != new.name for new in policy.arms):
                self.metrics.weight.labels(arm.name).set(0)
        self._windows = {}
        _show_arms(self.metrics, policy)
        self.policy = policy

    def _judge(self, attempt: Attempt) -> None:
        """Feed the rollback rule; roll the arm back when its recent record breaks the rule."""
        rule = self.policy.rollback
        if rule is None or attempt.role != "primary" or attempt.arm.name != rule.arm:
            return
        window = self._windows.setdefault(rule.arm, deque(maxlen=rule.window))
        window.append(Outcome(attempt.failure is not None, attempt.seconds))
        reason = rollback_reason(arm_stats(window), rule)
        if reason is not None:
            try:
                rolled_back = rollback(self.policy, rule.arm)
            except PolicyError as error:  # never fail the user's request over it; keep the failover
                logger.error("cannot roll back arm %s (%s): %s", rule.arm, reason, error)
                return
            logger.warning("rolling back arm %s: %s", rule.arm, reason)
            self.metrics.rollbacks.labels(rule.arm).inc()
            self.replace_policy(rolled_back)

    # -- forwarding --

    async def _forward(self, arm: Arm, role: str, body: bytes, content_type: str) -> Attempt:
        import httpx

        assert self._client is not None, "the router's HTTP client exists only while the app runs (lifespan)"
        started = time.perf_counter()
        try:
            response = await self._client.post(
                f"{arm.url.rstrip('/')}/invocations", content=body, headers={"Content-Type": content_type}
            )
        except httpx.TimeoutException:
            return Attempt(arm, role, time.perf_counter() - started, failure="timeout")
        except httpx.TransportError:
            return Attempt(arm, role, time.perf_counter() - started, failure="unreachable")
        return Attempt(
            arm, role, time.perf_counter() - started, response.status_code, response.content,
            response.headers.get("content-type", "application/json"), failure_reason(response.status_code, response.content),
        )

    async def _serve(self, policy: Policy, chosen: Arm, body: bytes, content_type: str) -> list[Attempt]:
        """Try arms in failover order until one answers (2xx, or a 4xx that is the client's); returns every attempt made."""
        attempts: list[Attempt] = []
        for arm in failover_order(policy, chosen):
            attempt = await self._forward(arm, "primary", body, content_type)
            _record(self.metrics, attempt)
            self._judge(attempt)
            attempts.append(attempt)
            if attempt.failure is None:
                break
            logger.info("arm %s failed (%s); trying the next arm", arm.name, attempt.failure)
        return attempts

    async def invocations(self, request: Request) -> Response:
        from starlette.background import BackgroundTask
        from starlette.responses import JSONResponse, Response

        policy = self.policy  # read once: this request is routed by one policy, whatever a switch does meanwhile
        body = await request.body()
        content_type = request.headers.get("content-type", "application/json")
        user_id = request.headers.get(self.config.user_header)
        chosen = choose_arm(policy, user_id=user_id, draw=self._random.random())
        shadows = [
            asyncio.create_task(self._forward(policy.arm(name), "shadow", body, content_type)) for name in policy.shadow
        ]
        attempts = await self._serve(policy, chosen, body, content_type)
        background = BackgroundTask(self._log_shadows, user_id, attempts[-1], shadows) if shadows else None
        answered = attempts[-1]
        if answered.failure is not None:
            summary = "; ".join(f"{a.arm.name}: {a.failure}" for a in attempts)
            return JSONResponse({"error": f"No arm answered ({summary})."}, status_code=503, background=background)
        return Response(
            answered.body, status_code=answered.status_code or 200, media_type=answered.content_type,
            headers={ARM_HEADER: answered.arm.name}, background=background,
        )

    async def _log_shadows(self, user_id: str | None, primary: Attempt, shadows: list[asyncio.Task[Attempt]]) -> None:
        """After the answer went out: wait for the shadows, count them, log both predictions."""
        results = await asyncio.gather(*shadows)
        for attempt in results:
            _record(self.metrics, attempt)
        record = {
            "time": datetime.now(timezone.utc).isoformat(),
            "request_id": str(uuid.uuid4()),
            "user_id": user_id,
            "primary": primary.as_log(),
            "shadows": [attempt.as_log() for attempt in results],
        }
        assert self.config.shadow_log is not None  # check_shadow_log guarantees it for shadow policies
        self.config.shadow_log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.config.shadow_log, "a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")

    # -- small endpoints --

    async def health(self, request: Request) -> Response:  # noqa: ARG002
        from starlette.responses import JSONResponse

        policy = self.policy
        return JSONResponse({"status": "ok", "mode": policy.mode, "arms": {a.name: a.weight for a in policy.arms}})

    async def metrics_endpoint(self, request: Request) -> Response:  # noqa: ARG002
        from prometheus_client import generate_latest
        from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
        from starlette.responses import Response

        # The 0.0.4 text format: what Debian's Prometheus 2.x expects to scrape.
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_PLAIN_0_0_4)

    async def get_policy(self, request: Request) -> Response:  # noqa: ARG002
        from starlette.responses import JSONResponse

        return JSONResponse(policy_to_dict(self.policy))

    async def put_policy(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        try:
            policy = policy_from_dict(json.loads(await request.body()))
            self.replace_policy(policy)
        except json.JSONDecodeError as error:
            return JSONResponse({"error": f"The policy is not valid JSON: {error}."}, status_code=400)
        except PolicyError as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        logger.info("policy replaced: %s", policy_to_dict(policy))
        return JSONResponse(policy_to_dict(policy))


def make_app(config: RouterConfig, transport: httpx.AsyncBaseTransport | None = None) -> Starlette:
    """The router as an ASGI app (``app.state.router`` is its :class:`Router`); ``transport`` is for tests."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    router = Router(config, transport)
    app = Starlette(
        routes=[
            Route("/invocations", router.invocations, methods=["POST"]),
            Route("/health", router.health, methods=["GET"]),
            Route("/metrics", router.metrics_endpoint, methods=["GET"]),
            Route("/admin/policy", router.get_policy, methods=["GET"]),
            Route("/admin/policy", router.put_policy, methods=["PUT"]),
        ],
        lifespan=router.lifespan,
    )
    app.state.router = router
    return app


# --- process management ----------------------------------------------------------------------


def router_command(config_path: Path, port: int) -> list[str]:
    """The command line of a router process on 127.0.0.1:``port``."""
    return [sys.executable, "-m", "course_utils.router", "--port", str(port), "--config", str(config_path)]


def start_router(name: str, config_path: Path, port: int, settings: Settings) -> Any:
    """Start the router in the background through the course's process seam; returns its ServiceStatus.

    Ready once ``GET /health`` answers 200. Stop it with ``course_utils.services.stop(name, settings)``.
    """
    from course_utils.services import start_process

    load_config(config_path)  # fail here, with the config's own error, rather than in a log file
    url = f"http://{LOOPBACK}:{port}"
    return start_process(name, router_command(config_path, port), port, url, settings,
                         env={"PYTHONUNBUFFERED": "1"}, ready_path="/health")


def put_policy(router_url: str, policy: Policy, timeout_s: float = 10.0) -> Policy:
    """Replace a running router's policy (``PUT /admin/policy``); raises PolicyError with the router's reason."""
    import httpx

    response = httpx.put(f"{router_url.rstrip('/')}/admin/policy", json=policy_to_dict(policy), timeout=timeout_s, trust_env=False)
    if response.status_code != 200:
        raise PolicyError(f"The router at {router_url} refused the policy ({response.status_code}): {response.text}")
    return policy_from_dict(response.json())


def get_policy(router_url: str, timeout_s: float = 10.0) -> Policy:
    """A running router's current policy (``GET /admin/policy``)."""
    import httpx

    response = httpx.get(f"{router_url.rstrip('/')}/admin/policy", timeout=timeout_s, trust_env=False)
    response.raise_for_status()
    return policy_from_dict(response.json())


def _main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="Traffic router for mlflow models serve backends (127.0.0.1 only).")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--config", type=Path, required=True, help="JSON file: policy, shadow_log, timeout_s")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = make_app(load_config(args.config))
    # One worker: the policy and the rollback windows are this process's state.
    uvicorn.run(app, host=LOOPBACK, port=args.port, workers=1, access_log=False, log_level="info")


if __name__ == "__main__":
    _main()
