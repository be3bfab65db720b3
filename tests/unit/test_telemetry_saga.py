"""The saga observer: the contract's spans, log events and metrics, from the executor's hooks only."""

from __future__ import annotations

import pytest
from opentelemetry.trace import StatusCode

from sagascope.saga.observer import SagaRun
from sagascope.saga.telemetry import saga_observer
from tests.support.telemetry_testing import CapturedTelemetry, in_memory_telemetry


def sample(captured: CapturedTelemetry, name: str, labels: dict[str, str]) -> float | None:
    return captured.telemetry.metrics.registry.get_sample_value(name, labels)


def run_compensated_saga(captured: CapturedTelemetry) -> str | None:
    observer = saga_observer(captured.telemetry)
    run = SagaRun("saga-1", "CreateOrder", "corr-1", {"order.id": "order-1"})
    with observer.saga(run) as scope:
        traceparent = scope.traceparent()
        with scope.step("reserve", 0):
            scope.started()  # as the executor does once the saga row is written
        with scope.step("charge", 1):
            scope.set_attribute("payment.id", "pay-1")
        with scope.step("confirm", 2) as confirm:
            confirm.failed("confirm rejected: out of stock")
        with scope.compensation("charge", 1, "confirm rejected: out of stock", failed=confirm):
            pass
        scope.finished("compensated", "confirm rejected: out of stock")
    return traceparent


def test_a_compensated_saga_makes_the_contract_span_tree() -> None:
    with in_memory_telemetry("order-service") as captured:
        traceparent = run_compensated_saga(captured)
    spans = {span.name: span for span in captured.spans.get_finished_spans()}
    assert set(spans) == {
        "saga CreateOrder",
        "saga.step reserve",
        "saga.step charge",
        "saga.step confirm",
        "saga.compensate charge",
    }
    saga = spans["saga CreateOrder"]
    assert saga.attributes is not None
    assert dict(saga.attributes) == {
        "saga.id": "saga-1",
        "saga.name": "CreateOrder",
        "correlation_id": "corr-1",
        "order.id": "order-1",
        "payment.id": "pay-1",
        "saga.outcome": "compensated",
    }
    assert (
        traceparent
        == f"00-{saga.context.trace_id:032x}-{saga.context.span_id:016x}-{int(saga.context.trace_flags):02x}"
    )
    for name in ("saga.step reserve", "saga.step charge", "saga.step confirm", "saga.compensate charge"):
        assert spans[name].parent is not None and spans[name].parent.span_id == saga.context.span_id
        assert spans[name].context.trace_id == saga.context.trace_id

    charge = spans["saga.step charge"]
    assert dict(charge.attributes or {}) == {"saga.step": "charge", "saga.step.index": 1, "saga.id": "saga-1"}
    confirm = spans["saga.step confirm"]
    assert confirm.status.status_code == StatusCode.ERROR
    assert confirm.status.description == "confirm rejected: out of stock"

    compensate = spans["saga.compensate charge"]
    assert compensate.attributes is not None and compensate.attributes["saga.compensation"] is True
    assert [link.context.span_id for link in compensate.links] == [confirm.context.span_id]
    (event,) = [e for e in compensate.events if e.name == "saga.compensation.reason"]
    assert event.attributes is not None and event.attributes["reason"] == "confirm rejected: out of stock"
    assert compensate.status.status_code == StatusCode.UNSET


def test_a_compensated_saga_logs_the_named_events_with_saga_fields() -> None:
    with in_memory_telemetry("order-service") as captured:
        run_compensated_saga(captured)
    lines = captured.json_lines()
    # saga.step.started is DEBUG (ARCHITECTURE.md): the step's span carries its start.
    assert [line["event"] for line in lines] == [
        "saga.started",
        "saga.step.completed",
        "saga.step.completed",
        "saga.step.failed",
        "saga.compensation.started",
        "saga.compensation.completed",
        "saga.finished",
    ]
    assert {line["correlation_id"] for line in lines} == {"corr-1"}
    assert {line["saga.id"] for line in lines} == {"saga-1"}
    assert {line["order.id"] for line in lines} == {"order-1"}
    assert len({line["trace_id"] for line in lines}) == 1
    failed = next(line for line in lines if line["event"] == "saga.step.failed")
    assert failed["saga.step"] == "confirm" and failed["reason"] == "confirm rejected: out of stock"
    # payment.id is known from the moment the charge step reports it.
    assert "payment.id" not in lines[1] and lines[-1]["payment.id"] == "pay-1"
    assert lines[-1]["saga.outcome"] == "compensated"


def test_a_compensated_saga_updates_the_saga_metrics() -> None:
    with in_memory_telemetry() as captured:
        run_compensated_saga(captured)
        assert sample(captured, "saga_started_total", {"saga": "CreateOrder"}) == 1
        assert sample(captured, "saga_finished_total", {"saga": "CreateOrder", "outcome": "compensated"}) == 1
        assert (
            sample(captured, "saga_duration_seconds_count", {"saga": "CreateOrder", "outcome": "compensated"})
            == 1
        )
        assert (
            sample(
                captured,
                "saga_step_duration_seconds_count",
                {"saga": "CreateOrder", "step": "confirm", "result": "failure"},
            )
            == 1
        )
        assert (
            sample(
                captured,
                "saga_step_duration_seconds_count",
                {"saga": "CreateOrder", "step": "charge", "result": "success"},
            )
            == 1
        )
        assert (
            sample(
                captured,
                "saga_compensations_total",
                {"saga": "CreateOrder", "step": "charge", "result": "success"},
            )
            == 1
        )
        assert sample(captured, "saga_in_flight", {"saga": "CreateOrder"}) == 0


def test_an_exception_in_a_step_marks_it_failed_with_an_exception_event() -> None:
    with in_memory_telemetry() as captured:
        observer = saga_observer(captured.telemetry)
        with observer.saga(SagaRun("s", "CreateOrder", "c")) as scope:
            scope.started()
            with pytest.raises(RuntimeError), scope.step("charge", 1):
                raise RuntimeError("payment down")
            scope.finished("failed", "payment down")
    spans = {span.name: span for span in captured.spans.get_finished_spans()}
    charge = spans["saga.step charge"]
    assert charge.status.status_code == StatusCode.ERROR
    assert [event.name for event in charge.events] == ["exception"]
    assert spans["saga CreateOrder"].status.status_code == StatusCode.ERROR
    assert (
        captured.telemetry.metrics.registry.get_sample_value(
            "saga_finished_total", {"saga": "CreateOrder", "outcome": "failed"}
        )
        == 1
    )


def test_a_resumed_saga_is_a_new_trace_linked_to_the_original() -> None:
    with in_memory_telemetry() as captured:
        observer = saga_observer(captured.telemetry)
        with observer.saga(SagaRun("s", "CreateOrder", "corr-r", {"order.id": "o"})) as scope:
            scope.started()
            origin = scope.traceparent()
        with observer.saga(SagaRun("s", "CreateOrder", "corr-r", {"order.id": "o"}, True, origin)) as scope:
            scope.started()
            scope.finished("completed")
        first, resumed = captured.spans.get_finished_spans()
        assert resumed.context.trace_id != first.context.trace_id
        assert resumed.parent is None
        (link,) = resumed.links
        assert (link.context.trace_id, link.context.span_id) == (
            first.context.trace_id,
            first.context.span_id,
        )
        assert resumed.attributes is not None and resumed.attributes["saga.resumed"] is True
        assert (
            captured.telemetry.metrics.registry.get_sample_value(
                "saga_recovered_total", {"saga": "CreateOrder"}
            )
            == 1
        )
        assert (
            captured.telemetry.metrics.registry.get_sample_value(
                "saga_started_total", {"saga": "CreateOrder"}
            )
            == 1
        )
        recovered = [line for line in captured.json_lines() if line["event"] == "saga.recovered"]
        assert len(recovered) == 1 and recovered[0]["correlation_id"] == "corr-r"


def test_the_saga_span_is_a_child_of_the_callers_span() -> None:
    with in_memory_telemetry() as captured:
        tracer = captured.telemetry.tracer_provider.get_tracer("t")  # type: ignore[union-attr]
        with tracer.start_as_current_span("server") as server:
            with saga_observer(captured.telemetry).saga(SagaRun("s", "CreateOrder", "c")) as scope:
                scope.finished("completed")
    saga = next(span for span in captured.spans.get_finished_spans() if span.name == "saga CreateOrder")
    assert saga.parent is not None and saga.parent.span_id == server.get_span_context().span_id


def test_an_interrupted_saga_is_an_error_without_a_finished_metric() -> None:
    with in_memory_telemetry() as captured:
        with (
            pytest.raises(KeyboardInterrupt),
            saga_observer(captured.telemetry).saga(SagaRun("s", "CreateOrder", "c")) as scope,
        ):
            scope.started()
            raise KeyboardInterrupt
        assert (
            captured.telemetry.metrics.registry.get_sample_value(
                "saga_finished_total", {"saga": "CreateOrder", "outcome": "failed"}
            )
            is None
        )
        assert (
            captured.telemetry.metrics.registry.get_sample_value("saga_in_flight", {"saga": "CreateOrder"})
            == 0
        )
    (saga,) = captured.spans.get_finished_spans()
    assert saga.status.status_code == StatusCode.ERROR
    assert "saga.interrupted" in captured.events()


def test_a_saga_that_never_started_is_neither_counted_nor_logged() -> None:
    """A duplicate idempotency key: the run opened a span and its first step, then found the key
    taken, so the executor never called started()."""
    with in_memory_telemetry() as captured:
        registry = captured.telemetry.metrics.registry
        with saga_observer(captured.telemetry).saga(SagaRun("s", "CreateOrder", "c")) as scope:
            with scope.step("reserve", 0):
                pass
        assert registry.get_sample_value("saga_started_total", {"saga": "CreateOrder"}) in (None, 0)
        assert registry.get_sample_value(
            "saga_step_duration_seconds_count", {"saga": "CreateOrder", "step": "reserve", "result": "success"}
        ) in (None, 0)
        assert registry.get_sample_value("saga_in_flight", {"saga": "CreateOrder"}) in (None, 0)
        with (
            pytest.raises(RuntimeError),
            saga_observer(captured.telemetry).saga(SagaRun("s2", "CreateOrder", "c")) as scope,
            scope.step("reserve", 0),
        ):
            raise RuntimeError("database down")
        assert registry.get_sample_value(
            "saga_step_duration_seconds_count", {"saga": "CreateOrder", "step": "reserve", "result": "failure"}
        ) in (None, 0)
    events = captured.events()
    assert not {"saga.started", "saga.step.completed", "saga.step.failed", "saga.interrupted"} & set(events)
    spans = {span.name: span for span in captured.spans.get_finished_spans() if span.name.startswith("saga ")}
    assert spans and all(span.attributes and span.attributes["saga.started"] is False for span in spans.values())


def test_telemetry_off_keeps_saga_log_events_but_no_spans() -> None:
    from sagascope.common.telemetry import TelemetrySettings

    with in_memory_telemetry(settings=TelemetrySettings(enabled=False)) as captured:
        traceparent = run_compensated_saga(captured)
        assert (
            captured.telemetry.metrics.registry.get_sample_value(
                "saga_started_total", {"saga": "CreateOrder"}
            )
            is None
        )
    assert traceparent is None
    assert captured.spans.get_finished_spans() == ()
    assert "saga.compensation.completed" in captured.events()
