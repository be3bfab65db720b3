"""OTLP-JSON lines files: the embedded default when no OTLP endpoint is set.

Python's SDK has no file exporter, so these two write one OTLP/JSON request
(otlp_json.py) per line, appended under a lock. The CLI reads them back
(sagascope/cli/otlp_files.py); services never do.

Layout: ``<directory>/<service.name>/traces.jsonl`` and ``logs.jsonl``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from sagascope.common.telemetry.otlp_json import dumps, logs_request, spans_request

TRACES_FILE = "traces.jsonl"
LOGS_FILE = "logs.jsonl"


def service_directory(directory: Path, service_name: str) -> Path:
    return directory / service_name


class _JsonLinesSink:
    """What both file exporters share: whole lines appended under a lock (the batch processors
    export from their own threads), nothing to flush or close between batches."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def _append(self, line: bytes) -> bool:
        """``line`` (a whole batch as UTF-8 JSON, ~100 KB) written as it is, no str round trip,
        in ONE unbuffered append: order replicas share a service's file, and O_APPEND keeps a single
        write whole where two could interleave with another process's line."""
        try:
            with self._lock, self.path.open("ab", buffering=0) as handle:
                handle.write(line + b"\n")
        except OSError:
            return False
        return True

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class OtlpJsonFileSpanExporter(_JsonLinesSink, SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if spans and not self._append(dumps(spans_request(spans))):
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS


class OtlpJsonFileLogExporter(_JsonLinesSink, LogRecordExporter):
    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        if batch and not self._append(dumps(logs_request(batch))):
            return LogRecordExportResult.FAILURE
        return LogRecordExportResult.SUCCESS
