"""Without an endpoint, spans and logs land in OTLP-JSON lines files the otlpjsonfile receiver reads."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import warnings
from enum import IntEnum
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry import context, trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from sagascope.cli.logs_view import logs_command
from sagascope.cli.trace_view import trace_command
from sagascope.common.telemetry import TelemetrySettings, init_telemetry
from sagascope.common.telemetry.otlp_json import encode_logs_json, encode_spans_json
from sagascope.saga.observer import SagaRun
from sagascope.saga.telemetry import saga_observer

log = logging.getLogger("tests.files")


def run_embedded(directory: Path, service: str = "order-service") -> tuple[str, str]:
    """A compensated saga through the embedded default (batch processors, file exporters)."""
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    telemetry = init_telemetry(service, settings=TelemetrySettings(directory=directory), stream=io.StringIO())
    try:
        with saga_observer(telemetry).saga(
            SagaRun("saga-9", "CreateOrder", "corr-9", {"order.id": "order-9"})
        ) as scope:
            scope.started()  # as the executor does once the saga row is written
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


# ---- the direct encoder gives exactly the JSON of the SDK's protobuf encoders ------------------


def _oracle(message: Message) -> Any:
    """The old path: the SDK's protobuf request, protobuf JSON, then ids from base64 to hex."""
    return _base64_ids_to_hex(json_format.MessageToDict(message, use_integers_for_enums=True))


def _base64_ids_to_hex(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: base64.b64decode(value).hex()
            if key in ("traceId", "spanId", "parentSpanId") and isinstance(value, str)
            else _base64_ids_to_hex(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_base64_ids_to_hex(item) for item in node]
    return node


class _Priority(IntEnum):
    HIGH = 3


_ODD_ATTRIBUTES: dict[str, Any] = {
    "empty": "",
    "zero": 0,
    "negative": -(2**63),
    "false": False,
    "zero.float": 0.0,
    "inf": float("inf"),
    "-inf": float("-inf"),
    "nan": float("nan"),
    "enum": _Priority.HIGH,
    "bytes": b"\x00\xffraw",
    "no.bytes": b"",
    "tuple": ("a", "b"),
    "empty.list": [],
    "mixed": [1, "x", None, 2.5, True],
    "nested": {"k": [1, {"deep": b"\x01"}], "none": None, "": "unnamed"},
    "too.big": 2**70,  # not an int64: both encoders log it and leave it out
    "": "empty key",
}


def _realistic_spans() -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    limits = SpanLimits(
        max_span_attributes=8, max_events=2, max_links=3, max_event_attributes=2, max_link_attributes=2
    )
    resource = Resource(
        {"service.name": "order-service", "service.instance.id": "i-1"}, "https://opentelemetry.io/schemas/1.21.0"
    )
    provider = TracerProvider(resource=resource, span_limits=limits)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    other = TracerProvider(resource=Resource({"service.name": "payment-service"}))
    other.add_span_processor(SimpleSpanProcessor(exporter))
    # An equal resource in another object groups with the first, as in the SDK's dict grouping.
    twin = TracerProvider(resource=Resource(dict(resource.attributes), resource.schema_url))
    twin.add_span_processor(SimpleSpanProcessor(exporter))

    saga_tracer = provider.get_tracer("sagascope.saga")
    grpc_tracer = provider.get_tracer(
        "opentelemetry.instrumentation.grpc", "0.66b1", "https://opentelemetry.io/schemas/1.11.0", {"scope.attr": 1}
    )
    remote = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0x00F067AA0BA902B7,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("vendor", "value"), ("other", "x")]),
    )
    with grpc_tracer.start_as_current_span(
        "/sagascope.orders.v1.OrderService/CreateOrder",
        context=trace.set_span_in_context(NonRecordingSpan(remote)),
        kind=SpanKind.SERVER,
        attributes={"rpc.system": "grpc", "rpc.grpc.status_code": 0, "correlation_id": "corr-1"},
    ):
        with saga_tracer.start_as_current_span(
            "saga CreateOrder",
            attributes={
                "saga.id": "saga-1",
                "order.id": "order-1",
                "amount": 25.5,
                "retry": True,
                "steps": ["charge", "confirm"],
                "indexes": [1, 2],
                "weights": [0.5, 1.5],
                "flags": [True, False],
            },
        ) as saga:
            with saga_tracer.start_as_current_span("saga.step charge", attributes={"saga.step.index": 1}) as charge:
                pass
            with saga_tracer.start_as_current_span(
                "saga.compensate charge",
                kind=SpanKind.INTERNAL,
                links=[  # the SDK keeps the newest three: droppedLinksCount
                    Link(remote, {"over": "the link limit"}),
                    Link(charge.get_span_context(), {"link.kind": "compensates", "a": 1, "dropped": 2}),
                    Link(remote, {"origin": "resumed"}),
                    Link(remote),
                ],
                attributes={f"attr.{i}": i for i in range(10)},  # over the limit: droppedAttributesCount
            ) as compensate:
                compensate.add_event("first (the SDK keeps the newest two: droppedEventsCount)")
                compensate.add_event("saga.compensation.reason", {"reason": "out of stock", "x": 1, "y": 2})
                compensate.add_event("second", timestamp=1_700_000_000_000_000_000)
                compensate.set_status(Status(StatusCode.ERROR, "out of stock"))
            for kind in (SpanKind.CLIENT, SpanKind.PRODUCER, SpanKind.CONSUMER):
                with saga_tracer.start_as_current_span(f"kind {kind.name}", kind=kind) as span:
                    span.set_status(Status(StatusCode.OK))
            saga.set_attribute("saga.outcome", "compensated")
            try:
                raise ValueError("boom")
            except ValueError as exc:
                saga.record_exception(exc)
    other.get_tracer("payment").start_span("payment span", attributes={"payment.id": "p-1"}).end()
    twin.get_tracer("sagascope.saga").start_span("twin span").end()
    spans = list(exporter.get_finished_spans())
    # What the SDK never builds itself but a hand-made ReadableSpan may carry.
    spans.append(
        ReadableSpan(
            name="",
            context=SpanContext(trace_id=1, span_id=2, is_remote=False),
            parent=SpanContext(trace_id=1, span_id=3, is_remote=True),
            resource=Resource({}),
            attributes=_ODD_ATTRIBUTES,
            events=[Event("odd", _ODD_ATTRIBUTES, 5)],
            links=[Link(SpanContext(trace_id=1, span_id=4, is_remote=False), {"": 0})],
            kind=SpanKind.CLIENT,
            status=Status(StatusCode.UNSET),
            start_time=0,
            end_time=10,
            instrumentation_scope=None,
        )
    )
    return spans


def _realistic_log_records() -> list[ReadableLogRecord]:
    exporter = InMemoryLogRecordExporter()
    resource = Resource({"service.name": "order-service", "count": 3}, "https://opentelemetry.io/schemas/1.21.0")
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    tracer_provider = TracerProvider(resource=resource)
    saga_logger = provider.get_logger("sagascope.saga.telemetry")
    other_logger = provider.get_logger("tests.files", "1.0", "https://example.com/schema", {"scope": "attr"})

    with tracer_provider.get_tracer("t").start_as_current_span("saga CreateOrder"):
        saga_logger.emit(
            timestamp=1_700_000_000_123_000_000,
            observed_timestamp=1_700_000_000_124_000_000,
            context=context.get_current(),
            severity_number=SeverityNumber.INFO,
            severity_text="INFO",
            body="step charge completed",
            attributes={
                "event": "saga.step.completed",
                "saga.id": "saga-1",
                "saga.step.index": 1,
                "amount": 25.5,
                "ok": True,
                "tags": ["a", "b"],
            },
            event_name="saga.step.completed",
        )
        saga_logger.emit(
            timestamp=1_700_000_000_125_000_000,
            observed_timestamp=1_700_000_000_126_000_000,
            context=context.get_current(),
            severity_number=SeverityNumber.ERROR,
            severity_text="ERROR",
            body={"message": "compensation failed", "attempts": [1, 2], "detail": {"code": 14, "raw": b"\x01"}},
            attributes=_ODD_ATTRIBUTES,
        )
    # Outside a span: no trace context, no flags; no severity; no body.
    other_logger.emit(observed_timestamp=1_700_000_000_127_000_000, context=context.Context())
    other_logger.emit(
        timestamp=1,
        observed_timestamp=2,
        context=context.Context(),
        severity_number=SeverityNumber.WARN,
        body=b"\x00bytes body",
        attributes={"payment.id": "p-1"},
    )
    return list(exporter.get_finished_logs())


def test_the_direct_span_encoder_gives_the_protobuf_encoders_json() -> None:
    spans = _realistic_spans()
    new = encode_spans_json(spans)
    old = _oracle(encode_spans(spans))
    assert json.loads(new) == old
    # The test covers what it says: groups, parents, links, events, drops, status, schema urls.
    assert len(old["resourceSpans"]) == 3
    text = json.dumps(old)
    for field in ("parentSpanId", "traceState", "droppedEventsCount", "droppedLinksCount", "schemaUrl", "events"):
        assert f'"{field}"' in text, field
    compensate = next(
        span
        for resource_spans in old["resourceSpans"]
        for scope_spans in resource_spans["scopeSpans"]
        for span in scope_spans["spans"]
        if span.get("name") == "saga.compensate charge"
    )
    assert compensate["droppedAttributesCount"] == 2
    assert compensate["events"][0]["droppedAttributesCount"] == 1
    assert compensate["links"][0]["droppedAttributesCount"] == 1
    assert compensate["status"] == {"code": 2, "message": "out of stock"}
    assert '"flags": 768' in text and '"bytesValue"' in text and '"NaN"' in text and '"kvlistValue"' in text


def test_the_direct_log_encoder_gives_the_protobuf_encoders_json() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the SDK warns about the attribute it drops
        records = _realistic_log_records()
    new = encode_logs_json(records)
    old = _oracle(encode_logs(records))
    assert json.loads(new) == old
    text = json.dumps(old)
    for field in ("traceId", "spanId", "flags", "eventName", "severityNumber", "kvlistValue", "schemaUrl"):
        assert f'"{field}"' in text, field
    assert '"droppedAttributesCount": 1' in text  # the empty key the SDK refuses


def test_the_files_match_the_protobuf_encoders_for_a_real_saga_run(tmp_path: Path) -> None:
    """The embedded default end to end: what the batch processors wrote, re-read, equals the oracle."""

    run_embedded(tmp_path)
    for line in (tmp_path / "order-service" / "traces.jsonl").read_text().splitlines():
        document = json.loads(line)
        request = json_format.ParseDict(_hex_ids_to_base64(document), ExportTraceServiceRequest())
        assert _oracle(request) == document
    for line in (tmp_path / "order-service" / "logs.jsonl").read_text().splitlines():
        document = json.loads(line)
        request = json_format.ParseDict(_hex_ids_to_base64(document), ExportLogsServiceRequest())
        assert _oracle(request) == document


def _append_lines(path: str, writer: int, count: int) -> None:
    from sagascope.common.telemetry.files import _JsonLinesSink

    sink = _JsonLinesSink(Path(path))
    for n in range(count):
        # ~200 KB a line: well past any stdio buffer, as a real export batch is.
        sink._append(json.dumps({"writer": writer, "n": n, "pad": "x" * 200_000}).encode())


def test_two_processes_appending_to_one_file_keep_every_line_whole(tmp_path: Path) -> None:
    # Order replicas share a service's files: each batch must land as one unbroken line.
    import multiprocessing

    path = tmp_path / "logs.jsonl"
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_append_lines, args=(str(path), w, 40)) for w in (1, 2)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(60)
        assert process.exitcode == 0
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    records = [json.loads(line) for line in lines[:-1]]
    assert sorted((r["writer"], r["n"]) for r in records) == [(w, n) for w in (1, 2) for n in range(40)]
