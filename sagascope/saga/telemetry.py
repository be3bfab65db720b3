"""The saga observer: spans, JSON log events and metrics around every saga, step and compensation.

Built on sagascope.common.telemetry's primitives (a tracer, the saga instruments, the log
fields) by :func:`saga_observer`; the shared telemetry package knows nothing of sagas.

The saga executor calls these hooks; step code never sees them. Spans follow the
contract (ARCHITECTURE.md):

- ``saga <SagaName>``: ``saga.id``, ``saga.name``, ``order.id``, ``correlation_id``,
  ``saga.outcome``; a resumed run is a new span with a link to the original trace.
- ``saga.step <step>``: ``saga.step``, ``saga.step.index``, ``saga.id``; error status and
  an exception event when it fails.
- ``saga.compensate <step>``: ``saga.compensation=true``, a link to the failed step's
  span, the reason as a span event.

Spans are started as *current* spans in the caller's task, so the saga span is a
child of the order server span and gRPC client spans are children of the steps.
"""

from __future__ import annotations

import logging
import time
from collections import ChainMap
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanContext, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from sagascope.common import correlation
from sagascope.common.telemetry import Telemetry
from sagascope.common.telemetry.logs import bind_log_fields
from sagascope.common.telemetry.metrics import RESULT_FAILURE, RESULT_SUCCESS, SagaMetrics, trace_exemplar
from sagascope.saga.observer import OUTCOME_FAILED, SagaRun, SagaScope, StepScope

log = logging.getLogger("sagascope.saga")

_propagator = TraceContextTextMapPropagator()


def traceparent_of(span_context: SpanContext) -> str | None:
    if not span_context.is_valid:
        return None
    return f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{int(span_context.trace_flags):02x}"


def parse_traceparent(value: str | None) -> SpanContext | None:
    if not value:
        return None
    span_context = trace.get_current_span(_propagator.extract({"traceparent": value})).get_span_context()
    return span_context if span_context.is_valid else None


class _Step:
    """A running step or compensation: what the executor reports failures to."""

    def __init__(self, span: Span) -> None:
        self.span = span
        self.span_context = span.get_span_context()
        self.failure: str | None = None

    def failed(self, reason: str, error: BaseException | None = None) -> None:
        if self.failure is not None:
            return
        self.failure = reason or (type(error).__name__ if error else "failed")
        self.span.set_status(Status(StatusCode.ERROR, self.failure))
        if error is not None:
            self.span.record_exception(error)
        else:
            self.span.add_event("saga.step.failure", {"reason": self.failure})


class _Saga:
    def __init__(
        self, observer: TelemetrySagaObserver, run: SagaRun, span: Span, fields: dict[str, str]
    ) -> None:
        self.observer = observer
        self.run = run
        self.span = span
        self.fields = fields
        self.started_at = time.perf_counter()
        self.outcome: str | None = None
        # False until the saga is durable: until then nothing is counted or logged as a saga.
        self.begun = False

    def started(self) -> None:
        if self.begun:
            return
        self.begun = True
        run = self.run
        metrics = self.observer.metrics
        if metrics is not None:
            if run.resumed:
                metrics.recovered.labels(run.saga_name).inc()
            else:
                metrics.started.labels(run.saga_name).inc()
            metrics.in_flight.labels(run.saga_name).inc()
        if run.resumed:
            log.warning(
                "saga %s resumed by recovery",
                run.saga_name,
                extra={"event": "saga.recovered", "saga.origin_traceparent": run.origin_traceparent},
            )
        else:
            log.info("saga %s started", run.saga_name, extra={"event": "saga.started"})

    def traceparent(self) -> str | None:
        return traceparent_of(self.span.get_span_context())

    def set_attribute(self, key: str, value: str) -> None:
        self.span.set_attribute(key, value)
        self.fields[key] = value

    @contextmanager
    def step(self, step: str, index: int) -> Iterator[StepScope]:
        run = self.run
        attributes: dict[str, Any] = {"saga.step": step, "saga.step.index": index, "saga.id": run.saga_id}
        with (
            self.observer.tracer.start_as_current_span(
                f"saga.step {step}",
                attributes=attributes,
                record_exception=False,
                set_status_on_exception=False,
            ) as span,
            bind_log_fields(ChainMap({"saga.step": step}, self.fields)),
        ):
            scope = _Step(span)
            log.debug("step %s started", step, extra={"event": "saga.step.started", "saga.step.index": index})
            start = time.perf_counter()
            try:
                yield scope
            except BaseException as exc:  # BaseException: a cancelled step is a failed step too
                scope.failed(str(exc) or type(exc).__name__, exc)
                raise
            finally:
                if self.begun:
                    self._step_finished(step, index, scope, time.perf_counter() - start)

    def _step_finished(self, step: str, index: int, scope: _Step, elapsed: float) -> None:
        """The step's metric and log event (a saga that never started has neither)."""
        run = self.run
        result = RESULT_SUCCESS if scope.failure is None else RESULT_FAILURE
        metrics = self.observer.metrics
        if metrics is not None:
            metrics.step_duration.labels(run.saga_name, step, result).observe(
                elapsed, exemplar=trace_exemplar()
            )
        extra: dict[str, Any] = {"saga.step.index": index, "duration_ms": round(elapsed * 1000, 3)}
        if scope.failure is None:
            log.info("step %s completed", step, extra={"event": "saga.step.completed", **extra})
        else:
            log.warning(
                "step %s failed: %s",
                step,
                scope.failure,
                extra={"event": "saga.step.failed", "reason": scope.failure, **extra},
            )

    @contextmanager
    def compensation(
        self, step: str, index: int, reason: str, failed: StepScope | None
    ) -> Iterator[StepScope]:
        run = self.run
        links = []
        failed_context = getattr(failed, "span_context", None)
        if isinstance(failed_context, SpanContext) and failed_context.is_valid:
            links.append(Link(failed_context, {"saga.link": "failed_step"}))
        attributes: dict[str, Any] = {
            "saga.step": step,
            "saga.step.index": index,
            "saga.id": run.saga_id,
            "saga.compensation": True,
        }
        with (
            self.observer.tracer.start_as_current_span(
                f"saga.compensate {step}",
                attributes=attributes,
                links=links,
                record_exception=False,
                set_status_on_exception=False,
            ) as span,
            bind_log_fields(ChainMap({"saga.step": step}, self.fields)),
        ):
            span.add_event("saga.compensation.reason", {"reason": reason})
            scope = _Step(span)
            log.info(
                "compensating %s: %s",
                step,
                reason,
                extra={"event": "saga.compensation.started", "saga.step.index": index, "reason": reason},
            )
            start = time.perf_counter()
            try:
                yield scope
            except BaseException as exc:
                scope.failed(str(exc) or type(exc).__name__, exc)
                raise
            finally:
                elapsed = time.perf_counter() - start
                result = RESULT_SUCCESS if scope.failure is None else RESULT_FAILURE
                if self.observer.metrics is not None:
                    self.observer.metrics.compensations.labels(run.saga_name, step, result).inc()
                extra: dict[str, Any] = {"saga.step.index": index, "duration_ms": round(elapsed * 1000, 3)}
                if scope.failure is None:
                    log.info(
                        "compensation of %s completed",
                        step,
                        extra={"event": "saga.compensation.completed", **extra},
                    )
                else:
                    log.error(
                        "compensation of %s failed: %s",
                        step,
                        scope.failure,
                        extra={"event": "saga.compensation.failed", "reason": scope.failure, **extra},
                    )

    def finished(self, outcome: str, reason: str = "") -> None:
        if self.outcome is not None:
            return
        self.outcome = outcome
        elapsed = time.perf_counter() - self.started_at
        self.span.set_attribute("saga.outcome", outcome)
        if reason:
            self.span.add_event("saga.finished", {"saga.outcome": outcome, "reason": reason})
        if outcome == OUTCOME_FAILED:
            self.span.set_status(Status(StatusCode.ERROR, reason or "saga failed"))
        metrics = self.observer.metrics
        if metrics is not None:
            metrics.finished.labels(self.run.saga_name, outcome).inc()
            metrics.duration.labels(self.run.saga_name, outcome).observe(elapsed, exemplar=trace_exemplar())
        extra: dict[str, Any] = {
            "event": "saga.finished",
            "saga.outcome": outcome,
            "duration_ms": round(elapsed * 1000, 3),
        }
        if reason:
            extra["reason"] = reason
        level = logging.ERROR if outcome == OUTCOME_FAILED else logging.INFO
        log.log(level, "saga %s %s", self.run.saga_name, outcome, extra=extra)


class TelemetrySagaObserver:
    """Implements ``sagascope.saga.observer.SagaObserver``.

    ``metrics=None`` (telemetry off) keeps the log events and skips the metrics; a
    no-op tracer makes the spans free.
    """

    def __init__(self, tracer: trace.Tracer, metrics: SagaMetrics | None) -> None:
        self.tracer = tracer
        self.metrics = metrics

    @contextmanager
    def saga(self, run: SagaRun) -> Iterator[SagaScope]:
        fields: dict[str, str] = {"saga.id": run.saga_id, "saga.name": run.saga_name, **run.attributes}
        attributes: dict[str, Any] = {
            "saga.id": run.saga_id,
            "saga.name": run.saga_name,
            correlation.BAGGAGE_KEY: run.correlation_id,
            **run.attributes,
        }
        links = []
        if run.resumed:
            attributes["saga.resumed"] = True
            origin = parse_traceparent(run.origin_traceparent)
            if origin is not None:
                links.append(Link(origin, {"saga.link": "origin"}))
        # A recovered saga runs outside any request: give it its correlation id back.
        with (
            correlation.bound(run.correlation_id) if run.correlation_id else nullcontext(),
            self.tracer.start_as_current_span(
                f"saga {run.saga_name}",
                attributes=attributes,
                links=links,
                record_exception=False,
                set_status_on_exception=False,
            ) as span,
            bind_log_fields(fields),
        ):
            scope = _Saga(self, run, span, fields)
            try:
                yield scope
            except BaseException as exc:
                if scope.outcome is None:
                    span.set_status(Status(StatusCode.ERROR, str(exc) or type(exc).__name__))
                    span.record_exception(exc)
                    if scope.begun:
                        # Left unfinished (crash, cancellation, executor bug): recovery picks it up.
                        log.warning(
                            "saga %s interrupted: %r", run.saga_name, exc, extra={"event": "saga.interrupted"}
                        )
                raise
            finally:
                if not scope.begun:
                    # Nothing was written (a taken idempotency key, or the first write failed).
                    span.set_attribute("saga.started", False)
                elif self.metrics is not None:
                    self.metrics.in_flight.labels(run.saga_name).dec()


def saga_observer(telemetry: Telemetry) -> TelemetrySagaObserver:
    """The observer a service's saga executor reports to: its tracer and saga instruments, or
    (telemetry off) a no-op tracer and log events only."""
    return TelemetrySagaObserver(
        telemetry.tracer("sagascope.saga"), telemetry.metrics.saga if telemetry.enabled else None
    )
