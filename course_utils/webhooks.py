"""A receiver for MLflow registry webhooks: verify, de-duplicate, record, then validate.

MLflow 3 (open source) POSTs a JSON payload to each webhook URL when a registry event
happens (``model_version.created``, ``model_version_alias.created``, ...). When the webhook
has a secret, every delivery carries three headers (the Standard Webhooks scheme):

- ``X-MLflow-Delivery-Id``  a UUID, the same for every retry of one delivery
- ``X-MLflow-Timestamp``    Unix seconds when MLflow built the request
- ``X-MLflow-Signature``    ``v1,<base64 HMAC-SHA256(secret, "<id>.<timestamp>.<body>")>``

The receiver here accepts a delivery only when the signature matches (else 401), the
timestamp is recent (else 403: a stale or replayed capture), and the delivery id was never
accepted before (else 409: a replay). Every request, accepted or not, is appended to a JSONL
log in the lesson folder. On an accepted ``model_version.created`` it runs the validation
job of :mod:`course_utils.registry` in a background thread (the HTTP answer stays fast, as a
webhook consumer's should) and records the verdict as tags on that model version.

It runs as its own process, started and stopped with pid files by
:func:`start_receiver` / :func:`stop_receiver` on 127.0.0.1 only; the secret reaches it
through the environment, never the command line.

Example:
    >>> signature = sign("s3cret", "id-1", "1700000000", b'{"a": 1}')
    >>> verify_signature("s3cret", "id-1", "1700000000", b'{"a": 1}', signature)
    True
    >>> verify_signature("wrong", "id-1", "1700000000", b'{"a": 1}', signature)
    False
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import logging
import math
import os
import signal
import socket
import struct
import sys
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Mapping

from course_utils.config import LOOPBACK, Settings

logger = logging.getLogger(__name__)

# The same names as ``mlflow.webhooks.constants`` (a unit test checks it); defined here so
# the receiver process starts without importing MLflow.
SIGNATURE_HEADER = "X-MLflow-Signature"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
DELIVERY_ID_HEADER = "X-MLflow-Delivery-Id"
SIGNATURE_VERSION = "v1"

SECRET_ENV = "COURSE_WEBHOOK_SECRET"
DEFAULT_TOLERANCE_S = 300.0
MAX_BODY_BYTES = 1_000_000
READ_TIMEOUT_S = 10.0  # a delivery is a few KB; a client slower than this is stuck or hostile
VALIDATED_EVENT = "model_version.created"


# --- signatures ------------------------------------------------------------------------------


def _as_bytes(body: bytes | str) -> bytes:
    return body.encode("utf-8") if isinstance(body, str) else body


def sign(secret: str, delivery_id: str, timestamp: str, body: bytes | str) -> str:
    """MLflow's signature of one delivery: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``."""
    signed = f"{delivery_id}.{timestamp}.".encode() + _as_bytes(body)
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def verify_signature(secret: str, delivery_id: str, timestamp: str, body: bytes | str, signature: str) -> bool:
    """True when one of the space-separated ``v1,...`` signatures matches (constant-time compare)."""
    expected = sign(secret, delivery_id, timestamp, body)
    candidates = [part for part in signature.split() if part.startswith(f"{SIGNATURE_VERSION},")]
    return any(hmac.compare_digest(expected.encode(), candidate.encode()) for candidate in candidates)


# --- the verifier: signature, freshness, replay ----------------------------------------------


@dataclass(frozen=True)
class Check:
    """The receiver's answer to one delivery."""

    status: int
    reason: str
    payload: dict[str, Any] | None = None

    @property
    def accepted(self) -> bool:
        return self.status == 200


class DeliveryVerifier:
    """Accepts a delivery only if it is signed with ``secret``, recent, and not seen before."""

    def __init__(
        self,
        secret: str,
        tolerance_s: float = DEFAULT_TOLERANCE_S,
        clock: Callable[[], float] = time.time,
        remember: int = 10_000,
    ) -> None:
        if not secret:
            raise ValueError(f"The webhook secret is empty: set {SECRET_ENV} to the secret given to create_webhook().")
        self._secret = secret
        self.tolerance_s = tolerance_s
        self._clock = clock
        self._remember = remember
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, headers: Mapping[str, str], body: bytes) -> Check:
        """Verify one delivery; on success its id is remembered so a replay is refused."""
        lowered = {key.lower(): value for key, value in headers.items()}
        missing = [h for h in (SIGNATURE_HEADER, TIMESTAMP_HEADER, DELIVERY_ID_HEADER) if not lowered.get(h.lower())]
        if missing:
            return Check(401, f"missing header(s) {', '.join(missing)}: not a signed MLflow delivery")
        delivery_id = lowered[DELIVERY_ID_HEADER.lower()]
        timestamp = lowered[TIMESTAMP_HEADER.lower()]
        if not verify_signature(self._secret, delivery_id, timestamp, body, lowered[SIGNATURE_HEADER.lower()]):
            return Check(401, "signature does not match: forged, altered, or signed with another secret")
        try:
            sent_at = float(timestamp)
        except ValueError:
            sent_at = math.nan
        if not math.isfinite(sent_at):  # float() accepts "nan" and "inf", and abs(nan) > window is False
            return Check(400, f"{TIMESTAMP_HEADER}={timestamp!r} is not Unix seconds")
        age = self._clock() - sent_at
        if abs(age) > self.tolerance_s:
            return Check(403, f"timestamp is {age:.0f} s old, outside the ±{self.tolerance_s:.0f} s window: stale or replayed")
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            return Check(400, f"signed body is not JSON ({type(error).__name__})")
        if not isinstance(payload, dict):
            return Check(400, "signed body is not a JSON object")
        with self._lock:
            if delivery_id in self._seen:
                return Check(409, f"delivery {delivery_id} was already accepted: replay refused")
            self._seen[delivery_id] = sent_at
            while len(self._seen) > self._remember:
                self._seen.popitem(last=False)
        return Check(200, "verified", payload)


# --- the HTTP receiver -----------------------------------------------------------------------


def event_name(payload: Mapping[str, Any] | None) -> str | None:
    """``"<entity>.<action>"`` of an MLflow payload, e.g. ``model_version.created``."""
    if not payload or "entity" not in payload or "action" not in payload:
        return None
    return f"{payload['entity']}.{payload['action']}"


def _payload_sent_at(payload: Mapping[str, Any] | None) -> float | None:
    """MLflow's ISO ``timestamp`` inside the payload (microseconds), as Unix seconds."""
    try:
        return datetime.fromisoformat(str(payload["timestamp"])).timestamp() if payload else None
    except (KeyError, ValueError):
        return None


class DeliveryLog:
    """Append-only JSONL file of deliveries and validation verdicts (thread-safe)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def append(self, record: Mapping[str, Any]) -> None:
        line = json.dumps(record, sort_keys=True, default=str)
        with self._lock, open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")


def read_log(path: Path) -> list[dict[str, Any]]:
    """All records of a receiver's JSONL log (an absent file is an empty log)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


ValidationJob = Callable[[str, str], dict[str, Any]]


class IncompleteBodyError(ValueError):
    """The client sent fewer body bytes than its Content-Length, and then hung up or went quiet."""


class _Handler(BaseHTTPRequestHandler):
    server: _Receiver
    # Keep-alive: MLflow's session reuses the connection, and the client, not the receiver,
    # closes it first, so a stopped receiver leaves no TIME_WAIT behind and can restart at once.
    protocol_version = "HTTP/1.1"
    # A client that declares more bytes than it sends (or idles) is dropped instead of holding a thread.
    timeout = READ_TIMEOUT_S

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path == "/health":
            self._answer(200, {"status": "ok"})
        else:
            self._answer(404, {"error": "POST deliveries to /; GET /health"})

    def do_POST(self) -> None:  # noqa: N802
        received_at = time.time()
        try:
            body = self._read_body()
        except ValueError as error:
            self.close_connection = True
            status = 408 if isinstance(error, IncompleteBodyError) else 400
            self._record_and_answer(received_at, dict(self.headers.items()), Check(status, str(error)))
            return
        if body is None:
            return  # _read_body answered (e.g. 413)
        check = self.server.verifier.check(dict(self.headers.items()), body)
        self._record_and_answer(received_at, dict(self.headers.items()), check)
        if check.accepted and event_name(check.payload) == VALIDATED_EVENT and self.server.validation_job:
            data = check.payload.get("data") if isinstance(check.payload.get("data"), dict) else {}
            self.server.jobs.submit(self.server.run_validation, str(data.get("name")), str(data.get("version")))

    def _read_body(self) -> bytes | None:
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.isdigit():
            raise ValueError(f"Content-Length {length_text!r} is not a byte count")
        length = int(length_text)
        if length > MAX_BODY_BYTES:
            self._answer(413, {"error": f"body of {length} bytes is over the {MAX_BODY_BYTES} limit"})
            self.close_connection = True
            return None
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            raise IncompleteBodyError(f"Content-Length declared {length} bytes, but they did not all arrive "
                                      f"within {READ_TIMEOUT_S:.0f} s") from None
        if len(body) < length:
            raise IncompleteBodyError(f"Content-Length declared {length} bytes, but the client hung up after {len(body)}")
        return body

    def _record_and_answer(self, received_at: float, headers: Mapping[str, str], check: Check) -> None:
        lowered = {key.lower(): value for key, value in headers.items()}
        sent_at = _payload_sent_at(check.payload)
        self.server.log.append(
            {
                "kind": "delivery",
                "received_at": received_at,
                "delivery_id": lowered.get(DELIVERY_ID_HEADER.lower()),
                "header_timestamp": lowered.get(TIMESTAMP_HEADER.lower()),
                "event": event_name(check.payload),
                "status": check.status,
                "verified": check.accepted,
                "reason": check.reason,
                "sent_at": sent_at,
                "transit_s": None if sent_at is None else received_at - sent_at,
                "data": (check.payload or {}).get("data"),
            }
        )
        self._answer(check.status, {"status": check.status, "reason": check.reason})

    def _answer(self, status: int, body: Mapping[str, Any]) -> None:
        encoded = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(encoded)))
        self.end_headers()
        self.wfile.write(encoded)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        logger.info("%s %s", self.address_string(), format % args)


class _Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, verifier: DeliveryVerifier, log: DeliveryLog, validation_job: ValidationJob | None) -> None:
        super().__init__((LOOPBACK, port), _Handler)
        self.verifier = verifier
        self.log = log
        self.validation_job = validation_job
        self.jobs = ThreadPoolExecutor(max_workers=1, thread_name_prefix="validation")
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def reset_open_connections(self) -> None:
        """Close idle keep-alive connections with RST (SO_LINGER 0): no TIME_WAIT on our port."""
        with self._open_lock:
            for connection in list(self._open):
                try:
                    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    connection.close()
                except OSError:
                    pass
            self._open.clear()

    def run_validation(self, name: str, version: str) -> None:
        started = time.time()
        try:
            verdict = self.validation_job(name, version)
            record = {"kind": "validation", "name": name, "version": version, **verdict}
        except Exception as error:  # a failing job is recorded, never kills the receiver
            logger.exception("validation of %s v%s failed", name, version)
            record = {"kind": "validation", "name": name, "version": version, "verdict": "error",
                      "error": f"{type(error).__name__}: {error}"}
        record["job_seconds"] = time.time() - started
        record["finished_at"] = time.time()
        self.log.append(record)


def make_receiver(port: int, secret: str, log_path: Path, validation_job: ValidationJob | None = None,
                  tolerance_s: float = DEFAULT_TOLERANCE_S) -> ThreadingHTTPServer:
    """A receiver bound to 127.0.0.1:port (call ``serve_forever()``; tests run it in a thread)."""
    return _Receiver(port, DeliveryVerifier(secret, tolerance_s), DeliveryLog(log_path), validation_job)


# --- process management ----------------------------------------------------------------------


def start_receiver(
    name: str,
    port: int,
    secret: str,
    log_path: Path,
    settings: Settings,
    tracking_uri: str | None = None,
    holdout_path: Path | None = None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> Any:
    """Start the receiver as a background process (pid file ``<name>``); returns its ServiceStatus.

    With ``tracking_uri`` and ``holdout_path`` it validates every new model version.
    """
    from course_utils.services import start_process

    command = [sys.executable, "-m", "course_utils.webhooks", "--port", str(port), "--log", str(log_path),
               "--tolerance-s", str(tolerance_s)]
    if tracking_uri and holdout_path:
        command += ["--tracking-uri", tracking_uri, "--holdout", str(holdout_path)]
    env = {SECRET_ENV: secret, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri  # never a stray ./mlflow.db in the working directory
    return start_process(name, command, port, f"http://{LOOPBACK}:{port}/", settings, env=env,
                         port_setting="start_receiver(..., port=free_port()) picks a free one")


def stop_receiver(name: str, settings: Settings) -> bool:
    """Stop the receiver started under ``name``; True if one was running."""
    from course_utils.services import stop

    return stop(name, settings)


def wait_for_records(log_path: Path, predicate: Callable[[dict[str, Any]], bool], count: int = 1,
                     timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """Poll the log until ``count`` records satisfy ``predicate``; returns them (maybe fewer on timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        matching = [record for record in read_log(log_path) if predicate(record)]
        if len(matching) >= count or time.monotonic() > deadline:
            return matching
        time.sleep(0.1)


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="MLflow webhook receiver (127.0.0.1 only).")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True, help="JSONL file of deliveries and verdicts")
    parser.add_argument("--tolerance-s", type=float, default=DEFAULT_TOLERANCE_S)
    parser.add_argument("--tracking-uri", help="registry to validate new model versions against")
    parser.add_argument("--holdout", type=Path, help="parquet holdout for the validation job")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    secret = os.environ.get(SECRET_ENV, "")
    job: ValidationJob | None = None
    if args.tracking_uri and args.holdout:
        from course_utils.registry import validation_job
        from course_utils.tracking import skip_unused_request_header_providers

        skip_unused_request_header_providers()  # ~5 s less before the first validation

        job = validation_job(args.tracking_uri, args.holdout)
    server = make_receiver(args.port, secret, args.log, job, args.tolerance_s)

    def _terminate(signum: int, frame: Any) -> None:  # noqa: ARG001 (signal handler signature)
        server.reset_open_connections()
        server.server_close()
        os._exit(0)

    signal.signal(signal.SIGTERM, _terminate)
    logger.info("webhook receiver listening on http://%s:%s/", LOOPBACK, args.port)
    server.serve_forever()


if __name__ == "__main__":
    _main()
