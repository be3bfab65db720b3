"""Reading the services' OTLP-JSON lines files back, for ``sagascope trace`` and ``sagascope logs``.

The files are written by sagascope/common/telemetry/files.py (one request a line,
``<directory>/<service.name>/{traces,logs}.jsonl``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


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
