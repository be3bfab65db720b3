"""The CLI's trace tree and log views: selection, rendering, Jaeger and Elasticsearch parsing."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any

from sagascope.cli.logs_view import LogRow, logs_command, render_logs
from sagascope.cli.trace_view import SpanRow, render_tree, select_traces, trace_command
from tests.support.http_server import serving

T1, T2, T3 = "1" * 32, "2" * 32, "3" * 32
MS = 1_000_000


def row(
    trace_id: str, span_id: str, parent: str | None, service: str, name: str, start: int, end: int, **kw: Any
) -> SpanRow:
    return SpanRow(trace_id, span_id, parent, service, name, start * MS, end * MS, **kw)


SPANS = [
    row(T1, "a" * 16, None, "order-service", "/sagascope.orders.v1.OrderService/CreateOrder", 0, 50),
    row(
        T1,
        "b" * 16,
        "a" * 16,
        "order-service",
        "saga CreateOrder",
        1,
        49,
        attributes={"order.id": "o-1", "correlation_id": "c-1", "saga.outcome": "compensated"},
    ),
    row(T1, "c" * 16, "b" * 16, "order-service", "saga.step charge", 2, 20),
    row(
        T1,
        "d" * 16,
        "c" * 16,
        "payment-service",
        "/sagascope.payments.v1.PaymentService/ProcessPayment",
        5,
        18,
    ),
    row(
        T1,
        "e" * 16,
        "b" * 16,
        "order-service",
        "saga.step confirm",
        21,
        22,
        status="error",
        status_message="out of stock",
        events=["retry"],
    ),
    row(
        T1,
        "f" * 16,
        "b" * 16,
        "order-service",
        "saga.compensate charge",
        23,
        40,
        attributes={"saga.compensation": True},
        links=[(T1, "e" * 16)],
    ),
    # the same saga, resumed after a restart: a new trace linked to the first
    row(
        T2,
        "1" * 16,
        None,
        "order-service",
        "saga CreateOrder",
        100,
        120,
        attributes={"saga.resumed": True, "saga.outcome": "compensated"},
        links=[(T1, "b" * 16)],
    ),
    # an unrelated trace
    row(T3, "9" * 16, None, "order-service", "saga CreateOrder", 200, 210, attributes={"order.id": "o-2"}),
]


def test_select_traces_follows_links_to_resumed_runs_in_both_directions() -> None:
    assert select_traces(SPANS, "o-1") == [T1, T2]
    assert select_traces(SPANS, "c-1") == [T1, T2]
    assert select_traces(SPANS, "o-2") == [T3]
    assert select_traces(SPANS, "missing") == []


def test_render_tree_nests_by_parent_and_marks_errors_compensations_and_resumes() -> None:
    text = render_tree([span for span in SPANS if span.trace_id in (T1, T2)])
    lines = text.splitlines()
    assert lines[0].startswith(f"trace {T1}  6 spans  50.0 ms  (order-service, payment-service)")
    assert lines[1] == "└─ order-service  /sagascope.orders.v1.OrderService/CreateOrder  50.0 ms  UNSET"
    assert lines[2] == "   └─ order-service  saga CreateOrder  48.0 ms  UNSET  [compensated]"
    assert lines[3].startswith("      ├─ order-service  saga.step charge")
    assert lines[4].startswith(
        "      │  └─ payment-service  /sagascope.payments.v1.PaymentService/ProcessPayment"
    )
    assert lines[5] == "      ├─ order-service  saga.step confirm  1.0 ms  ERROR  (out of stock)  !retry"
    assert (
        lines[6]
        == "      └─ order-service  saga.compensate charge  17.0 ms  UNSET"
        "  <- COMPENSATION for saga.step confirm"
    )
    assert lines[7] == ""
    assert lines[8].startswith(f"trace {T2}")
    assert f"<- RESUMED from trace {T1}" in lines[9]


@contextmanager
def serve_json(routes: dict[str, Any]) -> Iterator[str]:
    """A tiny HTTP server answering GET/POST by path prefix with canned JSON."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            seen.append(self.path)
            key = next(
                (prefix for prefix in sorted(routes, key=len, reverse=True) if self.path.startswith(prefix)),
                None,
            )
            body = json.dumps(routes[key] if key else {}).encode()
            self.send_response(200 if key else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self._answer()

        def log_message(self, *args: Any) -> None:
            pass

    with serving(Handler) as url:
        yield url


JAEGER_TRACE = {
    "traceID": "abc123",
    "processes": {"p1": {"serviceName": "order-service"}, "p2": {"serviceName": "payment-service"}},
    "spans": [
        {
            "traceID": "abc123",
            "spanID": "01",
            "operationName": "saga CreateOrder",
            "references": [],
            "startTime": 1_000,
            "duration": 5_000,
            "processID": "p1",
            "tags": [
                {"key": "order.id", "type": "string", "value": "o-7"},
                {"key": "saga.outcome", "type": "string", "value": "completed"},
            ],
        },
        {
            "traceID": "abc123",
            "spanID": "02",
            "operationName": "saga.step charge",
            "references": [{"refType": "CHILD_OF", "traceID": "abc123", "spanID": "01"}],
            "startTime": 1_500,
            "duration": 2_000,
            "processID": "p1",
            "tags": [{"key": "error", "type": "bool", "value": True}],
            "logs": [],
        },
        {
            "traceID": "abc123",
            "spanID": "03",
            "operationName": "ProcessPayment",
            "references": [{"refType": "CHILD_OF", "traceID": "abc123", "spanID": "02"}],
            "startTime": 1_600,
            "duration": 1_000,
            "processID": "p2",
            "tags": [],
        },
    ],
}


def test_trace_command_reads_jaegers_query_api() -> None:
    routes = {
        "/api/services": {"data": ["order-service", "payment-service"]},
        "/api/traces?": {"data": [JAEGER_TRACE]},
        "/api/traces/": {"data": [JAEGER_TRACE]},
    }
    with serve_json(routes) as url:
        out = io.StringIO()
        assert trace_command("o-7", jaeger_url=url, out=out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(f"trace {'abc123'.rjust(32, '0')}  3 spans  5.0 ms")
    assert lines[1] == "└─ order-service  saga CreateOrder  5.0 ms  UNSET  [completed]"
    assert lines[2] == "   └─ order-service  saga.step charge  2.0 ms  ERROR"
    assert lines[3] == "      └─ payment-service  ProcessPayment  1.0 ms  UNSET"


def test_logs_command_reads_elasticsearch_documents_of_the_otel_mapping() -> None:
    hits = [
        {
            "_source": {
                "@timestamp": "2025-01-01T00:00:00.001Z",
                "severity_text": "INFO",
                "body": {"text": "saga CreateOrder started"},
                "resource": {"attributes": {"service.name": "order-service"}},
                "attributes": {"event": "saga.started", "correlation_id": "c-5", "saga.id": "s-5"},
                "trace_id": "t",
                "span_id": "s",
            }
        },
        {
            "_source": {
                "@timestamp": "2025-01-01T00:00:00.002Z",
                "severity_text": "INFO",
                "body": {"text": "charged"},
                "resource": {"attributes": {"service.name": "payment-service"}},
                "attributes": {"event": "log", "correlation_id": "c-5", "payment.id": "p-5"},
            }
        },
    ]
    with serve_json({"/logs-*/_search": {"hits": {"hits": hits}}}) as url:
        out = io.StringIO()
        assert logs_command("c-5", elasticsearch_url=url, out=out) == 0
    lines = out.getvalue().splitlines()
    assert "order-service" in lines[0] and "saga.started" in lines[0] and "saga.id=s-5" in lines[0]
    assert "payment-service" in lines[1] and "charged" in lines[1] and "payment.id=p-5" in lines[1]


def test_render_logs_one_line_per_record() -> None:
    text = render_logs(
        [
            LogRow(
                "2025-01-01T00:00:00.000Z",
                "order-service",
                "INFO",
                "hello",
                "saga.started",
                attributes={"saga.id": "s"},
            )
        ]
    )
    assert (
        text
        == "2025-01-01T00:00:00.000Z  order-service      INFO    saga.started"
        "                 hello  saga.id=s"
    )
