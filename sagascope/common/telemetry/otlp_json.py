"""SDK spans and log records encoded as OTLP/JSON: the files' format, one request a line.

One ``ExportTraceServiceRequest`` (or ``ExportLogsServiceRequest``) per line, in
the OTLP/JSON encoding the collector's ``otlpjsonfile`` receiver reads: protobuf
JSON with lowerCamelCase names, enums as integers, 64-bit integers as strings,
fields at their zero value left out, and trace/span ids as hex (OTLP/JSON's one
departure from the protobuf JSON mapping, which would use base64). So the files
can be replayed into a real collector later.

The SDK objects are encoded straight to that JSON, field for field what the SDK's
protobuf encoders (``opentelemetry.exporter.otlp.proto.common``) fill in, without
building protobuf messages and walking them back with ``json_format`` (see
benchmarks/FINDINGS.md for what that round trip cost). tests/unit/test_telemetry_files.py
keeps the protobuf path as the oracle and checks both give the same JSON.
"""

from __future__ import annotations

import base64
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind

from sagascope.common.telemetry.attributes import plain

# Named like the SDK encoders' logger: OtlpLogHandler drops "opentelemetry*" records, so an
# exporter's complaint about a bad attribute never loops back into the exporter.
_log = logging.getLogger("opentelemetry.exporter.sagascope.files")

JsonObject = dict[str, Any]


# ---- encoding: SDK objects -> OTLP/JSON ----------------------------------------------------------
#
# Keys are emitted in protobuf field-number order (what json_format does), and a field is left
# out exactly when protobuf JSON leaves it out: scalars at their zero value, empty repeated
# fields. Message-typed fields the SDK encoders always set (resource, scope, status, a log
# body, an attribute's value) are always present, possibly as ``{}``.

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# opentelemetry.proto.trace.v1.Span.SpanKind
_SPAN_KIND = {
    SpanKind.INTERNAL: 1,
    SpanKind.SERVER: 2,
    SpanKind.CLIENT: 3,
    SpanKind.PRODUCER: 4,
    SpanKind.CONSUMER: 5,
}
# opentelemetry.proto.trace.v1.SpanFlags
_FLAGS_HAS_IS_REMOTE = 0x100
_FLAGS_IS_REMOTE = 0x200


def _int64(value: int) -> str:
    value = int(value)  # an IntEnum is its number, as protobuf stores it
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError(f"Value out of range: {value}")
    return str(value)


def _double(value: float) -> float | str:
    value = float(value)
    if math.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    if math.isnan(value):
        return "NaN"
    return value


def _any_value(value: Any) -> JsonObject:
    """An ``AnyValue``; the type checks in the SDK's ``_encode_value`` order (bool before int)."""
    kind = type(value)
    if kind is str:
        return {"stringValue": value}
    if kind is bool:
        return {"boolValue": value}
    if kind is int:
        return {"intValue": _int64(value)}
    if kind is float:
        return {"doubleValue": _double(value)}
    if value is None:
        return {}
    if isinstance(value, bool):
        return {"boolValue": bool(value)}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, int):
        return {"intValue": _int64(value)}
    if isinstance(value, float):
        return {"doubleValue": _double(value)}
    if isinstance(value, bytes):
        return {"bytesValue": base64.b64encode(value).decode("ascii")}
    if isinstance(value, Sequence):
        items = [_any_value(item) for item in value]
        return {"arrayValue": {"values": items} if items else {}}
    if isinstance(value, Mapping):
        pairs = [_key_value(str(key), item) for key, item in value.items()]
        return {"kvlistValue": {"values": pairs} if pairs else {}}
    raise TypeError(f"Invalid type {type(value)} of value {value}")


def _key_value(key: str, value: Any) -> JsonObject:
    if key:
        return {"key": key, "value": _any_value(value)}
    return {"value": _any_value(value)}


def _attributes(attributes: Mapping[str, Any] | None) -> list[JsonObject]:
    """Like the SDK: an attribute that cannot be encoded is logged and left out, not fatal."""
    if not attributes:
        return []
    encoded = []
    for key, value in plain(attributes).items():
        kind = type(value)
        if kind is str and key:
            encoded.append({"key": key, "value": {"stringValue": value}})
            continue
        try:
            encoded.append(_key_value(key, value))
        except Exception as error:
            _log.exception("Failed to encode key %s: %s", key, error)
    return encoded


def _put_attributes(target: JsonObject, attributes: Mapping[str, Any] | None, dropped: int) -> None:
    encoded = _attributes(attributes)
    if encoded:
        target["attributes"] = encoded
    if dropped:
        target["droppedAttributesCount"] = dropped


class _IdentityCache:
    """Encoded resources and scopes, by object identity (both are immutable once created).

    Holds a reference to each object it has seen, so an id is never reused while cached.
    """

    def __init__(self, encode: Callable[[Any], JsonObject], size: int = 64) -> None:
        self._encode = encode
        self._size = size
        self._entries: dict[int, tuple[Any, JsonObject]] = {}

    def get(self, obj: Any) -> JsonObject:
        entry = self._entries.get(id(obj))
        if entry is not None and entry[0] is obj:
            return entry[1]
        encoded = self._encode(obj)
        if len(self._entries) >= self._size:
            self._entries.clear()
        self._entries[id(obj)] = (obj, encoded)
        return encoded


def _encode_resource(resource: Resource | None) -> JsonObject:
    encoded: JsonObject = {}
    if resource is not None:
        attributes = _attributes(resource.attributes)
        if attributes:
            encoded["attributes"] = attributes
    return encoded


def _encode_scope(scope: InstrumentationScope | None) -> JsonObject:
    encoded: JsonObject = {}
    if scope is not None:
        if scope.name:
            encoded["name"] = scope.name
        if scope.version:
            encoded["version"] = scope.version
        attributes = _attributes(scope.attributes)
        if attributes:
            encoded["attributes"] = attributes
    return encoded


_resources = _IdentityCache(_encode_resource)
_scopes = _IdentityCache(_encode_scope)

_Groups = list[tuple[Resource, dict[InstrumentationScope | None, list[JsonObject]]]]


def _group(groups: _Groups, resource: Resource) -> dict[InstrumentationScope | None, list[JsonObject]]:
    """The scope groups of ``resource``: equal resources share one, as in the SDK's dict grouping."""
    for known, scopes in groups:
        if known is resource or (hash(known) == hash(resource) and known == resource):
            return scopes
    scopes = {}
    groups.append((resource, scopes))
    return scopes


def _request(groups: _Groups, items_key: str, scope_key: str, resource_key: str) -> JsonObject:
    resource_entries = []
    for resource, scopes in groups:
        scope_entries = []
        for scope, items in scopes.items():
            scope_entry: JsonObject = {"scope": _scopes.get(scope), items_key: items}
            if scope is not None and scope.schema_url:
                scope_entry["schemaUrl"] = scope.schema_url
            scope_entries.append(scope_entry)
        resource_entry: JsonObject = {"resource": _resources.get(resource), scope_key: scope_entries}
        if resource is not None and resource.schema_url:
            resource_entry["schemaUrl"] = resource.schema_url
        resource_entries.append(resource_entry)
    return {resource_key: resource_entries}


def _span_flags(context: SpanContext | None) -> int:
    if context is not None and context.is_remote:
        return _FLAGS_HAS_IS_REMOTE | _FLAGS_IS_REMOTE
    return _FLAGS_HAS_IS_REMOTE


def _encode_span(span: ReadableSpan) -> JsonObject:
    context = span.context
    assert context is not None
    encoded: JsonObject = {"traceId": format(context.trace_id, "032x"), "spanId": format(context.span_id, "016x")}
    trace_state = context.trace_state
    if trace_state:
        encoded["traceState"] = ",".join(f"{key}={value}" for key, value in trace_state.items())
    parent = span.parent
    if parent is not None:
        encoded["parentSpanId"] = format(parent.span_id, "016x")
    if span.name:
        encoded["name"] = span.name
    encoded["kind"] = _SPAN_KIND[span.kind]
    if span.start_time:
        encoded["startTimeUnixNano"] = str(span.start_time)
    if span.end_time:
        encoded["endTimeUnixNano"] = str(span.end_time)
    _put_attributes(encoded, span.attributes, span.dropped_attributes)
    span_events = span.events  # each read of the property copies the SDK's list
    if span_events:
        events = []
        for event in span_events:
            encoded_event: JsonObject = {}
            if event.timestamp:
                encoded_event["timeUnixNano"] = str(event.timestamp)
            if event.name:
                encoded_event["name"] = event.name
            _put_attributes(encoded_event, event.attributes, event.dropped_attributes)
            events.append(encoded_event)
        encoded["events"] = events
    if span.dropped_events:
        encoded["droppedEventsCount"] = span.dropped_events
    span_links = span.links
    if span_links:
        links = []
        for link in span_links:
            encoded_link: JsonObject = {
                "traceId": format(link.context.trace_id, "032x"),
                "spanId": format(link.context.span_id, "016x"),
            }
            _put_attributes(encoded_link, link.attributes, link.dropped_attributes)
            encoded_link["flags"] = _span_flags(link.context)
            links.append(encoded_link)
        encoded["links"] = links
    if span.dropped_links:
        encoded["droppedLinksCount"] = span.dropped_links
    status: JsonObject = {}
    if span.status.description:
        status["message"] = span.status.description
    if span.status.status_code.value:
        status["code"] = span.status.status_code.value
    encoded["status"] = status
    encoded["flags"] = _span_flags(parent)
    return encoded


def _encode_log(readable: ReadableLogRecord) -> JsonObject:
    record = readable.log_record
    encoded: JsonObject = {}
    if record.timestamp:
        encoded["timeUnixNano"] = str(record.timestamp)
    severity = getattr(record.severity_number, "value", None)
    if severity:
        encoded["severityNumber"] = severity
    if record.severity_text:
        encoded["severityText"] = record.severity_text
    encoded["body"] = _any_value(record.body)
    _put_attributes(encoded, record.attributes, readable.dropped_attributes)
    flags = int(record.trace_flags) if record.trace_flags is not None else 0
    if flags:
        encoded["flags"] = flags
    if record.trace_id:
        encoded["traceId"] = format(record.trace_id, "032x")
    if record.span_id:
        encoded["spanId"] = format(record.span_id, "016x")
    if record.observed_timestamp:
        encoded["observedTimeUnixNano"] = str(record.observed_timestamp)
    if record.event_name:
        encoded["eventName"] = record.event_name
    return encoded


def spans_request(spans: Sequence[ReadableSpan]) -> JsonObject:
    """An ``ExportTraceServiceRequest`` as OTLP/JSON: spans grouped by resource, then scope."""
    groups: _Groups = []
    last_resource: Resource | None = None
    scopes: dict[InstrumentationScope | None, list[JsonObject]] = {}
    for span in spans:
        if span.resource is not last_resource or not groups:
            last_resource = span.resource
            scopes = _group(groups, span.resource)
        scopes.setdefault(span.instrumentation_scope or None, []).append(_encode_span(span))
    return _request(groups, "spans", "scopeSpans", "resourceSpans")


def logs_request(batch: Sequence[ReadableLogRecord]) -> JsonObject:
    """An ``ExportLogsServiceRequest`` as OTLP/JSON: records grouped by resource, then scope."""
    groups: _Groups = []
    last_resource: Resource | None = None
    scopes: dict[InstrumentationScope | None, list[JsonObject]] = {}
    for readable in batch:
        if readable.resource is not last_resource or not groups:
            last_resource = readable.resource
            scopes = _group(groups, readable.resource)
        scopes.setdefault(readable.instrumentation_scope or None, []).append(_encode_log(readable))
    return _request(groups, "logRecords", "scopeLogs", "resourceLogs")


def dumps(request: JsonObject) -> bytes:
    # orjson: a sixteenth of the time json.dumps takes for these nested requests, same compact output
    # (tests/unit/test_telemetry_files.py compares it with the protobuf path's). UTF-8 bytes, which
    # the files take as they are.
    return orjson.dumps(request)


def encode_spans_json(spans: Sequence[ReadableSpan]) -> str:
    """One line of OTLP/JSON for ``spans``."""
    return dumps(spans_request(spans)).decode()


def encode_logs_json(batch: Sequence[ReadableLogRecord]) -> str:
    """One line of OTLP/JSON for ``batch``."""
    return dumps(logs_request(batch)).decode()
