"""Goodput: did the system *serve* while and after it was hurt, not only keep the money right?

The orders counted are the *clean* ones: the request asked for no fault (``x-sagascope-fault``)
and stays within the payment limit, so COMPLETED is the only right end. Each key is placed in
time by its clients' attempts, from the first send to the last reply:

- *during* a fault kind: that span overlaps a fault of the kind while it was active (from its
  injection until it was healed: toxic removed, or process healthy again);
- *fault-free*: the span overlaps no fault and starts at least ``settle_s`` after the last heal
  (one breaker reset plus one saga lease, from the settings the services were started with), so
  the breaker has had its chance to close and a lease held by a killed replica has run out;
- otherwise *recovering* (reported, not judged).

The verdict: at least :data:`FAULT_FREE_BAR` of the clean fault-free orders COMPLETED (and there
must be some to judge), and at most :data:`NO_ORDER_BAR` of all keys made no order at all.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from tools.chaos.auditor import OrderFact
from tools.chaos.injector import InjectedFault
from tools.chaos.workload import ClientReply, SagaPlan

FAULT_FREE_BAR = 0.99  # share of clean fault-free orders that must end COMPLETED
NO_ORDER_BAR = 0.10  # share of keys that may end without any order
MIN_FAULT_FREE = 20  # fewer clean fault-free orders than this: nothing to judge, and that fails too
FAULT_FREE = "fault-free"
RECOVERING = "recovering (healed < settle time ago)"


@dataclass(frozen=True)
class Share:
    """Clean orders in one window and how many of them ended COMPLETED (a key without an order
    counts as not completed: the client asked and got nothing)."""

    window: str
    orders: int
    completed: int

    @property
    def ratio(self) -> float | None:
        return self.completed / self.orders if self.orders else None

    @property
    def percent(self) -> str:
        return "-" if self.ratio is None else f"{100 * self.ratio:.1f} %"


@dataclass
class Goodput:
    settle_s: float
    by_kind: list[Share]
    fault_free: Share
    recovering: Share
    keys: int
    keys_without_order: int
    not_completed_fault_free: list[str] = field(default_factory=list)  # keys, for the report

    @property
    def no_order_ratio(self) -> float:
        return self.keys_without_order / self.keys if self.keys else 0.0

    @property
    def failures(self) -> list[str]:
        """Why the goodput verdict fails; empty when it passes."""
        found = []
        if self.fault_free.orders < MIN_FAULT_FREE:
            found.append(f"only {self.fault_free.orders} clean order(s) fell in fault-free windows "
                         f"(at least {MIN_FAULT_FREE} are needed to judge goodput)")
        elif (self.fault_free.ratio or 0.0) < FAULT_FREE_BAR:
            found.append(f"fault-free goodput {self.fault_free.percent} is below {100 * FAULT_FREE_BAR:.0f} %")
        if self.no_order_ratio > NO_ORDER_BAR:
            found.append(f"{self.keys_without_order} of {self.keys} keys made no order at all "
                         f"({100 * self.no_order_ratio:.1f} % > {100 * NO_ORDER_BAR:.0f} %)")
        return found


def spans(replies: Iterable[ClientReply]) -> dict[str, tuple[float, float]]:
    """Each key's (first send, last reply) on the campaign clock."""
    found: dict[str, tuple[float, float]] = {}
    for reply in replies:
        start, end = reply.sent_s, reply.sent_s + reply.elapsed_s
        if reply.key in found:
            first, last = found[reply.key]
            start, end = min(start, first), max(end, last)
        found[reply.key] = (start, end)
    return found


def _overlaps(span: tuple[float, float], start: float, end: float) -> bool:
    return span[0] <= end and span[1] >= start


def measure(plans: list[SagaPlan], replies: list[ClientReply], faults: list[InjectedFault],
            orders: list[OrderFact], limit_minor: int, settle_s: float, kinds: list[str]) -> Goodput:
    """Every fault record counts for the windows, confirmed or not: an unconfirmed fault may still
    have hurt, and a window is only fault-free if nothing at all was going on."""
    status = {(o.customer_id, o.idempotency_key): o.status for o in orders}
    key_spans = spans(replies)
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    missed: list[str] = []
    for plan in plans:
        span = key_spans.get(plan.key)
        if plan.faults or plan.total_minor > limit_minor or span is None:
            continue
        completed = status.get((plan.customer, plan.key)) == "COMPLETED"
        during = {f.kind for f in faults if _overlaps(span, f.started_s, f.ended_s)}
        windows = sorted(during) or [
            RECOVERING if any(_overlaps(span, f.started_s, f.ended_s + settle_s) for f in faults) else FAULT_FREE]
        for window in windows:
            counts[window][0] += 1
            counts[window][1] += completed
        if windows == [FAULT_FREE] and not completed:
            missed.append(plan.key)

    def share(window: str) -> Share:
        orders_in, completed_in = counts.get(window, [0, 0])
        return Share(window, orders_in, completed_in)

    made = {key for _customer, key in status}
    return Goodput(
        settle_s=settle_s,
        by_kind=[share(kind) for kind in kinds],
        fault_free=share(FAULT_FREE),
        recovering=share(RECOVERING),
        keys=len(plans),
        keys_without_order=sum(1 for plan in plans if plan.key not in made),
        not_completed_fault_free=missed,
    )
