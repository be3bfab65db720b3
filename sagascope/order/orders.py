"""Placing and reading orders: idempotency, ownership, and starting the saga."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

from sagascope.common.auth import Principal
from sagascope.common.errors import AlreadyExists, NotFound, PermissionDenied, Unavailable
from sagascope.order.repository import Item, OrderReader, OrderRow, now
from sagascope.order.saga import CANCELLED, COMPLETED, FAILED, PENDING, OrderSagaState
from sagascope.saga.executor import SagaExecutor, split_failure
from sagascope.saga.store import FailureKind, SagaRecord, SagaStatus

_ORDER_STATUS = {
    SagaStatus.COMPLETED: COMPLETED,
    SagaStatus.COMPENSATED: CANCELLED,
    SagaStatus.FAILED: FAILED,
}

ADMIN_ROLE = "orders.admin"


@dataclass(frozen=True)
class NewOrder:
    customer_id: str
    items: tuple[Item, ...]
    currency: str
    idempotency_key: str

    @property
    def total_minor(self) -> int:
        return sum(item.quantity * item.unit_price_minor for item in self.items)

    def fingerprint(self) -> str:
        body = {
            "customer_id": self.customer_id,
            "currency": self.currency,
            "items": [[i.sku, i.quantity, i.unit_price_minor] for i in self.items],
        }
        return hashlib.sha256(json.dumps(body, separators=(",", ":")).encode()).hexdigest()


def order_after_saga(state: OrderSagaState, record: SagaRecord) -> OrderRow:
    """The order as the saga just committed it — no read back from the database needed."""
    status = _ORDER_STATUS.get(record.status, PENDING)
    stamp = datetime.fromisoformat(state.created_at)
    return OrderRow(
        id=state.order_id,
        customer_id=state.customer_id,
        currency=state.currency,
        total_minor=state.total_minor,
        status=status,
        payment_id=state.payment_id,
        failure_reason="" if status in (COMPLETED, PENDING) else record.failure_reason[:2000],
        correlation_id=state.correlation_id,
        idempotency_key=state.idempotency_key,
        request_hash=state.request_hash,
        saga_id=state.saga_id,
        created_at=stamp,
        updated_at=now(),
        items=tuple(Item(**item) for item in state.items),
    )


def _raise_if_unavailable(order: OrderRow, record: SagaRecord) -> None:
    """An order that ended because payment could not be reached is an error to the caller, not
    a business outcome — to the first request and to every repeat of it alike (the saga log
    keeps the failure's kind), so a retry with the same key gets the same answer."""
    if record.failure_kind != FailureKind.UNAVAILABLE or order.status not in (CANCELLED, FAILED):
        return
    outcome = (
        f"order {order.id} is FAILED until its refund can be made (recovery retries it)"
        if order.status == FAILED
        else f"order {order.id} was cancelled and nothing stays charged"
    )
    _, cause = split_failure(record.failure_reason)
    raise Unavailable(f"{cause}; {outcome}; retry with a new idempotency_key")


def may_act_for(principal: Principal, customer_id: str) -> bool:
    return principal.subject == customer_id or ADMIN_ROLE in principal.roles


class OrderBook:
    def __init__(
        self, executor: SagaExecutor[OrderSagaState], reader: OrderReader, idempotency_wait_s: float
    ) -> None:
        self.executor = executor
        self.reader = reader
        self.idempotency_wait_s = idempotency_wait_s

    async def place(self, order: NewOrder, principal: Principal, correlation_id: str) -> OrderRow:
        """Start the saga, or answer a repeated request (same customer and key) as the first was.

        The idempotency check is the saga's first write (INSERT … ON CONFLICT DO NOTHING):
        a new order costs no read before it, and a repeat starts no saga.
        """
        if not may_act_for(principal, order.customer_id):
            raise PermissionDenied(f"you may only place orders for customer_id {principal.subject!r}")
        fingerprint = order.fingerprint()
        state = OrderSagaState(
            order_id=f"ord_{uuid.uuid4().hex}",
            saga_id=f"saga_{uuid.uuid4().hex}",
            customer_id=order.customer_id,
            currency=order.currency,
            total_minor=order.total_minor,
            items=[
                {"sku": i.sku, "quantity": i.quantity, "unit_price_minor": i.unit_price_minor}
                for i in order.items
            ],
            idempotency_key=order.idempotency_key,
            request_hash=fingerprint,
            correlation_id=correlation_id,
            created_at=now().isoformat(),
        )
        started = await self.executor.start(state.saga_id, state, correlation_id)
        if started is None:
            # The key was taken (possibly a moment ago, by a concurrent request): its order answers.
            existing = await self.reader.find_by_key(order.customer_id, order.idempotency_key)
            if existing is None:
                raise Unavailable("the order for this idempotency_key could not be read; retry")
            return await self._replay(existing, fingerprint)
        record, _ = started
        placed = order_after_saga(state, record)
        _raise_if_unavailable(placed, record)
        return placed

    async def _replay(self, existing: OrderRow, fingerprint: str) -> OrderRow:
        """The stored outcome: the same order, or the same error the first request got."""
        if existing.request_hash != fingerprint:
            raise AlreadyExists(
                f"idempotency_key {existing.idempotency_key!r} was already used for a different order "
                f"({existing.id}); use a new key for a new order"
            )
        # The first request may still be running its saga: wait (bounded) for its outcome.
        deadline = time.monotonic() + self.idempotency_wait_s
        current = existing
        while current.status == PENDING and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            current = await self.reader.get(existing.id) or current
        if current.status in (CANCELLED, FAILED):
            record = await self.executor.store.load(current.saga_id)
            if record is not None:
                _raise_if_unavailable(current, record)
        return current

    async def get(self, order_id: str, principal: Principal) -> OrderRow:
        order = await self.reader.get(order_id)
        # Someone else's order looks exactly like a missing one: no probing for ids.
        if order is None or not may_act_for(principal, order.customer_id):
            raise NotFound(f"order {order_id!r} not found")
        return order

    async def list(
        self, principal: Principal, status: str | None, page_size: int, page_token: str
    ) -> tuple[list[OrderRow], str]:
        customer = None if ADMIN_ROLE in principal.roles else principal.subject
        return await self.reader.page(customer, status, page_size, page_token)
