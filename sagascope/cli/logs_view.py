"""``sagascope logs <correlation-id>``: every log record of one request, from all services.

From Elasticsearch when ``ELASTICSEARCH_URL`` is set (index pattern
``ELASTICSEARCH_LOGS_INDEX``, default ``logs-*``), otherwise from the OTLP-JSON
files under ``var/telemetry/`` (``SAGASCOPE_TELEMETRY_DIR``). Records are printed
oldest first, one a line: time, service, level, event, message, and the saga fields.

The CLI (sagascope/cli/main.py) calls :func:`logs_command`.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from sagascope.cli.otlp_files import iter_log_records, service_files
from sagascope.cli.view_output import print_view
from sagascope.common.telemetry.files import LOGS_FILE

ELASTICSEARCH_URL = "ELASTICSEARCH_URL"
ELASTICSEARCH_LOGS_INDEX = "ELASTICSEARCH_LOGS_INDEX"
TELEMETRY_DIR = "SAGASCOPE_TELEMETRY_DIR"
DEFAULT_DIR = Path("var/telemetry")
SHOWN_FIELDS = ("saga.id", "saga.step", "order.id", "payment.id")
# Where the collector's elasticsearch exporter puts a log attribute, by mapping mode (otel, ecs, raw),
# and where it sits when the JSON stdout line itself is shipped.
_CORRELATION_FIELDS = (
    "attributes.correlation_id",
    "labels.correlation_id",
    "Attributes.correlation_id",
    "correlation_id",
)
_HTTP_TIMEOUT_S = 10.0
_SEVERITY_NAMES = {1: "TRACE", 5: "DEBUG", 9: "INFO", 13: "WARNING", 17: "ERROR", 21: "CRITICAL"}


@dataclass
class LogRow:
    timestamp: str
    service: str
    level: str
    message: str
    event: str = ""
    trace_id: str = ""
    span_id: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    # For ordering records from several services (and scopes) exactly.
    time_ns: int = 0


def _iso(nanos: int) -> str:
    return (
        datetime.fromtimestamp(nanos / 1e9, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def logs_from_files(directory: Path, correlation_id: str) -> list[LogRow]:
    rows = []
    for path in service_files(directory, LOGS_FILE):
        for record in iter_log_records(path):
            attrs = record["attrs"]
            if attrs.get("correlation_id") != correlation_id:
                continue
            level = record.get("severityText") or _SEVERITY_NAMES.get(
                int(record.get("severityNumber", 0)), ""
            )
            rows.append(
                LogRow(
                    timestamp=_iso(int(record.get("timeUnixNano", 0))),
                    service=record["service"],
                    level="WARNING" if level == "WARN" else level,
                    message=record["text"],
                    event=str(attrs.get("event") or record.get("eventName") or ""),
                    trace_id=record.get("traceId", ""),
                    span_id=record.get("spanId", ""),
                    attributes=attrs,
                    time_ns=int(record.get("timeUnixNano", 0)),
                )
            )
    rows.sort(key=lambda row: row.time_ns)
    return rows


def _lookup(document: dict[str, Any], path: str) -> Any:
    """``a.b.c`` in a document whose keys may be nested objects or literal dotted names."""
    if path in document:
        return document[path]
    head, _, rest = path.partition(".")
    while rest:
        if head in document and isinstance(document[head], dict):
            found = _lookup(document[head], rest)
            if found is not None:
                return found
        nxt, _, rest = rest.partition(".")
        head = f"{head}.{nxt}"
    return document.get(head) if head != path else None


def _first(document: dict[str, Any], *paths: str) -> Any:
    for path in paths:
        value = _lookup(document, path)
        if value not in (None, ""):
            return value
    return None


def _row_from_document(doc: dict[str, Any], formatted_timestamp: str | None = None) -> LogRow:
    attributes = _first(doc, "attributes", "Attributes", "labels") or {}
    if not isinstance(attributes, dict):
        attributes = {}
    body = _first(doc, "body.text", "Body", "message", "body")
    return LogRow(
        timestamp=formatted_timestamp or str(_first(doc, "@timestamp", "timestamp") or ""),
        service=str(
            _first(doc, "resource.attributes.service.name", "Resource.service.name", "service.name") or "?"
        ),
        level=str(_first(doc, "severity_text", "SeverityText", "log.level", "level") or ""),
        message=body if isinstance(body, str) else json.dumps(body),
        event=str(
            _first(doc, "attributes.event", "Attributes.event", "labels.event", "event_name", "event") or ""
        ),
        trace_id=str(_first(doc, "trace_id", "TraceId", "trace.id") or ""),
        span_id=str(_first(doc, "span_id", "SpanId", "span.id") or ""),
        attributes={str(k): v for k, v in attributes.items()},
    )


def logs_from_elasticsearch(
    base_url: str, correlation_id: str, index: str = "logs-*", size: int = 1000
) -> list[LogRow]:
    query = {
        "size": size,
        "sort": [{"@timestamp": {"order": "asc", "unmapped_type": "date"}}],
        # The exporter stores @timestamp as epoch milliseconds ("1795955156611.144192"); ask
        # Elasticsearch for the ISO form the file reader prints too.
        "fields": [{"field": "@timestamp", "format": "strict_date_optional_time"}],
        "query": {
            "bool": {
                "should": [{"term": {name: correlation_id}} for name in _CORRELATION_FIELDS]
                + [{"term": {f"{name}.keyword": correlation_id}} for name in _CORRELATION_FIELDS],
                "minimum_should_match": 1,
            }
        },
    }
    request = urllib.request.Request(
        f"{base_url.rstrip('/')}/{index}/_search?ignore_unavailable=true&allow_no_indices=true",
        data=json.dumps(query).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=_HTTP_TIMEOUT_S) as response:
        result = json.loads(response.read())
    return [
        _row_from_document(hit.get("_source", {}), (hit.get("fields", {}).get("@timestamp") or [None])[0])
        for hit in result.get("hits", {}).get("hits", [])
    ]


def render_logs(rows: list[LogRow]) -> str:
    lines = []
    for row in rows:
        fields = " ".join(f"{key}={row.attributes[key]}" for key in SHOWN_FIELDS if row.attributes.get(key))
        line = f"{row.timestamp}  {row.service:<18} {row.level:<7} {row.event or '-':<28} {row.message}"
        lines.append(f"{line}  {fields}" if fields else line)
    return "\n".join(lines)


def load_logs(
    correlation_id: str,
    *,
    elasticsearch_url: str | None = None,
    directory: Path | None = None,
    index: str | None = None,
) -> list[LogRow]:
    if elasticsearch_url:
        return logs_from_elasticsearch(
            elasticsearch_url, correlation_id, index or os.environ.get(ELASTICSEARCH_LOGS_INDEX) or "logs-*"
        )
    return logs_from_files(directory or DEFAULT_DIR, correlation_id)


def logs_command(
    correlation_id: str,
    *,
    elasticsearch_url: str | None = None,
    directory: Path | None = None,
    out: TextIO | None = None,
) -> int:
    """Print the correlated records; 0 when some were found, 1 when none (hint on stderr)."""
    out = out or sys.stdout
    if elasticsearch_url is None:
        elasticsearch_url = os.environ.get(ELASTICSEARCH_URL) or None
    directory = directory or Path(os.environ.get(TELEMETRY_DIR) or DEFAULT_DIR)
    source = f"Elasticsearch at {elasticsearch_url}" if elasticsearch_url else f"files under {directory}"
    return print_view(
        lambda: load_logs(correlation_id, elasticsearch_url=elasticsearch_url, directory=directory),
        lambda rows: render_logs(list(rows)),
        what="logs",
        source=source,
        nothing=f"no log records with correlation_id {correlation_id!r}",
        out=out,
    )
