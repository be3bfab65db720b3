"""Consumer contract: order-service -> payment-service, written to pacts/order-service-payment-service.json.

Each test declares one gRPC call the order saga makes (a V4 synchronous message,
see grpc_pact.py), then runs the saga's real step code — OrderSagaSteps.charge /
.refund through the real PaymentParticipant, Downstream and gRPC channel — against
a stub server answering from that interaction, and checks what the saga makes of
the reply. The response side lists only the fields the order service reads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
from pact import Pact, match

from sagascope.api.payments.v1 import payments_pb2 as pb
from sagascope.common.faults import FaultInjector, FaultSettings
from sagascope.common.resilience import BreakerPolicy, Downstream, DownstreamRejected, RetryPolicy
from sagascope.order.payment_client import PaymentParticipant
from sagascope.order.saga import OrderSagaState, OrderSagaSteps, create_order_saga
from sagascope.saga.definition import CallContext, StepFailed
from tests.contract.grpc_pact import PACT_DIR, PactGrpcStub, grpc_interaction

PROCESS = "/sagascope.payments.v1.PaymentService/ProcessPayment"
REFUND = "/sagascope.payments.v1.PaymentService/RefundPayment"
SAGA_ID = "saga-contract-0001"
ORDER_ID = "order-contract-0001"
PAYMENT_ID = "5f0c3a1e9b7d4c2a8e6f1b3d5a7c9e01"
UNKNOWN_PAYMENT_ID = "00000000000000000000000000000000"
CHARGE, REFUND_STEP = 1, 1  # step index of "charge" (its compensation is the refund)
PAYMENT_ID_LIKE = match.regex(PAYMENT_ID, regex=r"^[0-9a-f]{32}$")


class StaticToken:
    """The participant's token source; the token is transport, not part of the contract."""

    async def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", "Bearer contract-test"),)


@pytest.fixture(scope="module")
def pact() -> Iterator[Pact]:
    pact = Pact("order-service", "payment-service").with_specification("V4")
    yield pact
    pact.write_file(PACT_DIR, overwrite=True)


@pytest.fixture
def saga() -> OrderSagaState:
    return OrderSagaState(
        order_id=ORDER_ID, saga_id=SAGA_ID, customer_id="alice", currency="EUR", total_minor=4999,
        items=[{"sku": "SKU-DEMO-1", "quantity": 1, "unit_price_minor": 4999}],
        idempotency_key="order-key-1", request_hash="h", correlation_id="corr-1",
    )


def _steps_for(target: str) -> tuple[OrderSagaSteps, grpc.aio.Channel]:
    channel = grpc.aio.insecure_channel(target)
    participant = PaymentParticipant(
        channel,
        Downstream("payment-service", RetryPolicy(attempt_timeout_s=5, max_attempts=1), BreakerPolicy()),
        StaticToken(),  # type: ignore[arg-type]
        FaultInjector(FaultSettings()),
    )
    return OrderSagaSteps(participant, FaultInjector(FaultSettings())), channel


@pytest.fixture
async def run_against() -> AsyncIterator[object]:
    """``async with run_against(pact, description) as (steps, stub)``: the saga steps wired to a stub."""
    import contextlib

    @contextlib.asynccontextmanager
    async def start(pact: Pact, description: str) -> AsyncIterator[tuple[OrderSagaSteps, PactGrpcStub]]:
        async with PactGrpcStub(pact, only=description) as stub:
            steps, channel = _steps_for(stub.target)
            try:
                yield steps, stub
            finally:
                await channel.close()
        stub.assert_all_called()

    yield start


def _keys() -> tuple[str, str]:
    """The idempotency keys the executor derives for the charge and its refund (the real derivation)."""
    definition = create_order_saga(OrderSagaSteps(None, FaultInjector(FaultSettings())))  # type: ignore[arg-type]
    return definition.action_key(SAGA_ID, CHARGE), definition.compensation_key(SAGA_ID, REFUND_STEP)


async def test_charge_succeeds(pact: Pact, run_against, saga: OrderSagaState) -> None:  # type: ignore[no-untyped-def]
    description = "ProcessPayment for an order within the limit"
    charge_key, _ = _keys()
    grpc_interaction(
        pact, description, method=PROCESS,
        request=pb.ProcessPaymentRequest(order_id=ORDER_ID, amount_minor=4999, currency="EUR",
                                         idempotency_key=charge_key),
        response={"payment": {
            "id": PAYMENT_ID_LIKE, "orderId": ORDER_ID, "amountMinor": "4999", "currency": "EUR",
            "status": "PAYMENT_STATUS_CHARGED", "idempotencyKey": charge_key,
        }},
        states=[("no payment exists for the idempotency key", {"idempotency_key": charge_key})],
    )
    async with run_against(pact, description) as (steps, _):
        await steps.charge(saga, CallContext(SAGA_ID, charge_key, charge_key))
    assert saga.payment_id == PAYMENT_ID


async def test_charge_declined(pact: Pact, run_against, saga: OrderSagaState) -> None:  # type: ignore[no-untyped-def]
    description = "ProcessPayment for an order above the payment limit"
    charge_key, _ = _keys()
    saga.total_minor = 250_000_00  # 250,000.00 EUR, above the default 1000 EUR limit
    grpc_interaction(
        pact, description, method=PROCESS,
        request=pb.ProcessPaymentRequest(order_id=ORDER_ID, amount_minor=250_000_00, currency="EUR",
                                         idempotency_key=charge_key),
        response={"payment": {
            "id": PAYMENT_ID_LIKE, "orderId": ORDER_ID, "amountMinor": "25000000", "currency": "EUR",
            "status": "PAYMENT_STATUS_DECLINED",
            "declineReason": match.regex("amount 250000.00 EUR exceeds the limit of 1000.00 EUR",
                                         regex=r"^amount .+ exceeds the limit of .+$"),
        }},
        states=[
            ("no payment exists for the idempotency key", {"idempotency_key": charge_key}),
            ("the payment limit is 1000 in major units", {}),
        ],
    )
    async with run_against(pact, description) as (steps, _):
        with pytest.raises(StepFailed, match="payment declined: amount"):
            await steps.charge(saga, CallContext(SAGA_ID, charge_key, charge_key))
    assert saga.payment_id == ""


async def test_refund_charged_payment(pact: Pact, run_against, saga: OrderSagaState) -> None:  # type: ignore[no-untyped-def]
    description = "RefundPayment of a charged payment"
    charge_key, refund_key = _keys()
    reason = "confirm failed: injected fault confirm_failure"
    saga.payment_id = PAYMENT_ID
    grpc_interaction(
        pact, description, method=REFUND,
        request=pb.RefundPaymentRequest(payment_id=PAYMENT_ID, idempotency_key=refund_key, reason=reason),
        response={"payment": {
            "id": PAYMENT_ID, "amountMinor": "4999", "currency": "EUR", "status": "PAYMENT_STATUS_REFUNDED",
        }},
        states=[("a charged payment exists", {
            "payment_id": PAYMENT_ID, "order_id": ORDER_ID, "amount_minor": 4999, "currency": "EUR",
            "idempotency_key": charge_key,
        })],
    )
    async with run_against(pact, description) as (steps, _):
        await steps.refund(saga, CallContext(SAGA_ID, refund_key, charge_key, reason))
    assert saga.notes == [f"payment {PAYMENT_ID} PAYMENT_STATUS_REFUNDED (49.99 EUR)"]


async def test_refund_unknown_payment(pact: Pact, run_against, saga: OrderSagaState) -> None:  # type: ignore[no-untyped-def]
    description = "RefundPayment of a payment that does not exist"
    charge_key, refund_key = _keys()
    saga.payment_id = UNKNOWN_PAYMENT_ID
    grpc_interaction(
        pact, description, method=REFUND,
        request=pb.RefundPaymentRequest(payment_id=UNKNOWN_PAYMENT_ID, idempotency_key=refund_key,
                                        reason="confirm failed"),
        status=grpc.StatusCode.NOT_FOUND,
        states=[("no payment exists with the id", {"payment_id": UNKNOWN_PAYMENT_ID})],
    )
    async with run_against(pact, description) as (steps, _):
        with pytest.raises(DownstreamRejected) as caught:
            await steps.refund(saga, CallContext(SAGA_ID, refund_key, charge_key, "confirm failed"))
    # NOT_FOUND is not retryable and not "declined": the compensation fails and recovery takes the saga.
    assert caught.value.code == grpc.StatusCode.NOT_FOUND
