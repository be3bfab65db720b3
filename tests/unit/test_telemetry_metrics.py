"""/metrics: the contract's names, labels, help and units, exemplars in the OpenMetrics exposition."""

from __future__ import annotations

import re
import urllib.request

from opentelemetry import trace
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from sagascope.saga.observer import SagaRun
from sagascope.saga.telemetry import saga_observer
from tests.support.telemetry_testing import CapturedTelemetry, in_memory_telemetry

# metric family -> (type, label names) — ARCHITECTURE.md and the go-grpc-prometheus names
CONTRACT = {
    "saga_started": ("counter", {"saga"}),
    "saga_finished": ("counter", {"saga", "outcome"}),
    "saga_duration_seconds": ("histogram", {"saga", "outcome"}),
    "saga_step_duration_seconds": ("histogram", {"saga", "step", "result"}),
    "saga_compensations": ("counter", {"saga", "step", "result"}),
    "saga_in_flight": ("gauge", {"saga"}),
    "saga_recovered": ("counter", {"saga"}),
    "grpc_server_started": ("counter", {"grpc_type", "grpc_service", "grpc_method"}),
    "grpc_server_handled": ("counter", {"grpc_type", "grpc_service", "grpc_method", "grpc_code"}),
    "grpc_server_handling_seconds": ("histogram", {"grpc_type", "grpc_service", "grpc_method"}),
    "grpc_client_started": ("counter", {"grpc_type", "grpc_service", "grpc_method"}),
    "grpc_client_handled": ("counter", {"grpc_type", "grpc_service", "grpc_method", "grpc_code"}),
    "grpc_client_handling_seconds": ("histogram", {"grpc_type", "grpc_service", "grpc_method"}),
    "circuit_breaker_state": ("gauge", {"target"}),
    "resilience_retries": ("counter", {"target", "code"}),
    "resilience_timeouts": ("counter", {"target"}),
}


def exercise(captured: CapturedTelemetry) -> None:
    """Touch every instrument once, as a saga with a retry and a breaker trip would."""
    telemetry = captured.telemetry
    observer = saga_observer(telemetry)
    with observer.saga(SagaRun("s", "CreateOrder", "c", {"order.id": "o"})) as scope:
        scope.started()
        with scope.step("charge", 1) as step:
            events = telemetry.resilience_events()
            events.retry("payment", "UNAVAILABLE", 1, 0.05)
            events.timeout("payment")
            telemetry.resilience_events().breaker_state("payment", 2)
            step.failed("payment unavailable")
        with scope.compensation("charge", 1, "payment unavailable", step):
            pass
        scope.finished("compensated", "payment unavailable")
    with observer.saga(SagaRun("s2", "CreateOrder", "c", {}, True, None)) as scope:
        scope.started()
        scope.finished("completed")
    metrics = telemetry.metrics
    labels = ("unary", "sagascope.payments.v1.PaymentService", "ProcessPayment")
    for side in (metrics.server, metrics.client):
        side.started.labels(*labels).inc()
        side.handled.labels(*labels, "OK").inc()
        side.handling.labels(*labels).observe(0.01)


def test_every_contract_metric_is_exposed_with_its_labels_help_and_type() -> None:
    with in_memory_telemetry() as captured:
        exercise(captured)
        families = {
            family.name: family
            for family in text_string_to_metric_families(
                openmetrics_latest(captured.telemetry.metrics.registry).decode()
            )
        }
    for name, (kind, labels) in CONTRACT.items():
        assert name in families, name
        family = families[name]
        assert family.type == kind, name
        assert family.documentation, name
        if name.endswith("_seconds"):
            assert family.unit == "seconds", name
        sample_labels = {key for sample in family.samples for key in sample.labels if key not in ("le",)}
        assert sample_labels == labels, name
    # process metrics too
    assert "process_cpu_seconds" in families and "process_resident_memory_bytes" in families


def test_the_breaker_state_retries_and_timeouts_have_values_and_span_events() -> None:
    with in_memory_telemetry() as captured:
        exercise(captured)
        registry = captured.telemetry.metrics.registry
        assert registry.get_sample_value("circuit_breaker_state", {"target": "payment"}) == 2
        assert (
            registry.get_sample_value(
                "resilience_retries_total", {"target": "payment", "code": "UNAVAILABLE"}
            )
            == 1
        )
        assert registry.get_sample_value("resilience_timeouts_total", {"target": "payment"}) == 1
    charge = next(span for span in captured.spans.get_finished_spans() if span.name == "saga.step charge")
    events = {event.name: dict(event.attributes or {}) for event in charge.events}
    assert events["retry"]["retry.code"] == "UNAVAILABLE" and events["retry"]["retry.attempt"] == 1
    assert events["timeout"] == {"timeout.target": "payment"}
    assert events["circuit_breaker.state_change"]["circuit_breaker.state"] == "open"


def test_the_initial_closed_report_is_not_a_state_change_event() -> None:
    with in_memory_telemetry() as captured:
        tracer = trace.get_tracer("t", tracer_provider=captured.telemetry.tracer_provider)
        with tracer.start_as_current_span("x"):
            captured.telemetry.resilience_events().breaker_state("payment", 0)
        assert (
            captured.telemetry.metrics.registry.get_sample_value(
                "circuit_breaker_state", {"target": "payment"}
            )
            == 0
        )
    (span,) = captured.spans.get_finished_spans()
    assert span.events == ()


def test_saga_duration_carries_a_trace_id_exemplar_of_the_saga_span() -> None:
    with in_memory_telemetry() as captured:
        exercise(captured)
        text = openmetrics_latest(captured.telemetry.metrics.registry).decode()
    saga_trace = next(
        span.context.trace_id
        for span in captured.spans.get_finished_spans()
        if span.name == "saga CreateOrder"
    )
    exemplar_lines = [
        line
        for line in text.splitlines()
        if line.startswith("saga_duration_seconds_bucket") and " # " in line
    ]
    assert exemplar_lines
    assert any(f'trace_id="{saga_trace:032x}"' in line for line in exemplar_lines)


def test_the_metrics_server_negotiates_openmetrics_with_exemplars() -> None:
    with in_memory_telemetry() as captured:
        exercise(captured)
        captured.telemetry.start_metrics_server(0)  # 0 = off
        assert captured.telemetry.metrics_port is None
        # A free port: bind to port 0 through the server itself is not offered, so pick one.
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        captured.telemetry.start_metrics_server(port)
        url = f"http://127.0.0.1:{port}/metrics"
        plain = urllib.request.urlopen(url, timeout=5).read().decode()
        request = urllib.request.Request(
            url, headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            content_type = response.headers["Content-Type"]
            openmetrics = response.read().decode()
    assert "saga_started_total" in plain and "trace_id=" not in plain
    assert content_type.startswith("application/openmetrics-text")
    assert re.search(r'saga_duration_seconds_bucket\{.*\} 1\.0 # \{trace_id="[0-9a-f]{32}"\}', openmetrics)
    assert "# UNIT saga_duration_seconds seconds" in openmetrics
    assert openmetrics.rstrip().endswith("# EOF")
