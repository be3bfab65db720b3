"""The resilience policy of every outgoing call (sagascope/common/resilience.py).

Real aiobreaker breakers and real ``grpc.aio.AioRpcError`` values; only the remote call is a
local coroutine, so each test controls exactly which status every attempt gets.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterable

import grpc
import pytest

from sagascope.common.resilience import (
    BREAKER_CLOSED,
    BREAKER_HALF_OPEN,
    BREAKER_OPEN,
    BreakerPolicy,
    Downstream,
    DownstreamRejected,
    DownstreamUnavailable,
    NotSent,
    RetryPolicy,
)

FAST = RetryPolicy(attempt_timeout_s=0.5, max_attempts=3, base_delay_s=0.001, max_delay_s=0.002)


def rpc_error(code: grpc.StatusCode, details: str = "") -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details or code.name)


class RecordedEvents:
    """A ResilienceEvents sink that keeps what it was told."""

    def __init__(self) -> None:
        self.retries: list[tuple[str, str, int, float]] = []
        self.timeouts: list[str] = []
        self.states: list[int] = []

    def retry(self, target: str, code: str, attempt: int, delay_s: float) -> None:
        self.retries.append((target, code, attempt, delay_s))

    def timeout(self, target: str) -> None:
        self.timeouts.append(target)

    def breaker_state(self, target: str, state: int) -> None:
        self.states.append(state)


def scripted(outcomes: Iterable[BaseException | str]) -> tuple[Callable[[float], Awaitable[str]], list[float]]:
    """An invoke function answering attempt by attempt from ``outcomes``; records each timeout it got."""
    pending = list(outcomes)
    timeouts: list[float] = []

    async def invoke(timeout_s: float) -> str:
        timeouts.append(timeout_s)
        outcome = pending.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return invoke, timeouts


# --- retry classes -------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED])
async def test_a_retryable_status_is_retried_with_the_per_attempt_deadline(code: grpc.StatusCode) -> None:
    events = RecordedEvents()
    downstream = Downstream("payment", retry=FAST, events=events)
    invoke, timeouts = scripted([rpc_error(code), rpc_error(code), "charged"])

    assert await downstream.call(invoke) == "charged"
    assert timeouts == [FAST.attempt_timeout_s] * 3
    assert [(r[0], r[1], r[2]) for r in events.retries] == [("payment", code.name, 1), ("payment", code.name, 2)]
    expected_timeouts = 2 if code == grpc.StatusCode.DEADLINE_EXCEEDED else 0
    assert events.timeouts == ["payment"] * expected_timeouts


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.INTERNAL,
    ],
)
async def test_a_business_error_is_not_retried_and_says_it_was_not_applied(code: grpc.StatusCode) -> None:
    events = RecordedEvents()
    downstream = Downstream("payment", retry=FAST, events=events)
    invoke, timeouts = scripted([rpc_error(code, "card declined")])

    with pytest.raises(DownstreamRejected) as caught:
        await downstream.call(invoke)
    assert caught.value.code == code
    assert caught.value.details == "card declined"
    assert len(timeouts) == 1
    assert events.retries == []


async def test_retries_exhausted_after_a_sent_attempt_may_have_applied_the_request() -> None:
    downstream = Downstream("payment", retry=FAST)
    invoke, timeouts = scripted([rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED)] * 3)

    with pytest.raises(DownstreamUnavailable) as caught:
        await downstream.call(invoke)
    assert len(timeouts) == FAST.max_attempts
    assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert caught.value.maybe_applied is True  # a deadline says nothing about whether it landed
    assert "after 3 attempts" in str(caught.value)


async def test_retries_exhausted_when_nothing_was_ever_sent_is_known_not_applied() -> None:
    downstream = Downstream("payment", retry=FAST)
    invoke, _ = scripted([NotSent("unreachable")] * 3)

    with pytest.raises(DownstreamUnavailable) as caught:
        await downstream.call(invoke)
    assert caught.value.maybe_applied is False
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE


# --- jitter --------------------------------------------------------------------------------------


def test_full_jitter_backoff_stays_within_zero_and_the_capped_exponential() -> None:
    policy = RetryPolicy(base_delay_s=0.05, max_delay_s=1.0)
    draws = random.Random(42)
    for attempt in range(1, 12):
        cap = min(policy.max_delay_s, policy.base_delay_s * 2 ** (attempt - 1))
        delays = [policy.backoff(attempt, draws.random) for _ in range(500)]
        assert all(0.0 <= d < cap for d in delays), attempt
        # Full jitter spreads over the whole window, not a narrow band near the cap.
        assert min(delays) < cap * 0.1 and max(delays) > cap * 0.9, attempt


def test_backoff_is_the_draw_times_the_window() -> None:
    policy = RetryPolicy(base_delay_s=0.1, max_delay_s=0.3)
    assert policy.backoff(1, lambda: 0.5) == pytest.approx(0.05)
    assert policy.backoff(2, lambda: 0.5) == pytest.approx(0.1)
    assert policy.backoff(5, lambda: 0.5) == pytest.approx(0.15)  # capped at max_delay_s


# --- breaker transitions -------------------------------------------------------------------------


async def test_the_breaker_opens_after_fail_max_failures_then_fails_fast_without_sending() -> None:
    events = RecordedEvents()
    one_attempt = RetryPolicy(attempt_timeout_s=0.5, max_attempts=1)
    downstream = Downstream("payment", retry=one_attempt, breaker_policy=BreakerPolicy(fail_max=3), events=events)
    assert events.states == [BREAKER_CLOSED]

    failing, sent = scripted([rpc_error(grpc.StatusCode.UNAVAILABLE)] * 3)
    for _ in range(2):
        with pytest.raises(DownstreamUnavailable):
            await downstream.call(failing)
    assert downstream.breaker_state == BREAKER_CLOSED
    with pytest.raises(DownstreamUnavailable) as tripped:
        await downstream.call(failing)
    assert "circuit breaker opened" in str(tripped.value)
    assert tripped.value.maybe_applied is True
    assert downstream.breaker_state == BREAKER_OPEN
    assert events.states[-1] == BREAKER_OPEN

    never_called, calls = scripted(["charged"])
    with pytest.raises(DownstreamUnavailable) as fast:
        await downstream.call(never_called)
    assert calls == []  # open: nothing leaves
    assert fast.value.maybe_applied is False
    assert "failing fast" in str(fast.value)
    assert len(sent) == 3


async def test_the_breaker_counts_calls_not_attempts() -> None:
    """Two requests that each fail all three attempts are two failures, not six: with fail_max=5 the
    breaker stays closed for everyone else (counted per attempt it opened on the second request)."""
    downstream = Downstream("payment", retry=FAST, breaker_policy=BreakerPolicy(fail_max=5))
    for _ in range(2):
        failing, sent = scripted([NotSent("injected"), rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED),
                                  rpc_error(grpc.StatusCode.UNAVAILABLE)])
        with pytest.raises(DownstreamUnavailable) as failed:
            await downstream.call(failing)
        assert len(sent) == 3 and "after 3 attempts" in str(failed.value)
    assert downstream.breaker_state == BREAKER_CLOSED
    healthy, _ = scripted(["charged"])
    assert await downstream.call(healthy) == "charged"
    # A downstream that is really down: five failed calls in a row, and the fifth opens it.
    for i in range(5):
        failing, _ = scripted([rpc_error(grpc.StatusCode.UNAVAILABLE)] * 3)
        with pytest.raises(DownstreamUnavailable) as failed:
            await downstream.call(failing)
        assert ("circuit breaker opened" in str(failed.value)) == (i == 4)
    assert downstream.breaker_state == BREAKER_OPEN


async def test_after_the_reset_timeout_one_trial_call_closes_the_breaker_again() -> None:
    events = RecordedEvents()
    downstream = Downstream(
        "payment",
        retry=RetryPolicy(attempt_timeout_s=0.5, max_attempts=1),
        breaker_policy=BreakerPolicy(fail_max=1, reset_timeout_s=0.05),
        events=events,
    )
    failing, _ = scripted([rpc_error(grpc.StatusCode.UNAVAILABLE)])
    with pytest.raises(DownstreamUnavailable):
        await downstream.call(failing)
    assert downstream.breaker_state == BREAKER_OPEN

    await asyncio.sleep(0.1)
    healthy, _ = scripted(["charged"])
    assert await downstream.call(healthy) == "charged"
    assert downstream.breaker_state == BREAKER_CLOSED
    assert events.states == [BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN, BREAKER_CLOSED]


async def test_a_failed_trial_call_reopens_the_breaker() -> None:
    downstream = Downstream(
        "payment",
        retry=RetryPolicy(attempt_timeout_s=0.5, max_attempts=1),
        breaker_policy=BreakerPolicy(fail_max=1, reset_timeout_s=0.05),
    )
    failing, _ = scripted([rpc_error(grpc.StatusCode.UNAVAILABLE)] * 2)
    with pytest.raises(DownstreamUnavailable):
        await downstream.call(failing)
    await asyncio.sleep(0.1)
    with pytest.raises(DownstreamUnavailable):
        await downstream.call(failing)
    assert downstream.breaker_state == BREAKER_OPEN


async def test_business_errors_never_trip_the_breaker() -> None:
    downstream = Downstream(
        "payment", retry=RetryPolicy(attempt_timeout_s=0.5, max_attempts=1), breaker_policy=BreakerPolicy(fail_max=2)
    )
    declined, _ = scripted([rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "insufficient funds")] * 10)
    for _ in range(10):
        with pytest.raises(DownstreamRejected):
            await downstream.call(declined)
    assert downstream.breaker_state == BREAKER_CLOSED
