"""``sagascope.payments.v1.PaymentService``: validate, apply the rules, store; map to the proto.

Errors are raised as :mod:`sagascope.common.errors` and turned into statuses by
the server's error-mapping interceptor. A decline is a normal reply.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import grpc

from sagascope.api.payments.v1 import payments_pb2, payments_pb2_grpc
from sagascope.common import validation
from sagascope.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from sagascope.common.faults import Fault, FaultInjector
from sagascope.common.timestamps import to_timestamp
from sagascope.payment import domain
from sagascope.payment.domain import ChargeRequest, Payment, PaymentStatus
from sagascope.payment.store import PaymentStore

SERVICE_NAME: str = payments_pb2.DESCRIPTOR.services_by_name["PaymentService"].full_name

# Full gRPC method name -> the role a caller's token must carry.
METHOD_ROLES: dict[str, str] = {
    f"/{SERVICE_NAME}/ProcessPayment": "payments.write",
    f"/{SERVICE_NAME}/RefundPayment": "payments.write",
    f"/{SERVICE_NAME}/GetPayment": "payments.read",
}

_STATUS_TO_PROTO = {
    PaymentStatus.CHARGED: payments_pb2.PAYMENT_STATUS_CHARGED,
    PaymentStatus.DECLINED: payments_pb2.PAYMENT_STATUS_DECLINED,
    PaymentStatus.REFUNDED: payments_pb2.PAYMENT_STATUS_REFUNDED,
    PaymentStatus.VOIDED: payments_pb2.PAYMENT_STATUS_VOIDED,
}

# A refund races at most with one charge landing and one concurrent refund; three
# rounds is enough for every interleaving, and a bound keeps a bug from spinning.
_MAX_REFUND_ROUNDS = 3


def to_proto(payment: Payment) -> payments_pb2.Payment:
    return payments_pb2.Payment(
        id=payment.id,
        order_id=payment.order_id,
        amount_minor=payment.amount_minor,
        currency=payment.currency,
        status=_STATUS_TO_PROTO[payment.status],
        decline_reason=payment.decline_reason,
        refund_reason=payment.refund_reason,
        idempotency_key=payment.idempotency_key,
        created_at=to_timestamp(payment.created_at),
        updated_at=to_timestamp(payment.updated_at),
    )


def _utc_now() -> datetime:
    # BSON dates hold milliseconds: truncate, so the first reply equals every later read.
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class PaymentServicer(payments_pb2_grpc.PaymentServiceServicer):
    def __init__(
        self,
        store: PaymentStore,
        limit_major: int,
        faults: FaultInjector,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._store = store
        self._limit_major = limit_major
        self._faults = faults
        self._clock = clock

    async def ProcessPayment(
        self, request: payments_pb2.ProcessPaymentRequest, context: grpc.aio.ServicerContext
    ) -> payments_pb2.ProcessPaymentResponse:
        if self._faults.should(Fault.PAYMENT_LATENCY):
            await asyncio.sleep(self._faults.latency_seconds)
        charge = ChargeRequest(
            order_id=validation.require_id(request.order_id, "order_id"),
            amount_minor=validation.require_amount(request.amount_minor, "amount_minor"),
            currency=validation.require_currency(request.currency),
            idempotency_key=validation.require_id(request.idempotency_key, "idempotency_key"),
        )
        decision = domain.decide(charge, self._limit_major, fault_decline=self._faults.should(Fault.PAYMENT_DECLINE))
        # Insert first: a new charge costs one write. A repeat (or a concurrent duplicate) loses
        # on the unique index and gets the stored payment back, whatever this call decided.
        existing = await self._store.insert_or_get(domain.new_payment(charge, decision, self._clock()))
        _ensure_same_charge(charge, existing)
        return payments_pb2.ProcessPaymentResponse(payment=to_proto(existing))

    async def RefundPayment(
        self, request: payments_pb2.RefundPaymentRequest, context: grpc.aio.ServicerContext
    ) -> payments_pb2.RefundPaymentResponse:
        if bool(request.payment_id) == bool(request.charge_idempotency_key):
            raise InvalidArgument(
                "payment_id",
                "exactly one of payment_id and charge_idempotency_key is required"
                + (", not both" if request.payment_id else ""),
            )
        refund_key = validation.require_id(request.idempotency_key, "idempotency_key")
        if self._faults.should(Fault.REFUND_FAILURE):
            await context.abort(grpc.StatusCode.UNAVAILABLE, "refund unavailable (fault injection: refund_failure)")
        reason = validation.optional_text(request.reason, "reason")
        if request.payment_id:
            payment_id = validation.require_id(request.payment_id, "payment_id")
            refunded = await self._refund_by_id(payment_id, refund_key, reason)
        else:
            charge_key = validation.require_id(request.charge_idempotency_key, "charge_idempotency_key")
            refunded = await self._refund_by_charge_key(charge_key, refund_key, reason)
        return payments_pb2.RefundPaymentResponse(payment=to_proto(refunded))

    async def GetPayment(
        self, request: payments_pb2.GetPaymentRequest, context: grpc.aio.ServicerContext
    ) -> payments_pb2.GetPaymentResponse:
        payment_id = validation.require_id(request.payment_id, "payment_id")
        payment = await self._store.get(payment_id)
        if payment is None:
            raise NotFound(f"payment {payment_id} not found")
        return payments_pb2.GetPaymentResponse(payment=to_proto(payment))

    async def _refund_by_id(self, payment_id: str, refund_key: str, reason: str) -> Payment:
        for _ in range(_MAX_REFUND_ROUNDS):
            payment = await self._store.get(payment_id)
            if payment is None:
                raise NotFound(f"payment {payment_id} not found")
            if payment.status is PaymentStatus.DECLINED:
                raise FailedPrecondition(f"payment {payment_id} was declined; there is nothing to refund")
            result = await self._refund_found(payment, refund_key, reason)
            if result is not None:
                return result
        raise RuntimeError(f"refund of payment {payment_id} did not settle in {_MAX_REFUND_ROUNDS} rounds")

    async def _refund_by_charge_key(self, charge_key: str, refund_key: str, reason: str) -> Payment:
        for _ in range(_MAX_REFUND_ROUNDS):
            payment = await self._store.find_by_idempotency_key(charge_key)
            if payment is None:
                # Nothing was charged (yet): fence the key so a late charge answers VOIDED.
                tombstone = domain.void_tombstone(charge_key, refund_key, reason, self._clock())
                payment = await self._store.insert_or_get(tombstone)
                if payment.id == tombstone.id:
                    return payment
                # The charge landed between our read and our insert; refund it below.
            if payment.status is PaymentStatus.DECLINED:
                return payment  # nothing was charged: the compensation is already complete
            result = await self._refund_found(payment, refund_key, reason)
            if result is not None:
                return result
        raise RuntimeError(
            f"refund of charge key {charge_key!r} did not settle in {_MAX_REFUND_ROUNDS} rounds"
        )

    async def _refund_found(self, payment: Payment, refund_key: str, reason: str) -> Payment | None:
        """Refund a CHARGED payment; REFUNDED and VOIDED are already done. None: it changed, retry."""
        if payment.status in (PaymentStatus.REFUNDED, PaymentStatus.VOIDED):
            return payment
        if payment.status is not PaymentStatus.CHARGED:
            raise AssertionError(f"unexpected status {payment.status} for payment {payment.id}")
        return await self._store.mark_refunded(payment.id, reason, refund_key)


def _ensure_same_charge(charge: ChargeRequest, stored: Payment) -> None:
    if domain.conflicting_fields(charge, stored):
        raise AlreadyExists(
            f"idempotency_key {charge.idempotency_key!r} was already used for a different payment "
            "(order_id/amount/currency differ)"
        )
