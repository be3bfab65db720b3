"""What `make chaos` found in the order service, reduced to one deterministic test each.

Finding 1 (seed 7, 2,000 sagas: 8 CANCELLED orders whose charge stayed CHARGED). The saga log says
the charge may have been sent (``step_started`` at the charge step): the orchestrator was SIGKILLed
after sending it, or its confirm transaction and the following save both failed on a broken
PostgreSQL connection. Recovery retries the charge with the same key; that attempt fails with
*nothing sent* (the payment breaker is open), and the executor takes that as "the charge had no
effect", so it compensates from ``reserve`` and never refunds the charge the earlier attempt made.
An attempt that follows a logged ``step_started`` must count as maybe-applied whatever the new
attempt's failure says, and compensate the step by its idempotency key (a refund-by-key of a charge
that never landed only fences the key, so this is always safe).

Fixed in sagascope/saga/executor.py (``resume`` passes the in-doubt step to ``_forward``);
this test keeps it fixed.
"""

from __future__ import annotations

from dataclasses import asdict

import grpc
import pytest

from sagascope.api.payments.v1 import payments_pb2
from sagascope.common import validation
from sagascope.common.faults import FaultInjector, FaultSettings
from sagascope.common.resilience import Downstream, DownstreamRejected, DownstreamUnavailable
from sagascope.order.payment_client import PaymentParticipant
from sagascope.saga.recovery import RecoveryWorker
from sagascope.saga.store import SagaRecord, SagaStatus
from tests.unit.test_saga_executor import (  # noqa: F401  (engine and sessions are fixtures)
    ScriptedPayments,
    State,
    _make_due,
    build,
    engine,
    insert_pending,
    ledger_status,
    sessions,
)


async def test_resumed_charge_that_may_have_landed_is_refunded_when_the_retry_is_not_sent(sessions):  # noqa: F811
    open_breaker = DownstreamUnavailable("payment", "circuit breaker open", grpc.StatusCode.UNAVAILABLE,
                                         maybe_applied=False)
    executor, payments, _, _ = build(sessions, ScriptedPayments(charge_replies=[open_breaker]))
    # What a SIGKILL right after sending the charge leaves: the log says the call may be out.
    record = SagaRecord(id="s20", name="TestSaga", status=SagaStatus.RUNNING, step_index=1,
                        state=asdict(State("o20")), correlation_id="c20", step_started=True)
    assert await executor.store.create(record, [insert_pending("o20")])
    await _make_due(sessions, "s20")

    assert await RecoveryWorker(executor, 0.1).run_once() == 1
    stored = await executor.store.load("s20")
    assert stored is not None and stored.status == SagaStatus.COMPENSATED
    assert await ledger_status(sessions, "o20") == "CANCELLED"
    # The earlier attempt may have charged: the compensation must refund by the charge's key.
    assert ("refund", "s20:charge:compensate", "by-key:s20:charge") in payments.calls


# Finding 2 (seed 7, 2,000 sagas, commit 6d981b0: 3 sagas FAILED forever, their charges kept). confirm
# failed on a broken PostgreSQL connection; SQLAlchemy's message, and so the saga's failure_reason,
# spans lines ("...\n[SQL: UPDATE orders ...]\n[parameters: ...]"). The refund carries that reason to
# payment, which refuses control characters (INVALID_ARGUMENT: reason: must not contain control
# characters); recovery retried the same refund with the same reason, forever. Fixed: the payment
# client sends validation.one_line(reason).


class _CapturingStub:
    def __init__(self) -> None:
        self.requests: list[payments_pb2.RefundPaymentRequest] = []

    async def RefundPayment(self, request, timeout=None, metadata=None):  # type: ignore[no-untyped-def]
        self.requests.append(request)
        return payments_pb2.RefundPaymentResponse(payment=payments_pb2.Payment(id=request.payment_id))


class _Tokens:
    async def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", "Bearer t"),)


async def test_refund_reason_sent_to_payment_passes_payments_own_validation() -> None:
    participant = PaymentParticipant.__new__(PaymentParticipant)
    stub = _CapturingStub()
    participant._stub = stub  # type: ignore[assignment]
    participant.downstream = Downstream("payment-service")
    participant._tokens = _Tokens()  # type: ignore[assignment]
    participant._faults = FaultInjector(FaultSettings())
    reason = ("confirm: unexpected DBAPIError: connection was closed in the middle of operation\n"
              "[SQL: UPDATE orders SET status=$1::VARCHAR WHERE orders.id = $5::VARCHAR]\n"
              "(Background on this error at: https://sqlalche.me/e/20/dbapi)")
    await participant.refund(payment_id="pay-1", charge_key="s:charge", key="s:charge:compensate", reason=reason)
    sent = stub.requests[0].reason
    validation.optional_text(sent, "reason")  # what payment applies


# Observation of the same campaign: payment answers INTERNAL when its MongoDB link breaks mid-write,
# and order took any non-retryable status as "not applied", so a charge that landed could be kept.
@pytest.mark.parametrize(
    ("code", "refunded"),
    [(grpc.StatusCode.INTERNAL, True), (grpc.StatusCode.UNKNOWN, True), (grpc.StatusCode.INVALID_ARGUMENT, False)],
)
async def test_a_participant_that_broke_is_compensated_by_key_one_that_refused_is_not(
    sessions, code: grpc.StatusCode, refunded: bool  # noqa: F811
) -> None:
    broke = DownstreamRejected("payment", code, "the call failed")
    executor, payments, _, _ = build(sessions, ScriptedPayments(charge_replies=[broke]))
    started = await executor.start("s30", State("o30"), "c30")
    assert started is not None and started[0].status == SagaStatus.COMPENSATED
    assert await ledger_status(sessions, "o30") == "CANCELLED"
    refunds = [call for call in payments.calls if call[0] == "refund"]
    assert refunds == ([("refund", "s30:charge:compensate", "by-key:s30:charge")] if refunded else [])


def test_backend_outages_are_told_from_bugs() -> None:
    import asyncpg
    from pymongo.errors import AutoReconnect
    from sqlalchemy.exc import DBAPIError

    from sagascope.common.outages import is_backend_outage

    def wrapped(cause: BaseException) -> DBAPIError:
        try:
            raise DBAPIError("UPDATE orders ...", {}, Exception("driver")) from cause
        except DBAPIError as exc:
            return exc

    assert is_backend_outage(asyncpg.exceptions.CannotConnectNowError("the database system is starting up"))
    assert is_backend_outage(wrapped(ConnectionResetError(104, "Connection reset by peer")))
    assert is_backend_outage(wrapped(asyncpg.exceptions.AdminShutdownError("terminating connection")))
    assert is_backend_outage(AutoReconnect("connection closed"))
    assert not is_backend_outage(wrapped(asyncpg.exceptions.UniqueViolationError("duplicate key")))
    assert not is_backend_outage(KeyError("payment_id"))
