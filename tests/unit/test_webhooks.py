"""The webhook receiver: MLflow's signature scheme, forged/replayed/malformed deliveries, and a real
receiver process on 127.0.0.1 that keeps serving after bad requests."""

from __future__ import annotations

import json
import socket
import time
import uuid
from dataclasses import replace

import pytest
import requests

from course_utils.config import load_settings
from course_utils.ports import free_port, is_listening
from course_utils.webhooks import (
    DELIVERY_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    DeliveryVerifier,
    read_log,
    sign,
    start_receiver,
    stop_receiver,
    verify_signature,
    wait_for_records,
)

SECRET = "test-secret-" + "x" * 20


def _delivery(secret: str = SECRET, body: dict | None = None, timestamp: float | None = None, delivery_id: str | None = None):
    """Headers and body bytes of a delivery signed the way MLflow signs it."""
    payload = body or {"entity": "model_version", "action": "created", "timestamp": "2026-01-01T00:00:00+00:00",
                       "data": {"name": "m", "version": "1"}}
    raw = json.dumps(payload).encode()
    delivery_id = delivery_id or str(uuid.uuid4())
    stamp = str(int(timestamp if timestamp is not None else time.time()))
    headers = {
        "Content-Type": "application/json",
        DELIVERY_ID_HEADER: delivery_id,
        TIMESTAMP_HEADER: stamp,
        SIGNATURE_HEADER: sign(secret, delivery_id, stamp, raw),
    }
    return headers, raw


# --- the scheme is MLflow's ------------------------------------------------------------------


def test_header_names_are_mlflows() -> None:
    from mlflow.webhooks import constants

    assert (SIGNATURE_HEADER, TIMESTAMP_HEADER, DELIVERY_ID_HEADER) == (
        constants.WEBHOOK_SIGNATURE_HEADER, constants.WEBHOOK_TIMESTAMP_HEADER, constants.WEBHOOK_DELIVERY_ID_HEADER
    )


def test_signature_equals_mlflows_own() -> None:
    from mlflow.webhooks.delivery import _generate_hmac_signature

    body = json.dumps({"a": 1, "b": "ü"})
    assert sign(SECRET, "id-1", "1700000000", body) == _generate_hmac_signature(SECRET, "id-1", "1700000000", body)
    assert verify_signature(SECRET, "id-1", "1700000000", body.encode(), _generate_hmac_signature(SECRET, "id-1", "1700000000", body))


@pytest.mark.parametrize(
    "change",
    ["secret", "delivery_id", "timestamp", "body", "version_prefix", "truncated", "empty"],
)
def test_any_change_breaks_the_signature(change: str) -> None:
    good = sign(SECRET, "id-1", "1700000000", b"{}")
    args = {"secret": SECRET, "delivery_id": "id-1", "timestamp": "1700000000", "body": b"{}", "signature": good}
    if change == "secret":
        args["secret"] = "another-secret"
    elif change == "delivery_id":
        args["delivery_id"] = "id-2"
    elif change == "timestamp":
        args["timestamp"] = "1700000001"
    elif change == "body":
        args["body"] = b'{"x": 1}'
    elif change == "version_prefix":
        args["signature"] = good.replace("v1,", "v2,")
    elif change == "truncated":
        args["signature"] = good[:-4]
    else:
        args["signature"] = ""
    assert not verify_signature(**args)


def test_one_of_several_signatures_may_match() -> None:
    good = sign(SECRET, "id", "1", b"{}")
    assert verify_signature(SECRET, "id", "1", b"{}", f"v1,bm90LWl0 {good}")


# --- the verifier ----------------------------------------------------------------------------


def test_verifier_accepts_then_refuses_the_replay() -> None:
    verifier = DeliveryVerifier(SECRET)
    headers, body = _delivery()
    first = verifier.check(headers, body)
    assert first.accepted and first.payload["data"]["version"] == "1"
    replay = verifier.check(headers, body)
    assert replay.status == 409 and "replay" in replay.reason


def test_verifier_rejects_forged_stale_and_malformed() -> None:
    now = 1_800_000_000.0
    verifier = DeliveryVerifier(SECRET, tolerance_s=300, clock=lambda: now)
    forged_headers, forged_body = _delivery(secret="attacker-guess", timestamp=now)
    assert verifier.check(forged_headers, forged_body).status == 401
    headers, body = _delivery(timestamp=now)
    assert verifier.check(headers, body.replace(b'"1"', b'"9"')).status == 401, "a tampered body must fail"
    stale_headers, stale_body = _delivery(timestamp=now - 3600)
    stale = verifier.check(stale_headers, stale_body)
    assert stale.status == 403 and "window" in stale.reason
    missing = verifier.check({"Content-Type": "application/json"}, body)
    assert missing.status == 401 and SIGNATURE_HEADER in missing.reason
    bad_stamp = dict(headers, **{TIMESTAMP_HEADER: "yesterday"})
    bad_stamp[SIGNATURE_HEADER] = sign(SECRET, headers[DELIVERY_ID_HEADER], "yesterday", body)
    assert verifier.check(bad_stamp, body).status == 400
    junk_id = str(uuid.uuid4())
    junk = {DELIVERY_ID_HEADER: junk_id, TIMESTAMP_HEADER: str(int(now)), SIGNATURE_HEADER: sign(SECRET, junk_id, str(int(now)), b"\xff\xfe")}
    assert verifier.check(junk, b"\xff\xfe").status == 400
    assert verifier.check(headers, body).accepted, "rejections must not poison a later genuine delivery"


def test_verifier_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="COURSE_WEBHOOK_SECRET"):
        DeliveryVerifier("")


# --- a real receiver process -----------------------------------------------------------------


@pytest.fixture()
def receiver(tmp_path):
    settings = replace(load_settings({}), workspace=tmp_path / "workspace")
    port = free_port()
    log = tmp_path / "deliveries.jsonl"
    state = start_receiver("test-webhook-receiver", port, SECRET, log, settings)
    assert state.running and is_listening(port)
    try:
        yield f"http://127.0.0.1:{port}/", port, log
    finally:
        assert stop_receiver("test-webhook-receiver", settings)
        assert not is_listening(port)


def test_receiver_process_verifies_rejects_and_stays_up(receiver) -> None:
    url, port, log = receiver
    headers, body = _delivery()
    assert requests.post(url, data=body, headers=headers, timeout=10).status_code == 200
    assert requests.post(url, data=body, headers=headers, timeout=10).status_code == 409  # replayed
    forged_headers, forged_body = _delivery(secret="wrong")
    assert requests.post(url, data=forged_body, headers=forged_headers, timeout=10).status_code == 401
    assert requests.post(url, data=b"not json", headers={"Content-Type": "application/json"}, timeout=10).status_code == 401
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n")
        assert sock.recv(200).startswith(b"HTTP/1.1 413"), "an oversized body is refused before it is read"
    # Raw garbage, a bad Content-Length, and a client that hangs up mid-body.
    for raw in (b"\x00\x01garbage\r\n\r\n", b"POST / HTTP/1.1\r\nContent-Length: ten\r\n\r\n",
                b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"partial"):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(raw)
    assert requests.get(url + "health", timeout=10).json() == {"status": "ok"}
    fresh_headers, fresh_body = _delivery()
    assert requests.post(url, data=fresh_body, headers=fresh_headers, timeout=10).status_code == 200
    statuses = [record["status"] for record in wait_for_records(log, lambda r: r["kind"] == "delivery", count=7, timeout_s=10)]
    assert statuses.count(200) == 2 and 409 in statuses and statuses.count(401) == 2 and 400 in statuses and 408 in statuses
    assert all(record["verified"] == (record["status"] == 200) for record in read_log(log))


def test_receiver_accepts_a_delivery_sent_by_mlflows_own_code(receiver, monkeypatch) -> None:
    """MLflow's delivery function (signing, headers, SSRF-protected session) against the receiver."""
    from mlflow.entities.webhook import Webhook, WebhookEvent
    from mlflow.webhooks import delivery

    url, _, log = receiver
    monkeypatch.setenv("MLFLOW_WEBHOOK_ALLOWED_SCHEMES", "http,https")
    monkeypatch.setenv("MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS", "true")
    event = WebhookEvent.from_str("model_version.created")
    webhook = Webhook("wh-1", "test", url, [event], 0, 0, secret=SECRET)
    response = delivery._send_webhook_request(
        webhook, {"name": "m", "version": "3", "source": "models:/m-1", "run_id": None, "tags": {}, "description": None},
        event, delivery._create_webhook_session(),
    )
    assert response.status_code == 200, response.text
    record = wait_for_records(log, lambda r: r["kind"] == "delivery" and r["status"] == 200)[0]
    assert record["event"] == "model_version.created" and record["data"]["version"] == "3"
    assert 0 <= record["transit_s"] < 30
    wrong = Webhook("wh-2", "test", url, [event], 0, 0, secret="not-the-receivers-secret")
    assert delivery._send_webhook_request(wrong, {"name": "m"}, event, delivery._create_webhook_session()).status_code == 401


def test_receiver_restarts_at_once_on_the_same_port(tmp_path) -> None:
    """A stopped receiver leaves no TIME_WAIT on its port, so it comes back where MLflow retries."""
    settings = replace(load_settings({}), workspace=tmp_path / "workspace")
    port = free_port()
    log = tmp_path / "deliveries.jsonl"
    session = requests.Session()  # keep-alive, like MLflow's delivery session
    try:
        start_receiver("restart-receiver", port, SECRET, log, settings)
        for _ in range(3):
            headers, body = _delivery()
            assert session.post(f"http://127.0.0.1:{port}/", data=body, headers=headers, timeout=10).status_code == 200
        assert stop_receiver("restart-receiver", settings)
        state = start_receiver("restart-receiver", port, SECRET, log, settings)
        assert state.running
        headers, body = _delivery()
        assert requests.post(f"http://127.0.0.1:{port}/", data=body, headers=headers, timeout=10).status_code == 200
    finally:
        session.close()
        stop_receiver("restart-receiver", settings)
