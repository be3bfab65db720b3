"""``sagascope demo``: run the five saga scenarios against a running (or fresh) stack."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc

from sagascope.cli.client import OrderClient, OrderResult, login, order_request
from sagascope.common.money import format_money

DEMO_USER, DEMO_PASSWORD = "alice", "alice-dev-password"  # DEVELOPMENT ONLY (demo_users.json)


@dataclass(frozen=True)
class Outcome:
    scenario: str
    expected: str
    got: str
    ok: bool
    order_id: str
    correlation_id: str
    elapsed_s: float
    detail: str


Say = Callable[[str], None]


async def run_scenarios(order_target: str, identity_target: str, say: Say) -> list[Outcome]:
    token = await login(identity_target, DEMO_USER, DEMO_PASSWORD)
    client = OrderClient(order_target, token)
    run = time.strftime("%H%M%S")
    try:
        outcomes = []
        for scenario in SCENARIOS:
            say(f"  running: {scenario.__doc__}")
            outcomes.append(await scenario(client, f"demo-{run}", say))
        return outcomes
    finally:
        await client.close()


def _outcome(scenario: str, expected: str, result: OrderResult, ok: bool, detail: str) -> Outcome:
    return Outcome(
        scenario,
        expected,
        result.status_name,
        ok,
        result.order.id if result.order else "-",
        result.correlation_id,
        result.elapsed_s,
        detail,
    )


async def happy_path(client: OrderClient, run: str, say: Say) -> Outcome:
    """happy path: 2 x 49.99 EUR"""
    result = await client.create_order(
        order_request(DEMO_USER, f"{run}-happy", amount_minor=4999, quantity=2)
    )
    ok = result.status_name == "COMPLETED" and bool(result.order and result.order.payment_id)
    detail = f"charged {format_money(result.order.total_minor, 'EUR')}" if result.order else result.message
    return _outcome("happy path", "COMPLETED", result, ok, detail)


async def payment_declined(client: OrderClient, run: str, say: Say) -> Outcome:
    """payment declined: 1500.00 EUR is above the 1000.00 limit"""
    result = await client.create_order(order_request(DEMO_USER, f"{run}-declined", amount_minor=150000))
    ok = result.status_name == "CANCELLED" and "declined" in (
        result.order.failure_reason if result.order else ""
    )
    return _outcome(
        "payment declined",
        "CANCELLED",
        result,
        ok,
        result.order.failure_reason if result.order else result.message,
    )


async def confirm_fails(client: OrderClient, run: str, say: Say) -> Outcome:
    """confirm fails after the charge -> refund (fault header confirm_failure)"""
    result = await client.create_order(
        order_request(DEMO_USER, f"{run}-confirm-fails", amount_minor=2500), inject=("confirm_failure",)
    )
    order = result.order
    ok = (
        result.status_name == "CANCELLED"
        and bool(order and order.payment_id)
        and "confirm" in (order.failure_reason if order else "")
    )
    detail = f"payment {order.payment_id} refunded; {order.failure_reason}" if order else result.message
    return _outcome("confirm fails -> refund", "CANCELLED (refunded)", result, ok, detail)


async def same_key_twice(client: OrderClient, run: str, say: Say) -> Outcome:
    """the same idempotency key sent twice"""
    request = order_request(DEMO_USER, f"{run}-idempotent", amount_minor=1999)
    first = await client.create_order(request)
    second = await client.create_order(request)
    same = bool(
        first.order
        and second.order
        and first.order.id == second.order.id
        and first.order.payment_id == second.order.payment_id
    )
    detail = (
        f"both answers: order {first.order.id}, payment {first.order.payment_id} (charged once)"
        if same and first.order
        else f"first {first.status_name}, second {second.status_name}"
    )
    return _outcome(
        "same key twice", "same order, one charge", second, same and first.status_name == "COMPLETED", detail
    )


async def payment_unreachable(client: OrderClient, run: str, say: Say) -> Outcome:
    """payment unreachable -> breaker opens -> fail fast (6 orders)"""
    results = []
    for i in range(6):
        result = await client.create_order(
            order_request(DEMO_USER, f"{run}-unreachable-{i}", amount_minor=1000),
            inject=("payment_unreachable",),
        )
        results.append(result)
        say(
            f"    order {i + 1}: {result.code.name} in {result.elapsed_s * 1000:.0f} ms — {result.message[:90]}"
        )
    last = results[-1]
    ok = (
        all(r.code == grpc.StatusCode.UNAVAILABLE for r in results) and "circuit breaker open" in last.message
    )
    timings = ", ".join(f"{r.elapsed_s * 1000:.0f}" for r in results)
    return Outcome(
        "payment unreachable",
        "UNAVAILABLE, then fail fast",
        last.status_name,
        ok,
        "-",
        last.correlation_id,
        last.elapsed_s,
        f"ms per order: {timings}; breaker open, nothing charged",
    )


SCENARIOS: list[Callable[[OrderClient, str, Say], Awaitable[Outcome]]] = [
    happy_path,
    payment_declined,
    confirm_fails,
    same_key_twice,
    payment_unreachable,
]


def render_table(outcomes: list[Outcome]) -> str:
    headers = ("", "scenario", "expected", "got", "ms", "order", "correlation id")
    rows = [
        (
            "ok" if o.ok else "FAIL",
            o.scenario,
            o.expected,
            o.got,
            f"{o.elapsed_s * 1000:.0f}",
            o.order_id,
            o.correlation_id,
        )
        for o in outcomes
    ]
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()  # noqa: E731
    out = [line(headers), line(tuple("-" * w for w in widths)), *(line(r) for r in rows), ""]
    out += [f"  {o.scenario}: {o.detail}" for o in outcomes]
    return "\n".join(out)
