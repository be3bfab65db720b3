"""JSON log lines and OTLP log records carry the contract's fields."""

from __future__ import annotations

import logging

import pytest
from opentelemetry import baggage, context, trace

from sagascope.common import correlation
from sagascope.common.config import ConfigError
from sagascope.common.telemetry import TelemetrySettings
from sagascope.common.telemetry.logs import bind_log_fields
from tests.support.telemetry_testing import in_memory_telemetry

log = logging.getLogger("tests.telemetry")

CONTRACT_FIELDS = [
    "timestamp",
    "level",
    "service.name",
    "message",
    "event",
    "trace_id",
    "span_id",
    "correlation_id",
]


def test_a_json_line_has_the_contract_fields_and_the_current_span_ids() -> None:
    with in_memory_telemetry("order-service") as captured:
        tracer = captured.telemetry.tracer_provider.get_tracer("t")  # type: ignore[union-attr]
        with correlation.bound("corr-1"), tracer.start_as_current_span("work") as span:
            with bind_log_fields({"saga.id": "s-1", "order.id": "o-1", "saga.step": "charge"}):
                log.info("charged %s", "o-1", extra={"event": "saga.step.completed", "payment.id": "p-1"})
        span_context = span.get_span_context()

    (line,) = captured.json_lines()
    assert list(line)[: len(CONTRACT_FIELDS) + 1] == [*CONTRACT_FIELDS[:3], "logger", *CONTRACT_FIELDS[3:]]
    assert line["level"] == "INFO"
    assert line["service.name"] == "order-service"
    assert line["message"] == "charged o-1"
    assert line["event"] == "saga.step.completed"
    assert line["trace_id"] == format(span_context.trace_id, "032x")
    assert line["span_id"] == format(span_context.span_id, "016x")
    assert line["correlation_id"] == "corr-1"
    assert (line["saga.id"], line["saga.step"], line["order.id"], line["payment.id"]) == (
        "s-1",
        "charge",
        "o-1",
        "p-1",
    )
    assert line["timestamp"].endswith("Z") and "T" in line["timestamp"]


def test_outside_a_span_the_ids_are_null_and_the_event_is_log() -> None:
    with in_memory_telemetry() as captured:
        log.warning("plain")
    (line,) = captured.json_lines()
    assert line["event"] == "log"
    assert line["trace_id"] is None and line["span_id"] is None and line["correlation_id"] is None
    assert "saga.id" not in line


def test_the_correlation_id_is_read_from_baggage_when_no_request_set_it() -> None:
    with in_memory_telemetry() as captured:
        token = context.attach(baggage.set_baggage("correlation_id", "from-baggage"))
        try:
            log.info("x")
        finally:
            context.detach(token)
    assert captured.json_lines()[0]["correlation_id"] == "from-baggage"


def test_the_otlp_record_has_the_searchable_fields_as_attributes_and_the_trace_context() -> None:
    with in_memory_telemetry("payment-service") as captured:
        tracer = trace.get_tracer("t", tracer_provider=captured.telemetry.tracer_provider)
        with correlation.bound("corr-2"), tracer.start_as_current_span("work") as span:
            with bind_log_fields({"saga.id": "s-2", "order.id": "o-2"}):
                log.info("hello", extra={"event": "saga.started"})
    (exported,) = captured.logs.get_finished_logs()
    record = exported.log_record
    assert record.body == "hello"
    assert record.trace_id == span.get_span_context().trace_id
    assert record.span_id == span.get_span_context().span_id
    attributes = dict(record.attributes or {})
    assert attributes["correlation_id"] == "corr-2"
    assert attributes["saga.id"] == "s-2" and attributes["order.id"] == "o-2"
    assert attributes["event"] == "saga.started"
    assert record.event_name == "saga.started"
    assert "trace_id" not in attributes and "service.name" not in attributes
    assert exported.resource.attributes["service.name"] == "payment-service"


def test_exceptions_are_logged_as_text_in_json_and_as_exception_attributes_over_otlp() -> None:
    with in_memory_telemetry() as captured:
        try:
            raise ValueError("bad thing")
        except ValueError:
            log.exception("failed")
    (line,) = captured.json_lines()
    assert "ValueError: bad thing" in line["exc_info"]
    attributes = dict(captured.logs.get_finished_logs()[0].log_record.attributes or {})
    assert attributes["exception.type"] == "ValueError"
    assert attributes["exception.message"] == "bad thing"


def test_telemetry_off_keeps_the_json_lines() -> None:
    from sagascope.common.telemetry import TelemetrySettings

    with in_memory_telemetry(settings=TelemetrySettings(enabled=False)) as captured:
        with correlation.bound("corr-off"):
            log.info("still here", extra={"event": "saga.started"})
    (line,) = captured.json_lines()
    assert line["event"] == "saga.started" and line["correlation_id"] == "corr-off"
    assert captured.logs.get_finished_logs() == ()


def test_the_message_is_formatted_and_redacted_once_for_both_sinks() -> None:
    class Counted:
        calls = 0

        def __str__(self) -> str:
            Counted.calls += 1
            return "o-1"

    with in_memory_telemetry() as captured:
        log.info("charged %s", Counted(), extra={"event": "saga.step.completed"})
    (line,) = captured.json_lines()
    (exported,) = captured.logs.get_finished_logs()
    assert line["message"] == exported.log_record.body == "charged o-1"
    assert Counted.calls == 1


def test_a_dict_message_is_spread_in_the_json_line_and_the_body_over_otlp() -> None:
    with in_memory_telemetry() as captured:
        log.info({"note": "spread", "password": "hunter2"})
    (line,) = captured.json_lines()
    assert line["message"] == "" and line["note"] == "spread" and line["password"] == "[REDACTED]"
    body = captured.logs.get_finished_logs()[0].log_record.body
    assert "spread" in str(body) and "hunter2" not in str(body)


def test_log_export_sampled_drops_only_the_records_of_unsampled_traces() -> None:
    unsampled = trace.NonRecordingSpan(
        trace.SpanContext(trace_id=0x1F, span_id=0x2F, is_remote=True, trace_flags=trace.TraceFlags(0))
    )
    with in_memory_telemetry("order-service", TelemetrySettings(log_export="sampled")) as captured:
        tracer = trace.get_tracer("t", tracer_provider=captured.telemetry.tracer_provider)
        with trace.use_span(unsampled):
            log.info("inside a dropped trace", extra={"event": "saga.step.started"})
        with tracer.start_as_current_span("sampled"):
            log.info("inside a sampled trace", extra={"event": "saga.step.started"})
        log.info("outside any trace", extra={"event": "service.started"})
    exported = [record.log_record.body for record in captured.logs.get_finished_logs()]
    assert exported == ["inside a sampled trace", "outside any trace"]
    # The JSON lines keep everything, the dropped trace's record included.
    messages = [line["message"] for line in captured.json_lines()]
    assert messages == ["inside a dropped trace", "inside a sampled trace", "outside any trace"]


def test_by_default_every_record_is_exported_whatever_the_sampling() -> None:
    unsampled = trace.NonRecordingSpan(
        trace.SpanContext(trace_id=0x1F, span_id=0x2F, is_remote=True, trace_flags=trace.TraceFlags(0))
    )
    with in_memory_telemetry("order-service") as captured, trace.use_span(unsampled):
        log.info("inside a dropped trace")
    exported = [record.log_record.body for record in captured.logs.get_finished_logs()]
    assert exported == ["inside a dropped trace"]


@pytest.mark.parametrize("value", ["none", "traces", "ALL-OF-THEM"])
def test_an_unknown_log_export_choice_is_refused_with_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("SAGASCOPE_LOG_EXPORT", value)
    with pytest.raises(ConfigError, match="SAGASCOPE_LOG_EXPORT must be one of"):
        TelemetrySettings.from_env()
