"""Without an endpoint, spans and logs land in OTLP-JSON lines files the otlpjsonfile receiver reads."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from services.cli.logs_view import logs_command
from services.cli.trace_view import trace_command
from services.common.saga.observer import SagaRun
from services.common.telemetry import TelemetrySettings, init_telemetry

log = logging.getLogger("tests.files")


def run_embedded(directory: Path, service: str = "order-service") -> tuple[str, str]:
    """A compensated saga through the embedded default (batch processors, file exporters)."""
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    telemetry = init_telemetry(service, settings=TelemetrySettings(directory=directory), stream=io.StringIO())
    try:
        with telemetry.saga_observer.saga(
            SagaRun("saga-9", "CreateOrder", "corr-9", {"order.id": "order-9"})
        ) as scope:
            with scope.step("charge", 1):
                log.info("charging")
            with scope.step("confirm", 2) as confirm:
                confirm.failed("out of stock")
            with scope.compensation("charge", 1, "out of stock", confirm):
                pass
            scope.finished("compensated", "out of stock")
            traceparent = scope.traceparent() or ""
    finally:
        telemetry.shutdown()
        root.handlers[:], root.level = saved[0], saved[1]
    return traceparent.split("-")[1], traceparent.split("-")[2]


def _hex_ids_to_base64(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: base64.b64encode(bytes.fromhex(value)).decode()
            if key in ("traceId", "spanId", "parentSpanId") and value
            else _hex_ids_to_base64(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_hex_ids_to_base64(item) for item in node]
    return node


def test_spans_are_written_as_one_export_request_per_line_in_otlp_json(tmp_path: Path) -> None:
    trace_id, saga_span_id = run_embedded(tmp_path)
    path = tmp_path / "order-service" / "traces.jsonl"
    lines = path.read_text().splitlines()
    assert lines
    spans = []
    for line in lines:
        document = json.loads(line)
        assert list(document) == ["resourceSpans"]
        # OTLP/JSON: hex ids (not base64), integer enums, lowerCamelCase names.
        request = json_format.ParseDict(_hex_ids_to_base64(document), ExportTraceServiceRequest())
        for resource_spans in document["resourceSpans"]:
            resource = {a["key"]: a["value"] for a in resource_spans["resource"]["attributes"]}
            assert resource["service.name"] == {"stringValue": "order-service"}
            assert resource["deployment.environment"] == {"stringValue": "development"}
            for scope_spans in resource_spans["scopeSpans"]:
                spans.extend(scope_spans["spans"])
        assert request.resource_spans
    by_name = {span["name"]: span for span in spans}
    saga = by_name["saga CreateOrder"]
    assert saga["traceId"] == trace_id and saga["spanId"] == saga_span_id
    assert isinstance(saga["kind"], int)
    assert by_name["saga.step confirm"]["status"]["code"] == 2
    assert by_name["saga.step charge"]["parentSpanId"] == saga_span_id
    compensate = by_name["saga.compensate charge"]
    assert compensate["links"][0]["spanId"] == by_name["saga.step confirm"]["spanId"]
    assert re.fullmatch(r"[0-9a-f]{32}", compensate["traceId"])


def test_logs_are_written_in_otlp_json_with_the_search_fields(tmp_path: Path) -> None:
    trace_id, _ = run_embedded(tmp_path)
    lines = (tmp_path / "order-service" / "logs.jsonl").read_text().splitlines()
    records = []
    for line in lines:
        document = json.loads(line)
        json_format.ParseDict(_hex_ids_to_base64(document), ExportLogsServiceRequest())
        for resource_logs in document["resourceLogs"]:
            for scope_logs in resource_logs["scopeLogs"]:
                records.extend(scope_logs["logRecords"])
    records.sort(key=lambda r: int(r["timeUnixNano"]))
    events = [
        next(a["value"]["stringValue"] for a in r["attributes"] if a["key"] == "event") for r in records
    ]
    assert events[0] == "saga.started" and events[-1] == "saga.finished"
    assert "log" in events  # the plain log.info inside the charge step
    assert "saga.compensation.completed" in events
    for record in records:
        attributes = {a["key"]: a["value"].get("stringValue") for a in record["attributes"]}
        assert attributes["correlation_id"] == "corr-9"
        assert attributes["saga.id"] == "saga-9" and attributes["order.id"] == "order-9"
        assert record["traceId"] == trace_id


def test_the_cli_views_read_the_files(tmp_path: Path) -> None:
    run_embedded(tmp_path)
    out = io.StringIO()
    assert trace_command("order-9", jaeger_url="", directory=tmp_path, out=out) == 0
    tree = out.getvalue()
    assert "saga CreateOrder" in tree and "[compensated]" in tree
    assert "saga.compensate charge" in tree and "COMPENSATION for saga.step confirm" in tree
    assert trace_command("corr-9", jaeger_url="", directory=tmp_path, out=io.StringIO()) == 0
    assert trace_command("nope", jaeger_url="", directory=tmp_path, out=io.StringIO()) == 1

    out = io.StringIO()
    assert logs_command("corr-9", elasticsearch_url="", directory=tmp_path, out=out) == 0
    printed = out.getvalue().splitlines()
    assert "saga.started" in printed[0] and "saga.finished" in printed[-1]
    assert all("order-service" in line for line in printed)
    assert logs_command("nope", elasticsearch_url="", directory=tmp_path, out=io.StringIO()) == 1
