"""Payment rules, free of gRPC and storage: decide, describe, compare.

A charge above the limit is DECLINED — a business answer recorded like any
other, never an error. The limit is a whole number of major units ("1000.00 in
the currency"), so it means 1000.00 EUR, 1000 JPY or 1000.000 KWD depending on
the currency's exponent.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sagascope.common.money import format_money, major_to_minor

FAULT_DECLINE_REASON = "declined by fault injection"


class PaymentStatus(StrEnum):
    CHARGED = "CHARGED"
    DECLINED = "DECLINED"
    REFUNDED = "REFUNDED"
    # The charge key was fenced by a refund-by-key that found no charge: nothing was
    # charged, and a late ProcessPayment with that key must never charge.
    VOIDED = "VOIDED"


@dataclass(frozen=True)
class ChargeRequest:
    """A validated ProcessPayment body."""

    order_id: str
    amount_minor: int
    currency: str
    idempotency_key: str


@dataclass(frozen=True)
class Decision:
    status: PaymentStatus
    decline_reason: str = ""


@dataclass(frozen=True)
class Payment:
    """One payment document. Flat on purpose: it is stored as-is, one field a key."""

    id: str
    order_id: str
    amount_minor: int
    currency: str
    status: PaymentStatus
    idempotency_key: str
    created_at: datetime
    updated_at: datetime
    decline_reason: str = ""
    refund_reason: str = ""
    refund_idempotency_key: str = ""

    @property
    def is_void_tombstone(self) -> bool:
        """A fence written by refund-by-key; it carries no charge body of its own."""
        return self.status is PaymentStatus.VOIDED and not self.order_id


def new_payment_id() -> str:
    return uuid.uuid4().hex


def limit_minor(limit_major: int, currency: str) -> int:
    """The limit in ``currency``'s minor units: 1000 -> 100000 for EUR, 1000 for JPY."""
    return major_to_minor(limit_major, currency)


def decide(request: ChargeRequest, limit_major: int, *, fault_decline: bool = False) -> Decision:
    """CHARGED, or DECLINED with a reason a person can read. A charge of exactly the limit passes."""
    if fault_decline:
        return Decision(PaymentStatus.DECLINED, FAULT_DECLINE_REASON)
    limit = limit_minor(limit_major, request.currency)
    if request.amount_minor > limit:
        return Decision(
            PaymentStatus.DECLINED,
            f"amount {format_money(request.amount_minor, request.currency)} exceeds the limit of "
            f"{format_money(limit, request.currency)}",
        )
    return Decision(PaymentStatus.CHARGED)


def new_payment(request: ChargeRequest, decision: Decision, now: datetime) -> Payment:
    return Payment(
        id=new_payment_id(),
        order_id=request.order_id,
        amount_minor=request.amount_minor,
        currency=request.currency,
        status=decision.status,
        idempotency_key=request.idempotency_key,
        created_at=now,
        updated_at=now,
        decline_reason=decision.decline_reason,
    )


def void_tombstone(
    charge_idempotency_key: str, refund_idempotency_key: str, reason: str, now: datetime
) -> Payment:
    """The fence for a charge key that has no payment: VOIDED, with no order or amount."""
    return Payment(
        id=new_payment_id(),
        order_id="",
        amount_minor=0,
        currency="",
        status=PaymentStatus.VOIDED,
        idempotency_key=charge_idempotency_key,
        created_at=now,
        updated_at=now,
        refund_reason=reason,
        refund_idempotency_key=refund_idempotency_key,
    )


def conflicting_fields(request: ChargeRequest, stored: Payment) -> list[str]:
    """Body fields of a repeated ProcessPayment that differ from the stored payment.

    Empty means "the same request again": the stored payment is the answer,
    whatever its status. A VOIDED tombstone matches any body — it exists
    precisely to answer the late charge that carries its key.
    """
    if stored.is_void_tombstone:
        return []
    differing = []
    if request.order_id != stored.order_id:
        differing.append("order_id")
    if request.amount_minor != stored.amount_minor:
        differing.append("amount_minor")
    if request.currency != stored.currency:
        differing.append("currency")
    return differing
