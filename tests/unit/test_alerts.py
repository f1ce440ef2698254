"""course_utils.alerts: the Alertmanager receiver and the state-file exporter, in-process and as services."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from course_utils.alerts import (
    CPU_METRIC,
    MEMORY_METRIC,
    alerts_in,
    exporter_registry,
    make_alert_receiver,
    process_usage,
    read_deliveries,
    start_alert_receiver,
    start_metrics_exporter,
    wait_for_alert,
    write_exporter_state,
)
from course_utils.config import load_settings
from course_utils.ports import free_port, is_listening
from course_utils.services import stop

ALERTMANAGER_PAYLOAD = {  # the shape Alertmanager POSTs (webhook_config, version 4), trimmed
    "version": "4", "status": "firing", "receiver": "course-receiver", "groupLabels": {"alertname": "FeatureDriftDetected"},
    "alerts": [
        {"status": "firing", "labels": {"alertname": "FeatureDriftDetected", "feature": "minutes_watched_28d"},
         "startsAt": "2026-01-01T00:00:00Z"},
        {"status": "resolved", "labels": {"alertname": "FeatureDriftDetected", "feature": "age"}},
        {"status": "firing", "labels": {"alertname": "RouterDown"}},
    ],
}


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text) for s in f.samples}


def test_receiver_records_each_delivery_with_its_arrival_time(tmp_path: Path) -> None:
    log = tmp_path / "alerts.jsonl"
    server = make_alert_receiver(free_port(), log)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with httpx.Client(trust_env=False) as client:
            assert client.get(url + "/").status_code == 200
            assert client.post(url + "/alerts", json=ALERTMANAGER_PAYLOAD).status_code == 200
            assert client.post(url + "/alerts", content=b"{not json").status_code == 400
    finally:
        server.shutdown()
        server.server_close()
    records = read_deliveries(log)
    assert len(records) == 1 and records[0]["path"] == "/alerts" and records[0]["payload"] == ALERTMANAGER_PAYLOAD
    firing = alerts_in(records, "FeatureDriftDetected")
    assert [a["labels"]["feature"] for a in firing] == ["minutes_watched_28d"]
    assert firing[0]["received_at"] == records[0]["received_at"]
    assert [a["labels"]["feature"] for a in alerts_in(records, "FeatureDriftDetected", status="resolved")] == ["age"]
    assert len(alerts_in(records, status=None)) == 3
    assert wait_for_alert(log, "RouterDown", timeout_s=0)[0]["labels"] == {"alertname": "RouterDown"}
    assert wait_for_alert(log, "NeverFired", timeout_s=0.3) == []


def test_reading_tolerates_a_missing_file_and_a_half_written_line(tmp_path: Path) -> None:
    log = tmp_path / "alerts.jsonl"
    assert read_deliveries(log) == []
    log.write_text(json.dumps({"received_at": 1.0, "payload": ALERTMANAGER_PAYLOAD}) + "\n{\"received_at\": 2")
    assert len(read_deliveries(log)) == 1
    assert alerts_in([{"payload": "not a dict"}, {"payload": {"alerts": ["x"]}}]) == []


def test_exporter_serves_the_state_file_gauges_and_process_usage(tmp_path: Path) -> None:
    from prometheus_client import generate_latest

    state = tmp_path / "exporter.json"
    write_exporter_state(state, [
        {"name": "course_feature_drift_detected", "labels": {"feature": "a", "test": "ks"}, "value": 1},
        {"name": "course_feature_drift_detected", "labels": {"feature": "b", "test": "ks"}, "value": 0},
    ], processes={"kernel": os.getpid(), "gone": 2**22 + 12345})
    samples = _samples(generate_latest(exporter_registry(state)).decode())
    assert samples[("course_feature_drift_detected", (("feature", "a"), ("test", "ks")))] == 1.0
    assert samples[("course_feature_drift_detected", (("feature", "b"), ("test", "ks")))] == 0.0
    cpu, rss = process_usage(os.getpid())
    assert 0 < samples[(CPU_METRIC, (("service", "kernel"),))] <= cpu + 1.0
    assert abs(samples[(MEMORY_METRIC, (("service", "kernel"),))] - rss) < 0.2 * rss
    assert not any(labels == (("service", "gone"),) for _, labels in samples), "a pid that is gone is left out"
    # the state is re-read at every scrape
    write_exporter_state(state, [{"name": "course_feature_drift_detected", "labels": {"feature": "a", "test": "ks"}, "value": 0}])
    samples = _samples(generate_latest(exporter_registry(state)).decode())
    assert samples[("course_feature_drift_detected", (("feature", "a"), ("test", "ks")))] == 0.0


@pytest.mark.parametrize("gauge, message", [
    ({"name": "bad-name", "value": 1}, "not a Prometheus metric name"),
    ({"name": "ok", "labels": {"bad-label": "x"}, "value": 1}, "not Prometheus label names"),
    ({"name": "ok", "value": "1"}, "is not a number"),
    ({"name": "ok", "value": True}, "is not a number"),
])
def test_bad_gauges_are_refused_with_the_reason(gauge: dict, message: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=message):
        write_exporter_state(tmp_path / "state.json", [gauge])
    assert not (tmp_path / "state.json").exists()


def test_both_run_as_course_services(tmp_path: Path) -> None:
    settings = replace(load_settings({}), workspace=tmp_path / "workspace")
    receiver_port, exporter_port = free_port(), free_port()
    log, state = tmp_path / "alerts.jsonl", tmp_path / "exporter.json"
    try:
        start_alert_receiver("test-alert-receiver", receiver_port, log, settings, stop_at_exit=False)
        start_metrics_exporter("test-exporter", exporter_port, state, settings, stop_at_exit=False)
        write_exporter_state(state, [{"name": "course_test_gauge", "value": 3}], processes={"kernel": os.getpid()})
        with httpx.Client(trust_env=False) as client:
            client.post(f"http://127.0.0.1:{receiver_port}/alerts", json=ALERTMANAGER_PAYLOAD).raise_for_status()
            samples = _samples(client.get(f"http://127.0.0.1:{exporter_port}/metrics").text)
        assert samples[("course_test_gauge", ())] == 3.0 and (MEMORY_METRIC, (("service", "kernel"),)) in samples
        assert len(wait_for_alert(log, "FeatureDriftDetected", timeout_s=5)) == 1
    finally:
        stop("test-alert-receiver", settings)
        stop("test-exporter", settings)
    assert not is_listening(receiver_port) and not is_listening(exporter_port)
