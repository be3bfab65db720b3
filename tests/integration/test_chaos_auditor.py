"""The chaos auditor against real storage: real sagas leave a state it accepts, and a state corrupted
behind the services' backs (a payment without an order, a second charge, a saga set back to RUNNING)
is reported with the ids involved. So the auditor can fail."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pymongo import AsyncMongoClient
from sqlalchemy import update
from sqlalchemy.ext.asyncio import create_async_engine

from sagascope.order.database import async_url
from sagascope.saga.store import saga_instances
from tests.support.order_stack import OrderStack, request
from tools.chaos.auditor import audit, read_facts
from tools.chaos.workload import ClientReply

LIMIT = 100_000


async def _place(stack: OrderStack, key: str, *faults: str) -> ClientReply:
    reply = await stack.stub.CreateOrder(request(key), metadata=stack.md("alice", *faults))
    order = reply.order
    status = {1: "PENDING", 2: "COMPLETED", 3: "CANCELLED", 4: "FAILED"}.get(order.status, str(order.status))
    return ClientReply(0, "alice", key, 0, 1, "OK", order.id, status, "", 0.0)


async def _insert_payment(stack: OrderStack, **fields: Any) -> str:
    payment_id = uuid.uuid4().hex
    now = datetime.now(UTC)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_url)
    try:
        await client[stack.payment_settings.mongo_db]["payments"].insert_one(
            {"_id": payment_id, "currency": "EUR", "status": "CHARGED", "decline_reason": "", "refund_reason": "",
             "refund_idempotency_key": "", "created_at": now, "updated_at": now, **fields}
        )
    finally:
        await client.close()
    return payment_id


async def test_the_auditor_accepts_real_sagas_and_reports_a_corrupted_state(order_stack, database_url):
    stack: OrderStack = order_stack
    replies = [
        await _place(stack, "audit-happy"),
        await _place(stack, "audit-refund", "confirm_failure"),
        await _place(stack, "audit-declined", "payment_decline"),
    ]
    assert [r.status for r in replies] == ["COMPLETED", "CANCELLED", "CANCELLED"]
    facts = await read_facts(database_url, stack.mongo_url)
    assert len(facts.orders) == 3 and len(facts.payments) == 3
    assert audit(facts, replies, LIMIT) == []

    happy, refunded = replies[0].order_id, replies[1].order_id
    orphan = await _insert_payment(stack, order_id="ord_nobody", amount_minor=4999, idempotency_key="saga_x:charge")
    saga_of_happy = next(o.saga_id for o in facts.orders if o.id == happy)
    second = await _insert_payment(stack, order_id=happy, amount_minor=4999, idempotency_key=f"{saga_of_happy}:again")
    saga_of_refunded = next(o.saga_id for o in facts.orders if o.id == refunded)
    engine = create_async_engine(async_url(database_url))
    try:
        async with engine.begin() as connection:
            await connection.execute(
                update(saga_instances).where(saga_instances.c.id == saga_of_refunded).values(status="RUNNING")
            )
    finally:
        await engine.dispose()
    # A client that was told COMPLETED for the refunded order.
    replies.append(ClientReply(0, "alice", "audit-refund", 1, 1, "OK", refunded, "COMPLETED", "", 0.0))

    violations = audit(await read_facts(database_url, stack.mongo_url), replies, LIMIT)
    found = {(v.check, v.subject.split()[0]) for v in violations}
    assert ("orphan-payment", orphan) in found
    assert ("completed-charge", happy) in found
    assert ("orphan-payment", second) in found  # its key is not the charge key of the order's saga
    assert ("saga-not-terminal", saga_of_refunded) in found
    assert ("order-saga-mismatch", refunded) in found
    assert any(v.check == "reply-mismatch" and refunded in v.subject for v in violations)
    assert len(violations) == 6, violations
