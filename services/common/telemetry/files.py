"""OTLP-JSON lines files: the embedded default when no OTLP endpoint is set.

One ``ExportTraceServiceRequest`` (or ``ExportLogsServiceRequest``) per line, in
the OTLP/JSON encoding the collector's ``otlpjsonfile`` receiver reads: protobuf
JSON with lowerCamelCase names, enums as integers, and trace/span ids as hex
(OTLP/JSON's one departure from the protobuf JSON mapping, which would use base64).
So the files can be replayed into a real collector later.

Layout: ``<directory>/<service.name>/traces.jsonl`` and ``logs.jsonl``.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

TRACES_FILE = "traces.jsonl"
LOGS_FILE = "logs.jsonl"
_ID_FIELDS = frozenset({"traceId", "spanId", "parentSpanId"})


def service_directory(directory: Path, service_name: str) -> Path:
    return directory / service_name


def to_otlp_json(message: Message) -> str:
    """One line of OTLP/JSON for an OTLP export request."""
    data = json_format.MessageToDict(message, use_integers_for_enums=True)
    return json.dumps(_ids_to_hex(data), separators=(",", ":"))


def _ids_to_hex(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: (
                base64.b64decode(value).hex()
                if key in _ID_FIELDS and isinstance(value, str)
                else _ids_to_hex(value)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_ids_to_hex(item) for item in node]
    return node


class _JsonLinesFile:
    """Appends whole lines under a lock (the batch processors export from their own thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, line: str) -> None:
        with self._lock, self.path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")


class OtlpJsonFileSpanExporter(SpanExporter):
    def __init__(self, path: Path) -> None:
        self._file = _JsonLinesFile(path)

    @property
    def path(self) -> Path:
        return self._file.path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not spans:
            return SpanExportResult.SUCCESS
        try:
            self._file.append(to_otlp_json(encode_spans(spans)))
        except OSError:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class OtlpJsonFileLogExporter(LogRecordExporter):
    def __init__(self, path: Path) -> None:
        self._file = _JsonLinesFile(path)

    @property
    def path(self) -> Path:
        return self._file.path

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        if not batch:
            return LogRecordExportResult.SUCCESS
        try:
            self._file.append(to_otlp_json(encode_logs(batch)))
        except OSError:
            return LogRecordExportResult.FAILURE
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


# ---- reading the files back (the CLI's trace and logs views) ----------------------------------


def any_value(value: dict[str, Any]) -> Any:
    """An OTLP/JSON ``AnyValue`` as a plain Python value."""
    if "stringValue" in value:
        return value["stringValue"]
    if "boolValue" in value:
        return value["boolValue"]
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "arrayValue" in value:
        return [any_value(item) for item in value["arrayValue"].get("values", [])]
    if "kvlistValue" in value:
        return attributes(value["kvlistValue"].get("values", []))
    if "bytesValue" in value:
        return value["bytesValue"]
    return None


def attributes(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {item["key"]: any_value(item.get("value", {})) for item in items}


def read_lines(path: Path) -> Iterator[dict[str, Any]]:
    """Each JSON line of ``path``; a torn last line (a process killed mid-write) is skipped."""
    if not path.exists():
        return
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def iter_spans(path: Path) -> Iterator[dict[str, Any]]:
    """Flattened spans: the OTLP/JSON span plus ``service`` and decoded ``attrs``."""
    for request in read_lines(path):
        for resource_spans in request.get("resourceSpans", []):
            resource = attributes(resource_spans.get("resource", {}).get("attributes", []))
            for scope_spans in resource_spans.get("scopeSpans", []):
                for span in scope_spans.get("spans", []):
                    yield {
                        **span,
                        "service": resource.get("service.name", "?"),
                        "attrs": attributes(span.get("attributes", [])),
                    }


def iter_log_records(path: Path) -> Iterator[dict[str, Any]]:
    """Flattened log records: the OTLP/JSON record plus ``service``, decoded ``attrs`` and ``text``."""
    for request in read_lines(path):
        for resource_logs in request.get("resourceLogs", []):
            resource = attributes(resource_logs.get("resource", {}).get("attributes", []))
            for scope_logs in resource_logs.get("scopeLogs", []):
                for record in scope_logs.get("logRecords", []):
                    body = any_value(record.get("body", {}))
                    yield {
                        **record,
                        "service": resource.get("service.name", "?"),
                        "attrs": attributes(record.get("attributes", [])),
                        "text": body if isinstance(body, str) else json.dumps(body),
                    }


def service_files(directory: Path, filename: str) -> list[Path]:
    """``<directory>/*/<filename>``: one file per service that has written any."""
    if not directory.is_dir():
        return []
    return sorted(path for path in directory.glob(f"*/{filename}") if path.is_file())
