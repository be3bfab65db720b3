"""Retries, timeouts and breaker transitions: a metric each, and a span event on the current span.

Implements ``sagascope.common.resilience.ResilienceEvents`` (structurally), so the
resilience layer reports what happened and never touches telemetry itself.
"""

from __future__ import annotations

import logging

from opentelemetry import trace

from sagascope.common.telemetry.metrics import ResilienceMetrics

log = logging.getLogger("sagascope.resilience")

BREAKER_STATE_NAMES = {0: "closed", 1: "half_open", 2: "open"}


class TelemetryResilienceEvents:
    def __init__(self, metrics: ResilienceMetrics | None) -> None:
        self.metrics = metrics
        # Downstreams report their initial (closed) state once; that is not a transition.
        self._last: dict[str, int] = {}

    def retry(self, target: str, code: str, attempt: int, delay_s: float) -> None:
        if self.metrics is not None:
            self.metrics.retries.labels(target, code).inc()
        trace.get_current_span().add_event(
            "retry",
            {"retry.target": target, "retry.code": code, "retry.attempt": attempt, "retry.delay_s": delay_s},
        )
        log.warning(
            "retrying %s after %s (attempt %d, in %.3f s)",
            target,
            code,
            attempt,
            delay_s,
            extra={
                "event": "resilience.retry",
                "target": target,
                "grpc.code": code,
                "retry.attempt": attempt,
                "retry.delay_s": delay_s,
            },
        )

    def timeout(self, target: str) -> None:
        if self.metrics is not None:
            self.metrics.timeouts.labels(target).inc()
        trace.get_current_span().add_event("timeout", {"timeout.target": target})
        log.warning(
            "call to %s ran out of its deadline",
            target,
            extra={"event": "resilience.timeout", "target": target},
        )

    def breaker_state(self, target: str, state: int) -> None:
        if self.metrics is not None:
            self.metrics.breaker_state.labels(target).set(state)
        previous = self._last.get(target, 0)
        self._last[target] = state
        if previous == state:
            return
        name = BREAKER_STATE_NAMES.get(state, str(state))
        trace.get_current_span().add_event(
            "circuit_breaker.state_change",
            {
                "circuit_breaker.target": target,
                "circuit_breaker.state": name,
                "circuit_breaker.state_code": state,
                "circuit_breaker.previous_state": BREAKER_STATE_NAMES.get(previous, str(previous)),
            },
        )
        log.warning(
            "circuit breaker for %s is %s",
            target,
            name,
            extra={"event": "circuit_breaker.state_change", "target": target, "circuit_breaker.state": name},
        )
