"""The auditor: reads the order database (SQL) and the payments collection (MongoDB) directly and
checks the money and the replies. It trusts no service: no RPC is made.

Net charge of an order = the sum of ``amount_minor`` over its payments in status CHARGED (a
REFUNDED payment was charged and given back; DECLINED and VOIDED never took money).

Checks (each failure is a :class:`Violation` naming the ids):

- ``saga-not-terminal``: every saga is COMPLETED or COMPENSATED (RUNNING, COMPENSATING and FAILED
  — a compensation still pending — are not an end).
- ``order-not-terminal``: every order is COMPLETED or CANCELLED.
- ``order-saga-mismatch``: every order has its saga and the two agree (COMPLETED/COMPLETED,
  CANCELLED/COMPENSATED); every saga has its order.
- ``completed-charge``: a COMPLETED order has exactly one CHARGED payment, of its total and
  currency, and the order names that payment.
- ``cancelled-charge``: a CANCELLED order has no CHARGED payment (net charge zero).
- ``orphan-payment``: every payment names an existing order whose saga issued its key
  (``<saga id>:charge``); a VOIDED fence (no order) names an existing saga by its key.
- ``over-limit-completed``: an order above the payment limit is never COMPLETED, and no charge
  above the limit exists.
- ``reply-mismatch``: every reply a client got agrees with the final state (rules in
  :func:`check_replies`).
- ``manual-resolution-unaudited``: a saga an operator resolved (``resolution = manual``) has the
  audit record saying who and why.

A manual resolution (ResolveSaga: a person declared the compensation done outside the system,
e.g. finance refunded by hand) is not a violation: its CANCELLED order may keep a CHARGED
payment here. :func:`manual_resolutions` lists each one with who, why and the money left
charged, so a report shows them as what they are.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pymongo import AsyncMongoClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from sagascope.order.database import async_url
from sagascope.order.tables import orders
from sagascope.saga.store import saga_audit, saga_instances
from tools.chaos.workload import ClientReply

TERMINAL_SAGA = {"COMPLETED", "COMPENSATED"}
# saga_instances.resolution of a saga an operator resolved (sagascope/saga/admin).
MANUAL = "manual"
TERMINAL_ORDER = {"COMPLETED", "CANCELLED"}
SAGA_FOR_ORDER = {"COMPLETED": "COMPLETED", "CANCELLED": "COMPENSATED"}
CHARGE_STEP = "charge"
# What an OK reply's order status allows as the final status.
REPLY_ALLOWS = {
    "COMPLETED": {"COMPLETED"},
    "CANCELLED": {"CANCELLED"},
    "FAILED": {"CANCELLED"},  # FAILED = a compensation still pending: it can only end compensated
    "PENDING": TERMINAL_ORDER,  # the reply came before the saga ended
}
# Refusals that a valid, repeated-with-the-same-body request must never get.
NEVER_FOR_VALID = {"INVALID_ARGUMENT", "ALREADY_EXISTS", "PERMISSION_DENIED", "NOT_FOUND", "FAILED_PRECONDITION"}
# The order service's UNAVAILABLE after a downstream outage names the order and its fate.
_CANCELLED_REPLY = re.compile(r"order (\S+) (?:was cancelled|is FAILED until its refund)")


@dataclass(frozen=True)
class OrderFact:
    id: str
    customer_id: str
    idempotency_key: str
    currency: str
    total_minor: int
    status: str
    payment_id: str
    saga_id: str


@dataclass(frozen=True)
class SagaFact:
    id: str
    status: str
    order_id: str
    failure_reason: str = ""
    resolution: str = ""
    # For a manual resolution: the audit record's operator and note ("" when there is none).
    resolved_by: str = ""
    resolution_note: str = ""


@dataclass(frozen=True)
class ManualResolution:
    saga_id: str
    order_id: str
    resolved_by: str
    note: str
    # Still CHARGED in the payments collection (minor units): what the person settled by hand.
    charged_minor: int


@dataclass(frozen=True)
class PaymentFact:
    id: str
    order_id: str
    amount_minor: int
    currency: str
    status: str
    idempotency_key: str


@dataclass
class Facts:
    orders: list[OrderFact] = field(default_factory=list)
    sagas: list[SagaFact] = field(default_factory=list)
    payments: list[PaymentFact] = field(default_factory=list)


@dataclass(frozen=True)
class Violation:
    check: str
    subject: str  # the ids involved
    detail: str


# --- reading --------------------------------------------------------------------------------------


async def read_orders_and_sagas(database_url: str) -> tuple[list[OrderFact], list[SagaFact]]:
    engine = create_async_engine(async_url(database_url))
    try:
        async with engine.connect() as connection:
            order_rows = (
                await connection.execute(
                    select(
                        orders.c.id, orders.c.customer_id, orders.c.idempotency_key, orders.c.currency,
                        orders.c.total_minor, orders.c.status, orders.c.payment_id, orders.c.saga_id,
                    )
                )
            ).all()
            saga_rows = (
                await connection.execute(
                    select(
                        saga_instances.c.id, saga_instances.c.status, saga_instances.c.state,
                        saga_instances.c.failure_reason, saga_instances.c.resolution,
                    )
                )
            ).all()
            resolutions = {
                r.saga_id: (r.actor, r.note)
                for r in await connection.execute(
                    select(saga_audit.c.saga_id, saga_audit.c.actor, saga_audit.c.note)
                    .where(saga_audit.c.action == "resolve")
                    .order_by(saga_audit.c.id)
                )
            }
    finally:
        await engine.dispose()
    order_facts = [
        OrderFact(r.id, r.customer_id, r.idempotency_key, r.currency, int(r.total_minor), r.status, r.payment_id,
                  r.saga_id)
        for r in order_rows
    ]
    saga_facts = [
        SagaFact(
            r.id, r.status, str(json.loads(r.state or "{}").get("order_id", "")), r.failure_reason or "",
            r.resolution or "", *resolutions.get(r.id, ("", "")),
        )
        for r in saga_rows
    ]
    return order_facts, saga_facts


async def read_payments(mongo_url: str, database: str = "payments") -> list[PaymentFact]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, serverSelectionTimeoutMS=10_000)
    try:
        documents = await client[database]["payments"].find({}).to_list()
    finally:
        await client.close()
    return [
        PaymentFact(
            str(d["_id"]), d.get("order_id") or "", int(d.get("amount_minor") or 0), d.get("currency") or "",
            str(d.get("status")), str(d.get("idempotency_key") or ""),
        )
        for d in documents
    ]


async def read_facts(database_url: str, mongo_url: str) -> Facts:
    order_facts, saga_facts = await read_orders_and_sagas(database_url)
    return Facts(order_facts, saga_facts, await read_payments(mongo_url))


# --- checking -------------------------------------------------------------------------------------


def check_state(facts: Facts, limit_minor: int) -> list[Violation]:
    """The stored state alone: sagas, orders and payments."""
    found: list[Violation] = []
    orders_by_id = {o.id: o for o in facts.orders}
    sagas_by_id = {s.id: s for s in facts.sagas}
    charged: dict[str, list[PaymentFact]] = defaultdict(list)
    for payment in facts.payments:
        if payment.status == "CHARGED":
            charged[payment.order_id].append(payment)

    manual = {s.order_id for s in facts.sagas if s.resolution == MANUAL}
    for saga in facts.sagas:
        if saga.resolution == MANUAL and not saga.resolved_by:
            found.append(Violation("manual-resolution-unaudited", f"{saga.id} order {saga.order_id}",
                                   "resolved manually, but no audit record says by whom and why"))
        if saga.status not in TERMINAL_SAGA:
            found.append(Violation("saga-not-terminal", f"{saga.id} order {saga.order_id}",
                                   f"saga is {saga.status}: {saga.failure_reason[:200]}"))
        if saga.order_id not in orders_by_id:
            found.append(Violation("order-saga-mismatch", saga.id, f"saga's order {saga.order_id!r} does not exist"))

    for order in facts.orders:
        if order.status not in TERMINAL_ORDER:
            found.append(Violation("order-not-terminal", order.id, f"order is {order.status}"))
        its_saga = sagas_by_id.get(order.saga_id)
        if its_saga is None:
            found.append(Violation("order-saga-mismatch", order.id, f"its saga {order.saga_id} does not exist"))
        elif order.status in SAGA_FOR_ORDER and its_saga.status != SAGA_FOR_ORDER[order.status]:
            found.append(Violation("order-saga-mismatch", f"{order.id} saga {its_saga.id}",
                                   f"order {order.status} but saga {its_saga.status}"))
        charges = charged.get(order.id, [])
        net = sum(p.amount_minor for p in charges)
        ids = ",".join(p.id for p in charges) or "none"
        if order.status == "COMPLETED":
            if len(charges) != 1 or net != order.total_minor or charges[0].currency != order.currency:
                found.append(Violation(
                    "completed-charge", f"{order.id} payments {ids}",
                    f"COMPLETED {order.total_minor} {order.currency}, but {len(charges)} CHARGED payment(s) "
                    f"netting {net} {','.join(sorted({p.currency for p in charges}))}",
                ))
            elif charges[0].id != order.payment_id:
                found.append(Violation("completed-charge", f"{order.id} payment {charges[0].id}",
                                       f"the order names payment {order.payment_id!r}"))
        elif order.status == "CANCELLED" and charges and order.id not in manual:
            found.append(Violation("cancelled-charge", f"{order.id} payments {ids}",
                                   f"CANCELLED, but {net} {order.currency} stays charged"))
        if order.total_minor > limit_minor and order.status == "COMPLETED":
            found.append(Violation("over-limit-completed", order.id,
                                   f"total {order.total_minor} is above the limit {limit_minor}"))

    for payment in facts.payments:
        saga_id = payment.idempotency_key.rsplit(":", 1)[0] if payment.idempotency_key.endswith(
            f":{CHARGE_STEP}") else ""
        if payment.order_id:
            paid_for = orders_by_id.get(payment.order_id)
            if paid_for is None:
                found.append(Violation("orphan-payment", f"{payment.id} order {payment.order_id}",
                                       f"{payment.status} {payment.amount_minor} {payment.currency}: no such order"))
            elif saga_id != paid_for.saga_id:
                found.append(Violation(
                    "orphan-payment", f"{payment.id} order {paid_for.id}",
                    f"key {payment.idempotency_key!r} is not the charge key of saga {paid_for.saga_id}",
                ))
        elif saga_id not in sagas_by_id:
            found.append(Violation("orphan-payment", payment.id,
                                   f"{payment.status} without an order, key {payment.idempotency_key!r} names no saga"))
        if payment.status == "CHARGED" and payment.amount_minor > limit_minor:
            found.append(Violation("over-limit-completed", f"{payment.id} order {payment.order_id}",
                                   f"charged {payment.amount_minor} above the limit {limit_minor}"))
    return found


def check_replies(facts: Facts, replies: Iterable[ClientReply]) -> list[Violation]:
    """Every reply agrees with the final state of the order its key made:

    - OK naming an order: the key's order is that order, and its final status is allowed by
      :data:`REPLY_ALLOWS` (COMPLETED->COMPLETED, CANCELLED->CANCELLED, FAILED->CANCELLED,
      PENDING->either);
    - UNAVAILABLE saying the order "was cancelled" or "is FAILED until its refund": that order
      is the key's order and ends CANCELLED;
    - a refusal of a valid request (:data:`NEVER_FOR_VALID`) is a violation: every copy of a key
      carries the same body;
    - any other error (the call was cut, timed out, failed inside) allows any final state, or no
      order at all.
    """
    found: list[Violation] = []
    by_key = {(o.customer_id, o.idempotency_key): o for o in facts.orders}
    for reply in replies:
        order = by_key.get((reply.customer, reply.key))
        where = f"key {reply.key} copy {reply.copy} attempt {reply.attempt}"
        if reply.code == "OK":
            if order is None or order.id != reply.order_id:
                found.append(Violation("reply-mismatch", f"{where} order {reply.order_id}",
                                       f"OK {reply.status}, but the key's order is {order.id if order else 'missing'}"))
            elif order.status not in REPLY_ALLOWS.get(reply.status, set()):
                found.append(Violation("reply-mismatch", f"{where} order {order.id}",
                                       f"the client was told {reply.status}; the order ended {order.status}"))
        elif reply.code in NEVER_FOR_VALID:
            found.append(Violation("reply-mismatch", where, f"{reply.code} for a valid request: {reply.message[:200]}"))
        elif reply.code == "UNAVAILABLE" and (named := _CANCELLED_REPLY.search(reply.message)):
            if order is None or order.id != named.group(1) or order.status != "CANCELLED":
                found.append(Violation(
                    "reply-mismatch", f"{where} order {named.group(1)}",
                    f"told the order was or would be cancelled; the key's order is "
                    f"{f'{order.id} {order.status}' if order else 'missing'}",
                ))
    return found


def manual_resolutions(facts: Facts) -> list[ManualResolution]:
    """Sagas a person resolved, with who, why and what stays charged (reported, not violations)."""
    charged: Counter[str] = Counter()
    for payment in facts.payments:
        if payment.status == "CHARGED":
            charged[payment.order_id] += payment.amount_minor
    return [
        ManualResolution(s.id, s.order_id, s.resolved_by, s.resolution_note, charged[s.order_id])
        for s in facts.sagas
        if s.resolution == MANUAL
    ]


def audit(facts: Facts, replies: Iterable[ClientReply], limit_minor: int) -> list[Violation]:
    return check_state(facts, limit_minor) + check_replies(facts, replies)


def summarize(facts: Facts) -> dict[str, Counter[str]]:
    """Counts for the report: orders, sagas and payments by status."""
    return {
        "orders": Counter(o.status for o in facts.orders),
        "sagas": Counter(s.status for s in facts.sagas),
        "resolutions": Counter(s.resolution for s in facts.sagas if s.resolution),
        "payments": Counter(p.status for p in facts.payments),
    }
