"""The router over real HTTP: backends and the router run as uvicorn servers on 127.0.0.1 free ports.

Backends are tiny Starlette apps that answer like ``mlflow models serve`` (``{"predictions": [...]}``,
a 400 with MLflow's error shape for a malformed body) or misbehave on purpose: answer 500, answer
too late, or not listen at all. MLflow's own scoring app (``mlflow.pyfunc.scoring_server.init``,
what ``mlflow models serve`` runs) serves a model with a bug in ``predict``, in process, to check
the router against MLflow's real 400s: a crash in ``predict`` versus a malformed request. The last
tests start the router through the course's process seam and, marked slow, route between two real
``mlflow models serve`` backends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from course_utils.config import LOOPBACK
from course_utils.ports import free_port, is_port_free
from course_utils.router import (
    ARM_HEADER,
    FAILURE_REASONS,
    METRIC_NAMES,
    MLFLOW_PREDICT_CRASH_MESSAGE,
    RouterConfig,
    build_metrics,
    config_from_dict,
    failure_reason,
    get_policy,
    load_config,
    make_app,
    prediction_values,
    put_policy,
    start_router,
    write_config,
)
from course_utils.routing import (
    Arm,
    Policy,
    PolicyError,
    RollbackRule,
    ab_policy,
    blue_green_policy,
    canary_policy,
    choose_arm,
    policy_to_dict,
    shadow_policy,
    switch_to,
    weighted_policy,
)

TIMEOUT_S = 0.5  # the router's per-backend timeout in these tests; the slow backend takes 4x longer
BODY = {"dataframe_split": {"columns": ["x"], "data": [[1.0], [2.0]]}}
BAD_BODY_MESSAGE = {"error_code": "BAD_REQUEST", "message": "Invalid input. Expected dataframe_split."}
# For the model with a bug (``mlflow_app``): x = 1 and 2 are in its lookup table, 3 is not (KeyError in predict).
IN_TABLE = {"dataframe_split": {"columns": ["x"], "data": [[1.0], [2.0]]}}
NOT_IN_TABLE = {"dataframe_split": {"columns": ["x"], "data": [[3.0]]}}
MALFORMED_FOR_MLFLOW = {
    "no input format": {"no_such_format": []},
    "not the signature's type": {"dataframe_split": {"columns": ["x"], "data": [["abc"]]}},
    "missing column": {"dataframe_split": {"columns": ["y"], "data": [[1.0]]}},
}


# --- servers in threads ----------------------------------------------------------------------


@contextlib.contextmanager
def serve(app: Starlette, port: int | None = None) -> Iterator[str]:
    """Run ``app`` with uvicorn on 127.0.0.1 in a thread; yields its base URL, stops it afterwards."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host=LOOPBACK, port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"test server on port {port} did not start")
        time.sleep(0.01)
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def backend(prediction: float, status_code: int = 200, delay_s: float = 0.0) -> Starlette:
    """A stand-in for ``mlflow models serve``: one prediction per row, or a 400 for a body without ``dataframe_split``."""

    async def invocations(request: Request) -> JSONResponse:
        if delay_s:
            await asyncio.sleep(delay_s)
        if status_code != 200:
            return JSONResponse({"error_code": "INTERNAL_ERROR", "message": "model crashed"}, status_code=status_code)
        payload = json.loads(await request.body())
        if "dataframe_split" not in payload:
            return JSONResponse(BAD_BODY_MESSAGE, status_code=400)
        rows = len(payload["dataframe_split"]["data"])
        return JSONResponse({"predictions": [prediction] * rows})

    return Starlette(routes=[Route("/invocations", invocations, methods=["POST"])])


@pytest.fixture(scope="module")
def backends() -> Iterator[dict[str, str]]:
    """Base URLs: blue predicts 0.1, green 0.9; failing answers 500; slow answers after 2 s; down does not listen."""
    with contextlib.ExitStack() as stack:
        urls = {
            "blue": stack.enter_context(serve(backend(0.1))),
            "green": stack.enter_context(serve(backend(0.9))),
            "failing": stack.enter_context(serve(backend(0.5, status_code=500))),
            "slow": stack.enter_context(serve(backend(0.5, delay_s=4 * TIMEOUT_S))),
            "down": f"http://{LOOPBACK}:{free_port()}",  # nothing listens there
        }
        yield urls


@contextlib.contextmanager
def router(policy: Policy, shadow_log: Path | None = None) -> Iterator[tuple[str, httpx.Client]]:
    """A router for ``policy`` on a free port and a client for it (no proxies: loopback only)."""
    app = make_app(RouterConfig(policy, shadow_log=shadow_log, timeout_s=TIMEOUT_S))
    with serve(app) as url, httpx.Client(base_url=url, trust_env=False, timeout=30) as client:
        yield url, client


# MLflow advises type hints on predict the first time the served model predicts (in the server's thread).
IGNORE_MLFLOW_TYPE_HINT_ADVICE = pytest.mark.filterwarnings("ignore:.*Add type hints to the `predict` method:UserWarning")


@pytest.fixture(scope="module")
def mlflow_app(tmp_path_factory: pytest.TempPathFactory) -> Starlette:
    """MLflow's own scoring app for a pyfunc whose ``predict`` raises KeyError for x outside its lookup table."""
    import mlflow
    from mlflow.environment_variables import _MLFLOW_IS_IN_SERVING_ENVIRONMENT
    from mlflow.models import ModelSignature
    from mlflow.pyfunc import scoring_server
    from mlflow.types import ColSpec, Schema

    path = tmp_path_factory.mktemp("mlflow-model") / "lookup"
    signature = ModelSignature(inputs=Schema([ColSpec("double", "x")]), outputs=Schema([ColSpec("double")]))
    with warnings.catch_warnings():  # MLflow's advice on type hints and input examples, not this test's subject
        warnings.simplefilter("ignore", UserWarning)

        class LookupModel(mlflow.pyfunc.PythonModel):
            """A release bug: a value missing from the lookup table raises inside predict."""

            def predict(self, context, model_input, params=None):  # noqa: ARG002 (pyfunc's signature)
                return [{1.0: 0.2, 2.0: 0.8}[x] for x in model_input["x"]]

        mlflow.pyfunc.save_model(str(path), python_model=LookupModel(), signature=signature)
        model = mlflow.pyfunc.load_model(str(path))
    flag = _MLFLOW_IS_IN_SERVING_ENVIRONMENT.name
    before = os.environ.get(flag)
    app = scoring_server.init(model)  # sets the serving flag in os.environ; this test process is no server
    if before is None:
        os.environ.pop(flag, None)
    else:
        os.environ[flag] = before
    return app


@pytest.fixture(scope="module")
def mlflow_backend(mlflow_app: Starlette) -> Iterator[str]:
    """The base URL of ``mlflow_app`` served by uvicorn on 127.0.0.1 (what ``mlflow models serve`` runs)."""
    with serve(mlflow_app) as url:
        yield url


def policy_of(mode: str = "weighted", **weights_and_urls: tuple[str, float]) -> Policy:
    return Policy(mode, tuple(Arm(name, url, weight) for name, (url, weight) in weights_and_urls.items()))  # type: ignore[arg-type]


def metric(client: httpx.Client, name: str, **labels: str) -> float:
    """The value of one sample on the router's ``/metrics`` (0.0 when the series is absent)."""
    text = client.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


# --- pure helpers ----------------------------------------------------------------------------


def test_prediction_values_flattens_numbers_of_every_mlflow_answer_shape() -> None:
    assert prediction_values({"predictions": [1, 0, 1]}) == [1.0, 0.0, 1.0]
    assert prediction_values({"predictions": [[0.2, 0.8]]}) == [0.2, 0.8]
    assert prediction_values({"predictions": [{"label": 1, "name": "churn"}]}) == [1.0]
    assert prediction_values([0.5, float("nan"), "x", None]) == [0.5]


def test_only_5xx_is_an_arm_failure() -> None:
    assert [failure_reason(code) for code in (200, 400, 404, 422, 500, 503)] == [None, None, None, None, "5xx", "5xx"]


def test_a_400_is_an_arm_failure_only_with_mlflows_body_for_a_crash_in_predict() -> None:
    crash = {"error_code": "BAD_REQUEST", "message": f"{MLFLOW_PREDICT_CRASH_MESSAGE}. Verify that the serialized input "
             "Dataframe is compatible with the model for inference.", "stack_trace": "Traceback ...\nKeyError: 3.0\n"}
    schema = {"error_code": "INVALID_PARAMETER_VALUE", "message": "Failed to predict data '   y\n0  1.0'. \nError: Failed to "
              "enforce schema of data '   y\n0  1.0' with schema '['x': double (required)]'."}
    assert failure_reason(400, json.dumps(crash).encode()) == "model_error"
    assert failure_reason(400, json.dumps(BAD_BODY_MESSAGE).encode()) is None
    assert failure_reason(400, json.dumps(schema).encode()) is None  # raised inside predict, but by the signature check
    assert failure_reason(400, json.dumps(crash | {"error_code": "INVALID_PARAMETER_VALUE"}).encode()) is None
    assert failure_reason(422, json.dumps(crash).encode()) is None  # only MLflow's status for it
    assert failure_reason(400, b"not json") is None and failure_reason(400, b"[1, 2]") is None
    assert failure_reason(500, json.dumps(BAD_BODY_MESSAGE).encode()) == "5xx"


@IGNORE_MLFLOW_TYPE_HINT_ADVICE
def test_mlflows_real_400s_tell_a_crash_in_predict_from_a_malformed_request(mlflow_backend: str) -> None:
    """The installed MLflow's own answers: if its wording changes, this fails before the router misjudges."""
    with httpx.Client(base_url=mlflow_backend, trust_env=False, timeout=30) as client:
        answered = client.post("/invocations", json=IN_TABLE)
        crashed = client.post("/invocations", json=NOT_IN_TABLE)
        malformed = {name: client.post("/invocations", json=body) for name, body in MALFORMED_FOR_MLFLOW.items()}
        malformed["not JSON"] = client.post("/invocations", content=b"{", headers={"Content-Type": "application/json"})
    assert (answered.status_code, answered.json()) == (200, {"predictions": [0.2, 0.8]})
    assert crashed.status_code == 400 and crashed.json()["error_code"] == "BAD_REQUEST"
    assert "KeyError: 3.0" in crashed.json()["stack_trace"]  # the model's own exception, behind MLflow's 400
    assert failure_reason(crashed.status_code, crashed.content) == "model_error"
    for name, answer in malformed.items():
        assert answer.status_code == 400, name
        assert failure_reason(answer.status_code, answer.content) is None, (name, answer.json()["message"])


def test_config_resolves_shadow_log_next_to_the_config_file(tmp_path: Path) -> None:
    config = RouterConfig(shadow_policy("http://127.0.0.1:1", "http://127.0.0.1:2"), shadow_log=Path("shadow.jsonl"))
    path = write_config(tmp_path / "router.json", config)
    loaded = load_config(path)
    assert loaded.shadow_log == tmp_path / "shadow.jsonl"
    assert loaded.policy == config.policy


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "The router config needs a 'policy' object."),
        ({"policy": {}, "port": 1}, "Unknown router config field(s): port."),
        ({"policy": policy_to_dict(blue_green_policy("http://a", "http://b")), "timeout_s": 0}, "timeout_s=0.0 must be a positive number of seconds."),
        ({"policy": policy_to_dict(shadow_policy("http://a", "http://b"))},
         "The policy has shadow arm(s) shadow but the router config has no shadow_log file to write their predictions to."),
    ],
)
def test_bad_router_configs_are_refused_with_the_reason(data: dict, message: str, tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as error:
        config_from_dict(data, tmp_path)
    assert str(error.value) == message


def test_config_that_is_not_json_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "router.json"
    path.write_text("{policy:")
    with pytest.raises(PolicyError, match=rf"^{path} is not valid JSON: "):
        load_config(path)


def test_each_router_has_its_own_registry_not_the_global_one() -> None:
    from prometheus_client import REGISTRY

    first, second = build_metrics(), build_metrics()
    first.requests.labels("blue", "primary").inc()
    assert second.registry.get_sample_value(METRIC_NAMES["requests"], {"arm": "blue", "role": "primary"}) is None
    assert first.registry.get_sample_value(METRIC_NAMES["requests"], {"arm": "blue", "role": "primary"}) == 1.0
    assert REGISTRY.get_sample_value(METRIC_NAMES["requests"], {"arm": "blue", "role": "primary"}) is None


# --- routing over HTTP -----------------------------------------------------------------------


def test_request_is_answered_by_the_chosen_backend_and_tagged_with_its_arm(backends: dict[str, str]) -> None:
    with router(blue_green_policy(backends["blue"], backends["green"], live="green")) as (_, client):
        response = client.post("/invocations", json=BODY)
    assert response.status_code == 200
    assert response.json() == {"predictions": [0.9, 0.9]}
    assert response.headers[ARM_HEADER] == "green"


@pytest.mark.parametrize(("bad", "reason"), [("down", "unreachable"), ("slow", "timeout"), ("failing", "5xx")])
def test_a_bad_backend_is_counted_and_a_healthy_arm_answers(backends: dict[str, str], bad: str, reason: str) -> None:
    policy = policy_of(bad=(backends[bad], 1.0), blue=(backends["blue"], 0.0))
    with router(policy) as (_, client):
        answers = [client.post("/invocations", json=BODY) for _ in range(3)]
        assert [(a.status_code, a.headers[ARM_HEADER], a.json()) for a in answers] == [(200, "blue", {"predictions": [0.1, 0.1]})] * 3
        assert metric(client, METRIC_NAMES["errors"], arm="bad", role="primary", reason=reason) == 3
        assert metric(client, METRIC_NAMES["requests"], arm="bad", role="primary") == 3
        assert metric(client, METRIC_NAMES["requests"], arm="blue", role="primary") == 3
        assert metric(client, METRIC_NAMES["errors"], arm="blue", role="primary", reason=reason) == 0


def test_a_malformed_request_gets_the_backends_4xx_and_is_not_retried(backends: dict[str, str]) -> None:
    policy = policy_of(blue=(backends["blue"], 1.0), green=(backends["green"], 0.0))
    with router(policy) as (_, client):
        response = client.post("/invocations", json={"rows": [1, 2]})
        assert response.status_code == 400
        assert response.json() == BAD_BODY_MESSAGE
        assert response.headers[ARM_HEADER] == "blue"
        assert metric(client, METRIC_NAMES["client_errors"], arm="blue", role="primary") == 1
        assert metric(client, METRIC_NAMES["requests"], arm="green", role="primary") == 0
        assert sum(metric(client, METRIC_NAMES["errors"], arm="blue", reason=r) for r in FAILURE_REASONS) == 0


@IGNORE_MLFLOW_TYPE_HINT_ADVICE
def test_a_malformed_request_to_a_real_mlflow_backend_gets_its_400_and_is_not_retried(
    mlflow_backend: str, backends: dict[str, str]
) -> None:
    direct = httpx.post(f"{mlflow_backend}/invocations", json=MALFORMED_FOR_MLFLOW["no input format"], trust_env=False, timeout=30)
    policy = policy_of(mlflow=(mlflow_backend, 1.0), blue=(backends["blue"], 0.0))
    with router(policy) as (_, client):
        response = client.post("/invocations", json=MALFORMED_FOR_MLFLOW["no input format"])
        assert (response.status_code, response.json()) == (400, direct.json())
        assert response.headers[ARM_HEADER] == "mlflow"
        assert metric(client, METRIC_NAMES["client_errors"], arm="mlflow", role="primary") == 1
        assert metric(client, METRIC_NAMES["requests"], arm="blue", role="primary") == 0
        assert sum(metric(client, METRIC_NAMES["errors"], arm="mlflow", reason=r) for r in FAILURE_REASONS) == 0


@IGNORE_MLFLOW_TYPE_HINT_ADVICE
def test_a_model_crashing_in_predict_behind_mlflows_400_is_a_backend_failure_the_canary_rolls_back(
    mlflow_backend: str, backends: dict[str, str]
) -> None:
    policy = replace(canary_policy(backends["blue"], mlflow_backend, percent=50),
                     rollback=RollbackRule("canary", max_error_rate=0.05, min_requests=5, window=20))
    with router(policy) as (url, client):
        answers = [client.post("/invocations", json=NOT_IN_TABLE) for _ in range(40)]
        after = get_policy(url)
        crashes = metric(client, METRIC_NAMES["errors"], arm="canary", role="primary", reason="model_error")
        assert crashes == metric(client, METRIC_NAMES["requests"], arm="canary", role="primary")
        assert 5 <= crashes < 40  # rolled back once it had served min_requests, long before the end
        assert metric(client, METRIC_NAMES["client_errors"], arm="canary", role="primary") == 0
        assert metric(client, METRIC_NAMES["rollbacks"], arm="canary") == 1
    # every crash was retried on the stable arm: no user saw MLflow's 400
    assert {(a.status_code, a.headers[ARM_HEADER], json.dumps(a.json())) for a in answers} == {(200, "stable", '{"predictions": [0.1]}')}
    assert {arm.name: arm.weight for arm in after.arms} == {"stable": 50.0, "canary": 0.0}


@IGNORE_MLFLOW_TYPE_HINT_ADVICE
def test_when_every_arm_crashes_in_predict_the_router_says_so(mlflow_backend: str) -> None:
    policy = replace(policy_of(mlflow=(mlflow_backend, 1.0)), failover=False)
    with router(policy) as (_, client):
        response = client.post("/invocations", json=NOT_IN_TABLE)
    assert (response.status_code, response.json()) == (503, {"error": "No arm answered (mlflow: model_error)."})


def test_when_every_arm_fails_the_router_says_what_happened_to_each(backends: dict[str, str]) -> None:
    policy = policy_of(down=(backends["down"], 1.0), failing=(backends["failing"], 0.0))
    with router(policy) as (_, client):
        response = client.post("/invocations", json=BODY)
        assert client.get("/health").status_code == 200  # the router itself stays up
    assert response.status_code == 503
    assert response.json() == {"error": "No arm answered (down: unreachable; failing: 5xx)."}


def test_failover_off_passes_the_failure_on(backends: dict[str, str]) -> None:
    policy = replace(policy_of(failing=(backends["failing"], 1.0), blue=(backends["blue"], 0.0)), failover=False)
    with router(policy) as (_, client):
        response = client.post("/invocations", json=BODY)
    assert response.status_code == 503
    assert response.json() == {"error": "No arm answered (failing: 5xx)."}


def test_sticky_users_always_get_the_same_arm_the_policy_predicts(backends: dict[str, str]) -> None:
    policy = ab_policy(backends["blue"], backends["green"], salt="exp-1")
    seen: dict[str, set[str]] = {}
    with router(policy) as (_, client):
        for _round in range(3):
            for user in (f"user-{i}" for i in range(40)):
                answer = client.post("/invocations", json=BODY, headers={"X-User-Id": user})
                seen.setdefault(user, set()).add(answer.headers[ARM_HEADER])
    assert all(len(arms) == 1 for arms in seen.values())
    assert {user: arms.pop() for user, arms in seen.items()} == {
        user: choose_arm(policy, user_id=user).name for user in seen
    }
    assert set(Counter(choose_arm(policy, user_id=u).name for u in seen)) == {"a", "b"}


def test_shadow_is_logged_but_never_changes_the_answer(backends: dict[str, str], tmp_path: Path) -> None:
    log = tmp_path / "shadow.jsonl"
    with router(blue_green_policy(backends["blue"], backends["green"], live="blue")) as (_, client):
        expected = [client.post("/invocations", json=BODY).json() for _ in range(3)]
    policy = shadow_policy(backends["blue"], backends["green"])
    with router(policy, shadow_log=log) as (_, client):
        answers = [client.post("/invocations", json=BODY) for _ in range(3)]
        assert [a.json() for a in answers] == expected
        assert {a.headers[ARM_HEADER] for a in answers} == {"primary"}
        deadline = time.monotonic() + 10  # the log line is written after the answer went out
        while (not log.exists() or len(log.read_text().splitlines()) < 3) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert metric(client, METRIC_NAMES["requests"], arm="shadow", role="shadow") == 3
        assert metric(client, METRIC_NAMES["predictions"] + "_count", arm="shadow", role="shadow") == 6
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["primary"]["arm"], r["primary"]["predictions"]) for r in records] == [("primary", [0.1, 0.1])] * 3
    assert [[(s["arm"], s["predictions"], s["error"]) for s in r["shadows"]] for r in records] == [[("shadow", [0.9, 0.9], None)]] * 3


def test_a_failing_shadow_is_logged_and_the_user_never_notices(backends: dict[str, str], tmp_path: Path) -> None:
    log = tmp_path / "shadow.jsonl"
    with router(shadow_policy(backends["blue"], backends["failing"]), shadow_log=log) as (_, client):
        answer = client.post("/invocations", json=BODY)
        deadline = time.monotonic() + 10
        while not log.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert metric(client, METRIC_NAMES["errors"], arm="shadow", role="shadow", reason="5xx") == 1
    assert (answer.status_code, answer.json()) == (200, {"predictions": [0.1, 0.1]})
    shadow = json.loads(log.read_text().splitlines()[0])["shadows"][0]
    assert (shadow["status"], shadow["error"], shadow["predictions"]) == (500, "5xx", None)


def test_blue_green_switch_under_concurrent_load_fails_no_request(backends: dict[str, str]) -> None:
    """300 requests, 16 at a time; the switch happens after the first 100 have been answered."""
    blue = blue_green_policy(backends["blue"], backends["green"], live="blue")

    async def load(url: str) -> list[tuple[bool, int, str]]:
        done = 0
        switched = asyncio.Event()
        limit = asyncio.Semaphore(16)
        async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=30) as client:

            async def one() -> tuple[bool, int, str]:
                nonlocal done
                async with limit:
                    started_after_switch = switched.is_set()
                    answer = await client.post("/invocations", json=BODY)
                    done += 1
                    if done == 100:
                        put = await client.put("/admin/policy", json=policy_to_dict(switch_to(blue, "green")))
                        assert put.status_code == 200
                        switched.set()
                    return started_after_switch, answer.status_code, answer.headers.get(ARM_HEADER, "")

            results = await asyncio.gather(*(one() for _ in range(300)))
        return list(results)

    with router(blue) as (url, client):
        results = asyncio.run(load(url))
        errors = sum(metric(client, METRIC_NAMES["errors"], arm=a, reason=r) for a in ("blue", "green") for r in ("5xx", "timeout", "unreachable"))
        assert get_policy(url) == switch_to(blue, "green")
    assert Counter(status for _, status, _ in results) == {200: 300}
    assert errors == 0
    assert {arm for after, _, arm in results if after} == {"green"}
    assert {arm for _, _, arm in results} == {"blue", "green"}


def test_canary_that_fails_is_rolled_back_automatically(backends: dict[str, str]) -> None:
    policy = replace(canary_policy(backends["blue"], backends["failing"], percent=50),
                     rollback=RollbackRule("canary", max_error_rate=0.05, min_requests=5, window=20))
    with router(policy) as (url, client):
        answers = [client.post("/invocations", json=BODY) for _ in range(60)]
        after = get_policy(url)
        assert metric(client, METRIC_NAMES["rollbacks"], arm="canary") == 1
        assert metric(client, METRIC_NAMES["weight"], arm="canary") == 0
        canary_requests = metric(client, METRIC_NAMES["requests"], arm="canary", role="primary")
    assert {(a.status_code, a.headers[ARM_HEADER]) for a in answers} == {(200, "stable")}
    assert {arm.name: arm.weight for arm in after.arms} == {"stable": 50.0, "canary": 0.0}
    assert after.rollback is None
    assert 5 <= canary_requests < 60  # rolled back after min_requests, long before the end


def test_metrics_list_every_arm_before_and_after_traffic(backends: dict[str, str]) -> None:
    policy = weighted_policy({"blue": backends["blue"], "green": backends["green"]}, {"blue": 1, "green": 1})
    with router(policy) as (_, client):
        before = client.get("/metrics")
        assert before.headers["content-type"].startswith("text/plain; version=0.0.4")
        for arm in ("blue", "green"):
            assert f'{METRIC_NAMES["requests"]}{{arm="{arm}",role="primary"}} 0.0' in before.text
            assert f'{METRIC_NAMES["weight"]}{{arm="{arm}"}} 1.0' in before.text
        while min(metric(client, METRIC_NAMES["requests"], arm=a, role="primary") for a in ("blue", "green")) == 0:
            client.post("/invocations", json=BODY)
        for arm, value in (("blue", "0.1"), ("green", "0.9")):
            served = metric(client, METRIC_NAMES["requests"], arm=arm, role="primary")
            assert metric(client, METRIC_NAMES["latency"] + "_count", arm=arm, role="primary") == served
            assert metric(client, METRIC_NAMES["predictions"] + "_bucket", arm=arm, role="primary", le=value) == 2 * served
            assert metric(client, METRIC_NAMES["predictions"] + "_bucket", arm=arm, role="primary", le="0.0") == 0


def test_admin_refuses_a_bad_policy_and_keeps_the_old_one(backends: dict[str, str]) -> None:
    policy = blue_green_policy(backends["blue"], backends["green"])
    with router(policy) as (url, client):
        not_json = client.put("/admin/policy", content=b"{")
        no_arm = client.put("/admin/policy", json={"mode": "weighted", "arms": []})
        shadow = client.put("/admin/policy", json=policy_to_dict(shadow_policy(backends["blue"], backends["green"])))
        with pytest.raises(PolicyError, match=r"^The router at .* refused the policy \(400\): "):
            put_policy(url, replace(policy, arms=(Arm("x", "http://127.0.0.1:1", 0.0),)))
        assert get_policy(url) == policy
    assert not_json.status_code == 400
    assert not_json.json()["error"].startswith("The policy is not valid JSON: ")
    assert (no_arm.status_code, no_arm.json()) == (400, {"error": "A policy needs at least one arm."})
    assert shadow.json() == {"error": "The policy has shadow arm(s) shadow but the router config has no shadow_log file to write their predictions to."}


def test_health_reports_the_current_policy(backends: dict[str, str]) -> None:
    with router(blue_green_policy(backends["blue"], backends["green"])) as (url, client):
        before = client.get("/health").json()
        put_policy(url, switch_to(blue_green_policy(backends["blue"], backends["green"]), "green"))
        after = client.get("/health").json()
    assert before == {"status": "ok", "mode": "weighted", "arms": {"blue": 100.0, "green": 0.0}}
    assert after["arms"] == {"blue": 0.0, "green": 100.0}


# --- as a background process through the course's seam --------------------------------------


def test_start_router_runs_it_as_a_course_service(backends: dict[str, str], course_settings, tmp_path: Path) -> None:
    from course_utils.services import status, stop

    config = write_config(tmp_path / "router.json", RouterConfig(blue_green_policy(backends["blue"], backends["green"])))
    port = free_port()
    started = start_router("test-router", config, port, course_settings)
    try:
        assert started.running and started.url == f"http://{LOOPBACK}:{port}"
        answer = httpx.post(f"{started.url}/invocations", json=BODY, trust_env=False, timeout=30)
        assert (answer.status_code, answer.headers[ARM_HEADER]) == (200, "blue")
    finally:
        assert stop("test-router", course_settings)
    assert not status("test-router", course_settings).running
    assert is_port_free(port)


def test_start_router_reports_a_bad_config_before_starting(course_settings, tmp_path: Path) -> None:
    config = tmp_path / "router.json"
    config.write_text(json.dumps({"policy": {"arms": []}}))
    with pytest.raises(PolicyError) as error:
        start_router("never-started-router", config, free_port(), course_settings)
    assert str(error.value) == "A policy needs at least one arm."


# --- two real mlflow models serve backends ---------------------------------------------------


@pytest.mark.slow
def test_router_switches_between_two_real_mlflow_model_servers(course_settings, tmp_path: Path) -> None:
    """Two versions of a one-feature model behind the router: blue says 0, green says 1 for everything."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.dummy import DummyClassifier

    from course_utils.serving import start_model_server, stop_model_server

    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    servers = []
    try:
        for colour, label in (("blue", 0), ("green", 1)):
            model = DummyClassifier(strategy="constant", constant=label).fit(frame, [0, 1, label])
            path = tmp_path / colour
            mlflow.sklearn.save_model(model, str(path), signature=infer_signature(frame, model.predict(frame)))
            servers.append(start_model_server(str(path), course_settings, name=f"router-test-{colour}", stop_at_exit=True))
        blue = blue_green_policy(servers[0].url, servers[1].url, live="blue")
        body = {"dataframe_split": {"columns": ["x"], "data": [[1.0], [5.0]]}}
        with router(blue) as (url, client):
            first = client.post("/invocations", json=body)
            put_policy(url, switch_to(blue, "green"))
            second = client.post("/invocations", json=body)
            malformed = client.post("/invocations", json={"no_such_format": []})
    finally:
        for server in servers:
            stop_model_server(server, course_settings)
    assert (first.headers[ARM_HEADER], first.json()) == ("blue", {"predictions": [0, 0]})
    assert (second.headers[ARM_HEADER], second.json()) == ("green", {"predictions": [1, 1]})
    assert malformed.status_code == 400 and malformed.headers[ARM_HEADER] == "green"
    assert malformed.json()["error_code"] == "BAD_REQUEST"

