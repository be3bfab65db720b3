"""The admin operations' telemetry, from the observer hooks only: a span linked to the saga's own
trace, the ``saga.admin.<action>`` log event with the operator and both correlation ids, and the
``saga_admin_actions_total{action}`` counter — for an applied change, and nothing but an error
span for a refused one."""

from __future__ import annotations

from opentelemetry.trace import StatusCode

from sagascope.common import correlation
from sagascope.saga.admin.observer import AdminAction
from sagascope.saga.admin.telemetry import admin_observer
from sagascope.saga.observer import SagaRun
from sagascope.saga.telemetry import saga_observer
from tests.support.telemetry_testing import in_memory_telemetry


def _action(name: str, origin: str) -> AdminAction:
    return AdminAction(name, "saga-7", "CreateOrder", "operator", "refunds broken, INC-42", "corr-saga", origin)


def test_an_applied_change_is_a_linked_span_a_log_event_and_a_count() -> None:
    with in_memory_telemetry("order-service") as captured:
        with saga_observer(captured.telemetry).saga(SagaRun("saga-7", "CreateOrder", "corr-saga")) as scope:
            origin = scope.traceparent()
        assert origin
        observer = admin_observer(captured.telemetry)
        with correlation.bound("corr-operator"), observer.action(_action("pause", origin)) as action:
            action.applied("FAILED", "PAUSED")

        saga_span, admin_span = captured.spans.get_finished_spans()
        assert admin_span.name == "saga.admin pause"
        assert admin_span.context.trace_id != saga_span.context.trace_id  # its own trace ...
        (link,) = admin_span.links
        origin_ids = (saga_span.context.trace_id, saga_span.context.span_id)
        assert (link.context.trace_id, link.context.span_id) == origin_ids
        assert dict(admin_span.attributes or {}).items() >= {
            "saga.id": "saga-7", "saga.admin.action": "pause", "saga.admin.operator": "operator",
            "saga.admin.from_status": "FAILED", "saga.admin.to_status": "PAUSED",
        }.items()  # fmt: skip
        (event,) = [line for line in captured.json_lines() if line["event"].startswith("saga.admin.")]
        assert event["event"] == "saga.admin.pause" and event["level"] == "INFO"
        assert (event["operator"], event["note"]) == ("operator", "refunds broken, INC-42")
        assert (event["correlation_id"], event["saga.correlation_id"], event["saga.id"]) == (
            "corr-operator", "corr-saga", "saga-7"
        )
        assert event["trace_id"] == f"{admin_span.context.trace_id:032x}"
        registry = captured.telemetry.metrics.registry
        assert registry.get_sample_value("saga_admin_actions_total", {"action": "pause"}) == 1


def test_a_refused_change_is_an_error_span_only() -> None:
    with in_memory_telemetry("order-service") as captured:
        observer = admin_observer(captured.telemetry)
        with observer.action(_action("resume", "")) as action:
            action.refused("saga saga-7 is FAILED; resume needs PAUSED")
        (span,) = captured.spans.get_finished_spans()
        assert span.status.status_code == StatusCode.ERROR and span.links == ()
        assert not [line for line in captured.json_lines() if line["event"].startswith("saga.admin.")]
        registry = captured.telemetry.metrics.registry
        assert registry.get_sample_value("saga_admin_actions_total", {"action": "resume"}) is None
        help_line = next(m for m in registry.collect() if m.name == "saga_admin_actions")
        assert help_line.documentation.startswith("Operator changes applied to sagas")
