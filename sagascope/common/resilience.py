"""Resilience for every outgoing call: a deadline, bounded jittered retries, a breaker.

One :class:`Downstream` per remote service. It retries only UNAVAILABLE and
DEADLINE_EXCEEDED (with full-jitter exponential backoff), and reports every
retry, timeout and breaker transition to a :class:`ResilienceEvents` sink
(metrics and span events live in telemetry).

The breaker counts *calls*, not attempts: a call whose retries are exhausted is
one failure (an INVALID_ARGUMENT is the caller's fault, not the downstream's,
and is none). One request's retries are not independent witnesses that the
downstream is down: counted per attempt, two slow or failing requests in a row
(3 attempts each against ``fail_max=5``) opened the breaker for every other
caller while the downstream served them fine (the chaos campaign's goodput,
benchmarks/chaos/FINDINGS.md).

Callers learn one thing that matters for a saga: did the request possibly take
effect? :class:`DownstreamUnavailable` says so in ``maybe_applied``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol, TypeVar

import grpc
from aiobreaker import CircuitBreaker, CircuitBreakerError, CircuitBreakerListener
from aiobreaker.state import CircuitBreakerState

T = TypeVar("T")

RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})

# circuit_breaker_state values (ARCHITECTURE.md)
BREAKER_CLOSED, BREAKER_HALF_OPEN, BREAKER_OPEN = 0, 1, 2
_STATE_VALUES = {
    CircuitBreakerState.CLOSED: BREAKER_CLOSED,
    CircuitBreakerState.HALF_OPEN: BREAKER_HALF_OPEN,
    CircuitBreakerState.OPEN: BREAKER_OPEN,
}


class ResilienceEvents(Protocol):
    def retry(self, target: str, code: str, attempt: int, delay_s: float) -> None: ...

    def timeout(self, target: str) -> None: ...

    def breaker_state(self, target: str, state: int) -> None: ...


class NoResilienceEvents:
    def retry(self, target: str, code: str, attempt: int, delay_s: float) -> None:
        pass

    def timeout(self, target: str) -> None:
        pass

    def breaker_state(self, target: str, state: int) -> None:
        pass


class NotSent(Exception):
    """Raised by a caller's invoke function when it knows the request never left
    (e.g. injected unreachability). Retryable; a call that ends with it counts
    against the breaker, and is reported with ``maybe_applied=False``."""


class DownstreamUnavailable(Exception):
    """Retries exhausted or breaker open. ``maybe_applied`` is False only when no
    attempt can have reached the downstream (breaker open, or every attempt NotSent)."""

    def __init__(self, target: str, message: str, code: grpc.StatusCode, maybe_applied: bool) -> None:
        super().__init__(f"{target} unavailable: {message}")
        self.target = target
        self.detail = message
        self.code = code
        self.maybe_applied = maybe_applied


# Statuses that say the downstream broke rather than refused: a database link lost mid-write
# answers INTERNAL, so whether the request took effect is unknown.
EFFECT_UNKNOWN_CODES = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS})


class DownstreamRejected(Exception):
    """The downstream answered with a non-retryable status. A refusal (INVALID_ARGUMENT,
    FAILED_PRECONDITION, ...) did not apply the request; a breakage may have (``maybe_applied``)."""

    def __init__(self, target: str, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{target} rejected the call: {code.name}: {details}")
        self.target = target
        self.code = code
        self.details = details

    @property
    def maybe_applied(self) -> bool:
        return self.code in EFFECT_UNKNOWN_CODES


@dataclass(frozen=True)
class RetryPolicy:
    attempt_timeout_s: float = 2.0
    max_attempts: int = 3
    base_delay_s: float = 0.05
    max_delay_s: float = 1.0

    def backoff(self, attempt: int, draw: Callable[[], float] = random.random) -> float:
        """Full jitter: uniform in [0, min(max, base * 2^attempt)) — spreads retry storms."""
        return draw() * min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))


@dataclass(frozen=True)
class BreakerPolicy:
    fail_max: int = 5
    reset_timeout_s: float = 10.0


def _is_business_error(exc: BaseException) -> bool:
    return isinstance(exc, DownstreamRejected)


class _StateListener(CircuitBreakerListener):  # type: ignore[misc]
    def __init__(self, target: str, events: ResilienceEvents) -> None:
        self.target = target
        self.events = events

    def state_change(self, breaker: CircuitBreaker, old: object, new: object) -> None:
        state = getattr(new, "state", None)
        self.events.breaker_state(self.target, _STATE_VALUES.get(state, BREAKER_CLOSED))  # type: ignore[arg-type]


@dataclass
class Downstream:
    """The resilience policy for one remote service (named ``target`` in metrics)."""

    target: str
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    breaker_policy: BreakerPolicy = field(default_factory=BreakerPolicy)
    events: ResilienceEvents = field(default_factory=NoResilienceEvents)

    def __post_init__(self) -> None:
        self.breaker = CircuitBreaker(
            fail_max=self.breaker_policy.fail_max,
            timeout_duration=timedelta(seconds=self.breaker_policy.reset_timeout_s),
            exclude=[_is_business_error],
            listeners=[_StateListener(self.target, self.events)],
            name=self.target,
        )
        self.events.breaker_state(self.target, BREAKER_CLOSED)

    @property
    def breaker_state(self) -> int:
        return _STATE_VALUES.get(self.breaker.current_state, BREAKER_CLOSED)

    async def call(self, invoke: Callable[[float], Awaitable[T]]) -> T:
        """Run ``invoke(timeout_s)`` under the policy; the same request (and its
        idempotency key) is sent on every attempt, so retrying is safe. The breaker
        sees the call once, after its retries (see the module docstring)."""
        try:
            return await self.breaker.call_async(self._with_retries, invoke)
        except CircuitBreakerError as exc:
            cause = exc.__cause__
            if isinstance(cause, DownstreamUnavailable):  # this call's failure opened it: say what happened
                raise DownstreamUnavailable(
                    self.target, f"{cause.detail} (circuit breaker opened)", cause.code, cause.maybe_applied
                ) from cause
            raise DownstreamUnavailable(  # open: nothing was sent
                self.target, "circuit breaker open; failing fast", grpc.StatusCode.UNAVAILABLE, maybe_applied=False
            ) from exc

    async def _with_retries(self, invoke: Callable[[float], Awaitable[T]]) -> T:
        maybe_applied = False
        last_code = grpc.StatusCode.UNAVAILABLE
        last_message = ""
        for attempt in range(1, self.retry.max_attempts + 1):
            try:
                return await invoke(self.retry.attempt_timeout_s)
            except NotSent as exc:
                last_code, last_message = grpc.StatusCode.UNAVAILABLE, str(exc)
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in RETRYABLE_CODES:
                    raise DownstreamRejected(self.target, exc.code(), exc.details() or "") from exc
                maybe_applied = True
                last_code, last_message = exc.code(), exc.details() or exc.code().name
                if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    self.events.timeout(self.target)
            if attempt < self.retry.max_attempts:
                delay = self.retry.backoff(attempt)
                self.events.retry(self.target, last_code.name, attempt, delay)
                await asyncio.sleep(delay)
        raise DownstreamUnavailable(
            self.target, f"{last_message} after {self.retry.max_attempts} attempts", last_code, maybe_applied
        )
