"""A backing store lost while a service runs is UNAVAILABLE (retryable with the same key), not
INTERNAL with a traceback — `make chaos` cut these links hundreds of times and saw INTERNAL."""

from __future__ import annotations

import logging
from pathlib import Path

import grpc
import pytest

from sagascope.api.payments.v1 import payments_pb2, payments_pb2_grpc
from sagascope.common.faults import FaultSettings
from sagascope.payment.server import PaymentApp
from sagascope.payment.settings import PaymentSettings
from tests.support.identity import running_identity
from tests.support.mongo import running_nx27017

SERVICE_ACCOUNT = ("order-service", "order-service-dev-secret")


async def test_payment_answers_unavailable_when_its_mongodb_is_gone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_identity(tmp_path / "identity") as identity:
        token = await identity.login(*SERVICE_ACCOUNT)
        metadata = (("authorization", f"Bearer {token}"),)
        async with running_nx27017(tmp_path / "mongo") as url:
            app = PaymentApp(
                PaymentSettings(
                    auth=identity.auth_settings,
                    host="127.0.0.1",
                    grpc_port=0,
                    mongo_url=url,
                    mongo_db="payments_outage",
                    mongo_connect_timeout_seconds=1,
                    faults=FaultSettings(),
                )
            )
            port = await app.start()
        # nx-27017 has stopped: the next write cannot reach it.
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = payments_pb2_grpc.PaymentServiceStub(channel)
                request = payments_pb2.ProcessPaymentRequest(
                    order_id="order-1", amount_minor=100, currency="EUR", idempotency_key="outage-1"
                )
                with caplog.at_level(logging.WARNING), pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stub.ProcessPayment(request, metadata=metadata, timeout=15)
        finally:
            await app.stop()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value.details()
    assert "retry with the same idempotency key" in (caught.value.details() or "")
    outage = [r for r in caplog.records if "backend unavailable" in r.getMessage()]
    assert outage and all(r.levelno == logging.WARNING and r.exc_info is None for r in outage)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and "unhandled error" in r.getMessage()]
