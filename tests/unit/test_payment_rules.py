"""The payment rules: the limit by currency exponent, the decline reason, idempotency comparison."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sagascope.payment import domain
from sagascope.payment.domain import ChargeRequest, Decision, PaymentStatus

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def charge(
    amount_minor: int = 1000, currency: str = "EUR", order_id: str = "o-1", key: str = "k-1"
) -> ChargeRequest:
    return ChargeRequest(order_id=order_id, amount_minor=amount_minor, currency=currency, idempotency_key=key)


@pytest.mark.parametrize(
    ("currency", "expected"),
    [("EUR", 100_000), ("USD", 100_000), ("JPY", 1_000), ("KRW", 1_000), ("KWD", 1_000_000)],
)
def test_limit_follows_the_currency_exponent(currency: str, expected: int) -> None:
    assert domain.limit_minor(1000, currency) == expected


@pytest.mark.parametrize(
    ("amount_minor", "currency", "status"),
    [
        (100_000, "EUR", PaymentStatus.CHARGED),  # exactly the limit passes
        (100_001, "EUR", PaymentStatus.DECLINED),
        (1_000, "JPY", PaymentStatus.CHARGED),
        (1_001, "JPY", PaymentStatus.DECLINED),
        (1_000_000, "KWD", PaymentStatus.CHARGED),
        (1_000_001, "KWD", PaymentStatus.DECLINED),
    ],
)
def test_decide_at_and_above_the_limit(amount_minor: int, currency: str, status: PaymentStatus) -> None:
    assert domain.decide(charge(amount_minor, currency), limit_major=1000).status is status


def test_decline_reason_reads_in_major_units() -> None:
    decision = domain.decide(charge(150_000, "EUR"), limit_major=1000)
    assert decision == Decision(PaymentStatus.DECLINED, "amount 1500.00 EUR exceeds the limit of 1000.00 EUR")


def test_decline_reason_for_a_zero_exponent_currency() -> None:
    decision = domain.decide(charge(1500, "JPY"), limit_major=1000)
    assert decision.decline_reason == "amount 1500 JPY exceeds the limit of 1000 JPY"


def test_charged_has_no_reason() -> None:
    assert domain.decide(charge(500), limit_major=1000) == Decision(PaymentStatus.CHARGED, "")


def test_the_limit_is_configurable() -> None:
    assert domain.decide(charge(20_000, "EUR"), limit_major=100).status is PaymentStatus.DECLINED
    assert domain.decide(charge(20_000, "EUR"), limit_major=200).status is PaymentStatus.CHARGED


def test_fault_decline_overrides_the_rules() -> None:
    decision = domain.decide(charge(1), limit_major=1000, fault_decline=True)
    assert decision == Decision(PaymentStatus.DECLINED, "declined by fault injection")


def test_new_payment_carries_the_request_and_decision() -> None:
    payment = domain.new_payment(charge(150_000), domain.decide(charge(150_000), 1000), NOW)
    assert (payment.order_id, payment.amount_minor, payment.currency, payment.idempotency_key) == (
        "o-1",
        150_000,
        "EUR",
        "k-1",
    )
    assert payment.status is PaymentStatus.DECLINED
    assert payment.created_at == payment.updated_at == NOW
    assert len(payment.id) == 32 and int(payment.id, 16) >= 0  # uuid4 hex


def test_payment_ids_are_unique() -> None:
    ids = {domain.new_payment(charge(), Decision(PaymentStatus.CHARGED), NOW).id for _ in range(100)}
    assert len(ids) == 100


def test_same_body_does_not_conflict() -> None:
    stored = domain.new_payment(charge(), Decision(PaymentStatus.CHARGED), NOW)
    assert domain.conflicting_fields(charge(), stored) == []


@pytest.mark.parametrize(
    ("request_", "fields"),
    [
        (charge(order_id="o-2"), ["order_id"]),
        (charge(amount_minor=1001), ["amount_minor"]),
        (charge(currency="USD"), ["currency"]),
        (charge(amount_minor=5, currency="JPY", order_id="o-9"), ["order_id", "amount_minor", "currency"]),
    ],
)
def test_different_body_conflicts_naming_the_fields(request_: ChargeRequest, fields: list[str]) -> None:
    stored = domain.new_payment(charge(), Decision(PaymentStatus.CHARGED), NOW)
    assert domain.conflicting_fields(request_, stored) == fields


def test_a_declined_payment_is_compared_like_any_other() -> None:
    stored = domain.new_payment(charge(150_000), domain.decide(charge(150_000), 1000), NOW)
    assert domain.conflicting_fields(charge(150_000), stored) == []
    assert domain.conflicting_fields(charge(1_000), stored) == ["amount_minor"]


def test_void_tombstone_answers_any_late_charge_with_its_key() -> None:
    tombstone = domain.void_tombstone("k-1", "refund-1", "order cancelled", NOW)
    assert tombstone.status is PaymentStatus.VOIDED
    assert tombstone.is_void_tombstone
    assert (tombstone.idempotency_key, tombstone.refund_idempotency_key) == ("k-1", "refund-1")
    assert domain.conflicting_fields(charge(123, "JPY", "o-7"), tombstone) == []
