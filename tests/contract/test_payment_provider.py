"""Provider verification: the real payment service honours pacts/order-service-payment-service.json.

The service runs as it does in production — PaymentApp with its auth, fault
and telemetry-free interceptor chain — on a real nx-27017, with tokens from a
real identity service. Provider states are written into that storage through
the service's own PaymentStore; each interaction's request goes to the service
over a real gRPC socket (grpc_pact.provider_message_handler).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from pact import Verifier

from sagascope.payment.domain import Payment, PaymentStatus
from sagascope.payment.server import PaymentApp
from sagascope.payment.settings import PaymentSettings
from tests.contract.grpc_pact import PACT_DIR, BackgroundLoop, provider_message_handler, verify_all
from tests.support.identity import DEMO_PASSWORDS, running_identity
from tests.support.mongo import running_nx27017

PACT_FILE = PACT_DIR / "order-service-payment-service.json"


@dataclass
class PaymentProvider:
    loop: BackgroundLoop
    app: PaymentApp
    channel: grpc.aio.Channel
    token: str
    states_seen: list[str]


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PaymentProvider]:
    tmp: Path = tmp_path_factory.mktemp("payment-provider")
    loop = BackgroundLoop()
    stack = AsyncExitStack()

    async def start() -> PaymentProvider:
        identity = await stack.enter_async_context(running_identity(tmp / "identity"))
        mongo_url = await stack.enter_async_context(running_nx27017(tmp / "mongo"))
        app = PaymentApp(PaymentSettings(
            auth=identity.auth_settings, host="127.0.0.1", grpc_port=0, mongo_url=mongo_url,
            mongo_db="payments_contract", mongo_connect_timeout_seconds=15, limit_major=1000,
        ))
        port = await app.start()
        stack.push_async_callback(app.stop)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        stack.push_async_callback(channel.close)
        token = await identity.login("order-service", DEMO_PASSWORDS["order-service"])
        return PaymentProvider(loop, app, channel, token, [])

    try:
        yield loop.run(start(), timeout=90)
    finally:
        loop.run(stack.aclose(), timeout=60)
        loop.close()


def _state_handler(provider: PaymentProvider):  # type: ignore[no-untyped-def]
    collection = provider.app.store._collection  # the service's own collection in nx-27017

    async def setup(state: str, params: dict[str, Any]) -> None:
        if state == "no payment exists for the idempotency key":
            await collection.delete_many({"idempotency_key": params["idempotency_key"]})
            assert await provider.app.store.find_by_idempotency_key(params["idempotency_key"]) is None
        elif state == "the payment limit is 1000 in major units":
            assert provider.app.settings.limit_major == 1000
        elif state == "a charged payment exists":
            await collection.delete_many({"$or": [{"_id": params["payment_id"]},
                                                  {"idempotency_key": params["idempotency_key"]}]})
            now = datetime.now(UTC).replace(microsecond=0)
            stored = await provider.app.store.insert_or_get(Payment(
                id=params["payment_id"], order_id=params["order_id"], amount_minor=int(params["amount_minor"]),
                currency=params["currency"], status=PaymentStatus.CHARGED,
                idempotency_key=params["idempotency_key"], created_at=now, updated_at=now,
            ))
            assert stored.id == params["payment_id"]
        elif state == "no payment exists with the id":
            await collection.delete_many({"_id": params["payment_id"]})
            assert await provider.app.store.get(params["payment_id"]) is None
        else:
            raise LookupError(f"unknown provider state {state!r}")

    def handler(state: str, action: str, parameters: dict[str, Any] | None) -> None:
        if action == "setup":
            provider.states_seen.append(state)
            provider.loop.run(setup(state, parameters or {}))

    return handler


def test_payment_service_honours_the_order_service_pact(provider: PaymentProvider) -> None:
    assert PACT_FILE.exists(), f"{PACT_FILE} is missing: run the consumer tests (tests/contract) first"
    verifier = (
        Verifier("payment-service", host="127.0.0.1")
        .message_handler(provider_message_handler(
            provider.loop, lambda: provider.channel, lambda: (("authorization", f"Bearer {provider.token}"),)
        ))
        .state_handler(_state_handler(provider), teardown=False)
        .add_source(PACT_FILE)
    )
    # Every interaction was verified, and its states were set up through the real store.
    verify_all(verifier, PACT_FILE)
    assert "a charged payment exists" in provider.states_seen
    assert "no payment exists with the id" in provider.states_seen
