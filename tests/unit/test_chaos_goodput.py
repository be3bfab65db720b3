"""Goodput windows and bars (tools.chaos.goodput), from plans, replies and faults built by hand."""

from __future__ import annotations

from tools.chaos.auditor import OrderFact
from tools.chaos.goodput import FAULT_FREE, MIN_FAULT_FREE, RECOVERING, measure
from tools.chaos.injector import InjectedFault
from tools.chaos.workload import ClientReply, SagaPlan

LIMIT = 100_000
SETTLE = 6.0
KINDS = ["SIGKILL payment", "latency order->payment"]
FAULTS = [
    InjectedFault("SIGKILL payment", "process", 10, started_s=10.0, ended_s=14.0, confirmed=True),
    InjectedFault("latency order->payment", "network", 20, started_s=12.0, ended_s=16.0, confirmed=True),
]


def _plan(i: int, faults: tuple[str, ...] = (), total: int = 500) -> SagaPlan:
    return SagaPlan(i, "alice", f"k{i}", total, 1, faults, 1)


def _reply(plan: SagaPlan, sent_s: float, elapsed_s: float = 0.5) -> ClientReply:
    return ClientReply(plan.index, plan.customer, plan.key, 0, 1, "OK", f"ord{plan.index}", "COMPLETED", "",
                       elapsed_s, sent_s)


def _order(plan: SagaPlan, status: str) -> OrderFact:
    return OrderFact(f"ord{plan.index}", plan.customer, plan.key, "EUR", plan.total_minor, status, "", "")


def test_orders_fall_in_the_window_they_were_at_and_only_clean_requests_count() -> None:
    during_kill = _plan(1)
    during_both = _plan(2)
    recovering = _plan(3)  # 16.0 healed, +6 s settle: 20 s is still recovering
    fault_free = [_plan(i) for i in range(10, 10 + MIN_FAULT_FREE)]  # long after: fault-free
    asked_fault = _plan(4, ("payment_decline",))
    over_limit = _plan(5, total=LIMIT + 1)
    plans = [during_kill, during_both, recovering, *fault_free, asked_fault, over_limit]
    replies = [_reply(during_kill, 10.5), _reply(during_both, 13.0), _reply(recovering, 20.0),
               *(_reply(p, 30.0) for p in fault_free), _reply(asked_fault, 40.0), _reply(over_limit, 40.0)]
    orders = [_order(during_kill, "CANCELLED"), _order(during_both, "COMPLETED"), _order(recovering, "COMPLETED"),
              *(_order(p, "COMPLETED") for p in fault_free), _order(asked_fault, "CANCELLED"),
              _order(over_limit, "CANCELLED")]
    g = measure(plans, replies, FAULTS, orders, LIMIT, SETTLE, KINDS)
    by_kind = {s.window: (s.orders, s.completed) for s in g.by_kind}
    assert by_kind == {"SIGKILL payment": (2, 1), "latency order->payment": (1, 1)}
    assert (g.recovering.window, g.recovering.orders, g.recovering.completed) == (RECOVERING, 1, 1)
    assert (g.fault_free.window, g.fault_free.orders, g.fault_free.completed) == (FAULT_FREE, MIN_FAULT_FREE,
                                                                                  MIN_FAULT_FREE)
    assert g.failures == []


def test_a_fault_free_order_that_did_not_complete_fails_the_bar_and_is_named() -> None:
    plans = [_plan(i) for i in range(MIN_FAULT_FREE * 2)]
    replies = [_reply(p, 40.0) for p in plans]
    orders = [_order(p, "CANCELLED" if p.index == 3 else "COMPLETED") for p in plans]
    g = measure(plans, replies, FAULTS, orders, LIMIT, SETTLE, KINDS)
    assert g.fault_free.orders == 2 * MIN_FAULT_FREE and g.fault_free.completed == 2 * MIN_FAULT_FREE - 1
    assert g.not_completed_fault_free == ["k3"]
    assert len(g.failures) == 1 and "below 99 %" in g.failures[0]


def test_a_key_spanning_a_fault_through_its_retries_is_not_fault_free() -> None:
    plan = _plan(1)
    replies = [_reply(plan, 8.0, elapsed_s=1.0), _reply(plan, 30.0)]  # first try before, retry long after
    g = measure([plan], replies, FAULTS, [_order(plan, "CANCELLED")], LIMIT, SETTLE, KINDS)
    assert g.fault_free.orders == 0
    assert {s.window: s.orders for s in g.by_kind} == {"SIGKILL payment": 1, "latency order->payment": 1}


def test_too_few_fault_free_orders_or_too_many_keys_without_an_order_fail() -> None:
    plans = [_plan(i) for i in range(10)]
    replies = [_reply(p, 40.0) for p in plans]
    orders = [_order(p, "COMPLETED") for p in plans[:8]]  # two keys never made an order: 20 %
    g = measure(plans, replies, FAULTS, orders, LIMIT, SETTLE, KINDS)
    assert g.keys_without_order == 2 and g.fault_free.completed == 8
    assert len(g.failures) == 2
    assert "only 10 clean order(s)" in g.failures[0] and "2 of 10 keys made no order" in g.failures[1]
