"""Telemetry for the admin operations: the :class:`~sagascope.saga.admin.observer.AdminObserver`
built on sagascope.common.telemetry's primitives (tracer, registry, log fields).

Per change: a span ``saga.admin <action>`` linked to the trace that started the saga (the saga
log keeps its traceparent), with ``saga.id``, ``saga.name``, ``saga.admin.action`` and
``saga.admin.operator``; a log event ``saga.admin.<action>`` at INFO with the operator's subject
(the request's correlation id is added by the log context, the saga's own as
``saga.correlation_id``); and ``saga_admin_actions_total{action}`` once it is applied. A refused
change marks the span as an error and counts nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Link, Span, Status, StatusCode
from prometheus_client import CollectorRegistry, Counter

from sagascope.common.telemetry import Telemetry
from sagascope.common.telemetry.logs import bind_log_fields
from sagascope.saga.admin.observer import ActionScope, AdminAction
from sagascope.saga.telemetry import parse_traceparent

log = logging.getLogger("sagascope.saga.admin")


@dataclass(frozen=True)
class AdminMetrics:
    actions: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> AdminMetrics:
        return cls(
            actions=Counter(
                "saga_admin_actions",
                "Operator changes applied to sagas through the admin API (count of actions).",
                ["action"],
                registry=registry,
            )
        )


class _Scope:
    def __init__(self, span: Span) -> None:
        self.span = span
        self.change: tuple[str, str] | None = None

    def applied(self, from_status: str, to_status: str) -> None:
        self.change = (from_status, to_status)
        self.span.set_attributes({"saga.admin.from_status": from_status, "saga.admin.to_status": to_status})

    def refused(self, reason: str) -> None:
        self.span.set_status(Status(StatusCode.ERROR, reason))


class TelemetryAdminObserver:
    def __init__(self, tracer: trace.Tracer, metrics: AdminMetrics) -> None:
        self.tracer = tracer
        self.metrics = metrics

    @contextmanager
    def action(self, action: AdminAction) -> Iterator[ActionScope]:
        origin = parse_traceparent(action.origin_traceparent)
        links = [Link(origin, {"saga.link": "origin"})] if origin is not None else []
        attributes: dict[str, Any] = {
            "saga.id": action.saga_id,
            "saga.name": action.saga_name,
            "saga.admin.action": action.action,
            "saga.admin.operator": action.actor,
        }
        with (
            self.tracer.start_as_current_span(f"saga.admin {action.action}", attributes=attributes, links=links)
            as span,
            bind_log_fields({"saga.id": action.saga_id, "saga.name": action.saga_name}),
        ):
            scope = _Scope(span)
            yield scope
            if scope.change is None:
                return
            self.metrics.actions.labels(action.action).inc()
            from_status, to_status = scope.change
            log.info(
                "saga %s: %s by %s (%s -> %s)",
                action.saga_id,
                action.action,
                action.actor,
                from_status,
                to_status,
                extra={
                    "event": f"saga.admin.{action.action}",
                    "operator": action.actor,
                    "note": action.note,
                    "saga.correlation_id": action.saga_correlation_id,
                    "saga.admin.from_status": from_status,
                    "saga.admin.to_status": to_status,
                },
            )


def admin_observer(telemetry: Telemetry) -> TelemetryAdminObserver:
    """The observer for one service's admin API: its tracer and the counter in its registry."""
    return TelemetryAdminObserver(
        telemetry.tracer("sagascope.saga.admin"), AdminMetrics.create(telemetry.metrics.registry)
    )
