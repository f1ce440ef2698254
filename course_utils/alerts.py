"""Two small processes around Prometheus for module 04: an alert receiver and a metrics exporter.

- **Receiver** (:func:`start_alert_receiver`): Alertmanager's webhook target. Every POST it
  gets (Alertmanager's JSON: ``status``, ``alerts`` with ``labels``, ``startsAt`` ...) is appended,
  with the time it arrived, to a JSON-lines file; a lesson reads that file
  (:func:`read_deliveries`, :func:`wait_for_alert`) and acts on it, e.g. retrains a model.
  Unlike :mod:`course_utils.webhooks` (MLflow's signed webhooks) it checks no signature:
  Alertmanager signs nothing, and the receiver listens on 127.0.0.1 only.
- **Exporter** (:func:`start_metrics_exporter`): a ``/metrics`` endpoint for what has no
  endpoint of its own. It re-reads a small JSON state file at every scrape
  (:func:`write_exporter_state`): gauges a notebook sets (the drift monitor's
  ``course_feature_drift_detected{feature, test}``), and the CPU seconds and resident memory of
  processes it watches (a ``mlflow models serve`` server and its workers), as
  ``course_process_cpu_seconds_total{service}`` and ``course_process_resident_memory_bytes{service}``.

Both run through the course's process seam (:func:`course_utils.services.start_process`):
``python -m course_utils.alerts receiver --port 8200 --log alerts.jsonl`` or
``python -m course_utils.alerts exporter --port 8300 --state exporter.json``.

Example:
    >>> records = [{"received_at": 1.0, "payload": {"alerts": [
    ...     {"status": "firing", "labels": {"alertname": "FeatureDriftDetected", "feature": "x"}}]}}]
    >>> [a["labels"]["feature"] for a in alerts_in(records, "FeatureDriftDetected")]
    ['x']
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

from course_utils.config import LOOPBACK, Settings

if TYPE_CHECKING:
    from course_utils.services import ServiceStatus

logger = logging.getLogger(__name__)

CPU_METRIC = "course_process_cpu_seconds_total"
MEMORY_METRIC = "course_process_resident_memory_bytes"
MAX_BODY_BYTES = 1_000_000
_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


# --- the receiver ----------------------------------------------------------------------------


class _ReceiverHandler(BaseHTTPRequestHandler):
    server: _AlertReceiver

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._answer(200, {"status": "ok"})

    def do_POST(self) -> None:  # noqa: N802
        received_at = time.time()
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self._answer(400, {"error": f"Content-Length {self.headers.get('Content-Length')!r} is not 0..{MAX_BODY_BYTES}"})
            return
        body = self.rfile.read(length)
        try:
            payload = json.loads(body or b"null")
        except json.JSONDecodeError as error:
            self._answer(400, {"error": f"the body is not JSON: {error}"})
            return
        self.server.append({"received_at": received_at, "path": self.path, "payload": payload})
        self._answer(200, {"status": "recorded"})

    def _answer(self, status: int, body: Mapping[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        logger.info("%s %s", self.address_string(), format % args)


class _AlertReceiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, log_path: Path) -> None:
        super().__init__((LOOPBACK, port), _ReceiverHandler)
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def append(self, record: Mapping[str, Any]) -> None:
        with self._lock, self.log_path.open("a") as log:
            log.write(json.dumps(record) + "\n")


def make_alert_receiver(port: int, log_path: Path) -> ThreadingHTTPServer:
    """A receiver bound to 127.0.0.1:``port`` appending to ``log_path`` (call ``serve_forever()``)."""
    return _AlertReceiver(port, log_path)


def read_deliveries(log_path: Path) -> list[dict[str, Any]]:
    """Every delivery recorded so far (``received_at``, ``path``, ``payload``); [] before the first."""
    try:
        lines = Path(log_path).read_text().splitlines()
    except FileNotFoundError:
        return []
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line being written right now
    return records


def alerts_in(records: Iterable[Mapping[str, Any]], alertname: str | None = None,
              status: str = "firing") -> list[dict[str, Any]]:
    """The alerts of Alertmanager deliveries, each with the delivery's ``received_at`` added.

    Only alerts whose ``status`` is ``status`` (``"firing"``, ``"resolved"``, or None for both)
    and, when given, whose ``alertname`` label is ``alertname``.
    """
    found = []
    for record in records:
        payload = record.get("payload")
        if not isinstance(payload, Mapping):
            continue
        for alert in payload.get("alerts") or []:
            if not isinstance(alert, Mapping):
                continue
            labels = alert.get("labels") or {}
            if alertname is not None and labels.get("alertname") != alertname:
                continue
            if status is not None and alert.get("status") != status:
                continue
            found.append({**alert, "received_at": record.get("received_at")})
    return found


def wait_for_alert(log_path: Path, alertname: str, timeout_s: float = 60.0, poll_s: float = 0.2) -> list[dict[str, Any]]:
    """Poll the receiver's file until an alert ``alertname`` is firing; its alerts ([] after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        alerts = alerts_in(read_deliveries(log_path), alertname)
        if alerts or time.monotonic() > deadline:
            return alerts
        time.sleep(poll_s)


def start_alert_receiver(name: str, port: int, log_path: Path, settings: Settings, *,
                         stop_at_exit: bool = True) -> ServiceStatus:
    """Start the receiver in the background through the process seam; ready when ``GET /`` answers 200.

    Point Alertmanager at ``http://127.0.0.1:<port>/alerts`` (any path is accepted and recorded).
    """
    from course_utils.services import start_process

    command = [sys.executable, "-m", "course_utils.alerts", "receiver", "--port", str(port), "--log", str(log_path)]
    return start_process(name, command, port, f"http://{LOOPBACK}:{port}", settings, env={"PYTHONUNBUFFERED": "1"},
                         ready_path="/", port_setting="start_alert_receiver(..., port=free_port()) picks a free one",
                         stop_at_exit=stop_at_exit)


# --- the exporter ----------------------------------------------------------------------------


def _check_gauge(gauge: Mapping[str, Any]) -> dict[str, Any]:
    name = gauge.get("name")
    if not isinstance(name, str) or not _METRIC_NAME.match(name):
        raise ValueError(f"Gauge name {name!r} is not a Prometheus metric name ({_METRIC_NAME.pattern}).")
    labels = dict(gauge.get("labels") or {})
    bad = [key for key in labels if not isinstance(key, str) or not _LABEL_NAME.match(key)]
    if bad:
        raise ValueError(f"Gauge {name}: label name(s) {bad} are not Prometheus label names ({_LABEL_NAME.pattern}).")
    value = gauge.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"Gauge {name}{labels}: value {value!r} is not a number.")
    return {"name": name, "help": str(gauge.get("help") or name), "labels": {k: str(v) for k, v in labels.items()},
            "value": float(value)}


def write_exporter_state(path: Path, gauges: Iterable[Mapping[str, Any]] = (),
                         processes: Mapping[str, int] | None = None) -> Path:
    """Replace what the exporter serves: ``gauges`` (dicts with name, labels, value, optional help)
    and ``processes`` ({service label: pid}; the pid's children are counted with it).

    The file is replaced atomically, so a scrape never reads half of it. ValueError names a bad gauge.
    """
    state = {"gauges": [_check_gauge(gauge) for gauge in gauges],
             "processes": {str(service): int(pid) for service, pid in (processes or {}).items()}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_text(json.dumps(state))
    os.replace(partial, path)
    return path


def process_usage(pid: int) -> tuple[float, int] | None:
    """(user + system CPU seconds, resident bytes) of ``pid`` and its descendants; None if it is gone."""
    import psutil

    try:
        root = psutil.Process(pid)
        family = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    cpu, rss = 0.0, 0
    for process in family:
        try:
            times = process.cpu_times()
            cpu += times.user + times.system
            rss += process.memory_info().rss
        except psutil.Error:
            continue  # a worker that just ended
    return cpu, rss


class StateFileCollector:
    """A ``prometheus_client`` collector serving the state file's gauges and watched processes."""

    def __init__(self, state_path: Path) -> None:
        self.state_path = Path(state_path)

    def _state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        state = self._state()
        families: dict[tuple[str, tuple[str, ...]], Any] = {}
        for gauge in state.get("gauges", []):
            label_names = tuple(sorted(gauge["labels"]))
            key = (gauge["name"], label_names)
            if key not in families:
                families[key] = GaugeMetricFamily(gauge["name"], gauge["help"], labels=list(label_names))
            families[key].add_metric([gauge["labels"][label] for label in label_names], gauge["value"])
        yield from families.values()
        cpu = CounterMetricFamily(CPU_METRIC.removesuffix("_total"), "CPU seconds of a watched process and its children",
                                  labels=["service"])
        memory = GaugeMetricFamily(MEMORY_METRIC, "Resident memory of a watched process and its children", labels=["service"])
        for service, pid in sorted(state.get("processes", {}).items()):
            usage = process_usage(int(pid))
            if usage is not None:
                cpu.add_metric([service], usage[0])
                memory.add_metric([service], usage[1])
        yield cpu
        yield memory


def exporter_registry(state_path: Path) -> Any:
    """A CollectorRegistry with only the state file's metrics (never the process-global registry)."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(StateFileCollector(state_path))
    return registry


def start_metrics_exporter(name: str, port: int, state_path: Path, settings: Settings, *,
                           stop_at_exit: bool = True) -> ServiceStatus:
    """Start the exporter in the background through the process seam; ready when ``/metrics`` answers 200."""
    from course_utils.services import start_process

    if not Path(state_path).is_file():
        write_exporter_state(state_path)
    command = [sys.executable, "-m", "course_utils.alerts", "exporter", "--port", str(port), "--state", str(state_path)]
    return start_process(name, command, port, f"http://{LOOPBACK}:{port}", settings, env={"PYTHONUNBUFFERED": "1"},
                         ready_path="/metrics", port_setting="start_metrics_exporter(..., port=free_port()) picks a free one",
                         stop_at_exit=stop_at_exit)


# --- command line ----------------------------------------------------------------------------


def _serve_until_terminated(server: Any) -> None:
    def _terminate(signum: int, frame: Any) -> None:  # noqa: ARG001 (signal handler signature)
        server.server_close()
        os._exit(0)

    signal.signal(signal.SIGTERM, _terminate)
    server.serve_forever()


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Alert receiver / metrics exporter of module 04 (127.0.0.1 only).")
    commands = parser.add_subparsers(dest="command", required=True)
    receiver = commands.add_parser("receiver", help="record Alertmanager webhook deliveries in a JSON-lines file")
    receiver.add_argument("--port", type=int, required=True)
    receiver.add_argument("--log", type=Path, required=True)
    exporter = commands.add_parser("exporter", help="serve a state file's gauges and process usage on /metrics")
    exporter.add_argument("--port", type=int, required=True)
    exporter.add_argument("--state", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.command == "receiver":
        server = make_alert_receiver(args.port, args.log)
        logger.info("alert receiver listening on http://%s:%s/, recording to %s", LOOPBACK, args.port, args.log)
    else:
        from prometheus_client import make_wsgi_app
        from wsgiref.simple_server import WSGIRequestHandler, make_server

        class _Quiet(WSGIRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # one line per scrape every second would fill the log

        server = make_server(LOOPBACK, args.port, make_wsgi_app(exporter_registry(args.state)), handler_class=_Quiet)
        logger.info("metrics exporter on http://%s:%s/metrics, state %s", LOOPBACK, args.port, args.state)
    _serve_until_terminated(server)


if __name__ == "__main__":
    _main()
