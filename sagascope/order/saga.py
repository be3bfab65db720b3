"""The CreateOrder saga, declared as data. Reads top to bottom:

    reserve  (local)  order row PENDING              compensation: cancel the order
    charge   (remote) payment.ProcessPayment          compensation: payment.RefundPayment
    confirm  (local)  order COMPLETED (can fail)

Each function below is business logic only: a local step returns the rows it
wants written and the executor in sagascope/saga writes them with the saga
log (one round trip on PostgreSQL), runs the calls, compensates and reports.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import grpc

from sagascope.api.payments.v1 import payments_pb2
from sagascope.common.faults import Fault, FaultInjector
from sagascope.common.money import format_money
from sagascope.common.resilience import DownstreamRejected
from sagascope.order import repository
from sagascope.order.payment_client import PaymentParticipant
from sagascope.order.repository import Item, OrderRow
from sagascope.saga.definition import (
    CallContext,
    LocalStep,
    RemoteStep,
    SagaDefinition,
    StepFailed,
    Writes,
)

SAGA_NAME = "CreateOrder"

PENDING, COMPLETED, CANCELLED, FAILED = "PENDING", "COMPLETED", "CANCELLED", "FAILED"


@dataclass
class OrderSagaState:
    order_id: str
    saga_id: str
    customer_id: str
    currency: str
    total_minor: int
    items: list[dict[str, Any]]
    idempotency_key: str
    request_hash: str
    correlation_id: str
    payment_id: str = ""
    notes: list[str] = field(default_factory=list)
    # ISO 8601 UTC, the order row's created_at ("" in sagas logged before this field existed).
    created_at: str = ""


def encode(state: OrderSagaState) -> dict[str, Any]:
    # What asdict() gives, without its deep recursion (it ran three times a saga: ~2 % of the
    # order process's CPU): the fields are strings and numbers, two lists and the item dicts.
    data = dict(vars(state))
    data["items"] = [dict(item) for item in state.items]
    data["notes"] = list(state.notes)
    return data


def decode(data: dict[str, Any]) -> OrderSagaState:
    return OrderSagaState(**data)


def describe(state: OrderSagaState) -> dict[str, str]:
    ids = {"order.id": state.order_id}
    if state.payment_id:
        ids["payment.id"] = state.payment_id
    return ids


class OrderSagaSteps:
    """The step functions, bound to the participant proxy and the fault flags."""

    def __init__(self, payments: PaymentParticipant, faults: FaultInjector) -> None:
        self.payments = payments
        self.faults = faults

    async def reserve(self, state: OrderSagaState) -> Writes:
        stamp = datetime.fromisoformat(state.created_at) if state.created_at else repository.now()
        return repository.insert_order(
            OrderRow(
                id=state.order_id,
                customer_id=state.customer_id,
                currency=state.currency,
                total_minor=state.total_minor,
                status=PENDING,
                payment_id="",
                failure_reason="",
                correlation_id=state.correlation_id,
                idempotency_key=state.idempotency_key,
                request_hash=state.request_hash,
                saga_id=state.saga_id,
                created_at=stamp,
                updated_at=stamp,
                items=tuple(Item(**item) for item in state.items),
            ),
        )

    async def cancel(self, state: OrderSagaState, reason: str) -> Writes:
        return [repository.set_status(state.order_id, CANCELLED, payment_id=state.payment_id, failure_reason=reason)]

    async def charge(self, state: OrderSagaState, call: CallContext) -> None:
        payment = await self.payments.charge(
            state.order_id, state.total_minor, state.currency, call.idempotency_key
        )
        if payment.status == payments_pb2.PAYMENT_STATUS_DECLINED:
            raise StepFailed(f"payment declined: {payment.decline_reason}")
        if payment.status != payments_pb2.PAYMENT_STATUS_CHARGED:
            raise StepFailed(f"payment {payment.id} is {payments_pb2.PaymentStatus.Name(payment.status)}")
        state.payment_id = payment.id

    async def refund(self, state: OrderSagaState, call: CallContext) -> None:
        try:
            payment = await self.payments.refund(
                payment_id=state.payment_id,
                charge_key=call.action_key,
                key=call.idempotency_key,
                reason=call.reason,
            )
        except DownstreamRejected as exc:
            # Declined means nothing was taken: there is nothing to give back.
            if exc.code == grpc.StatusCode.FAILED_PRECONDITION and "declined" in exc.details:
                return
            raise
        if payment.id and not state.payment_id:
            state.payment_id = payment.id
        state.notes.append(
            f"payment {payment.id} {payments_pb2.PaymentStatus.Name(payment.status)} "
            f"({format_money(payment.amount_minor, payment.currency or state.currency)})"
        )

    async def confirm(self, state: OrderSagaState) -> Writes:
        if self.faults.should(Fault.CONFIRM_LATENCY):
            await asyncio.sleep(self.faults.latency_seconds)
        if self.faults.should(Fault.CONFIRM_FAILURE):
            raise StepFailed("confirm failed: injected fault confirm_failure")
        return [repository.set_status(state.order_id, COMPLETED, payment_id=state.payment_id)]

    async def mark_failed(self, state: OrderSagaState, reason: str) -> Writes:
        return [repository.set_status(state.order_id, FAILED, payment_id=state.payment_id, failure_reason=reason)]

    async def resolved_by_hand(self, state: OrderSagaState, reason: str) -> Writes:
        """An operator resolved the saga (the refund was made outside the system): the order ends
        CANCELLED, saying so."""
        return [
            repository.set_status(state.order_id, CANCELLED, payment_id=state.payment_id, failure_reason=reason)
        ]


def order_id_of(state: OrderSagaState) -> str:
    return state.order_id


def create_order_saga(steps: OrderSagaSteps) -> SagaDefinition[OrderSagaState]:
    return SagaDefinition(
        name=SAGA_NAME,
        steps=[
            LocalStep("reserve", steps.reserve, compensation=steps.cancel),
            RemoteStep("charge", steps.charge, compensation=steps.refund),
            LocalStep("confirm", steps.confirm),
        ],
        encode=encode,
        decode=decode,
        describe=describe,
        on_stuck=steps.mark_failed,
        on_resolved=steps.resolved_by_hand,
        reference=order_id_of,
    )
