"""identity + nx-27017 + payment + order, in-process on real sockets, for integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
from pymongo import AsyncMongoClient

from sagascope.api.orders.v1 import orders_pb2, orders_pb2_grpc
from sagascope.common.auth import AuthSettings
from sagascope.common.faults import FaultSettings
from sagascope.common.telemetry import init_telemetry
from sagascope.common.telemetry.settings import TelemetrySettings
from sagascope.identity.throttle import ThrottleSettings
from sagascope.local.supervisor import free_port
from sagascope.order.server import OrderApp
from sagascope.order.settings import OrderSettings
from sagascope.payment.server import PaymentApp
from sagascope.payment.settings import PaymentSettings
from tests.support.identity import DEMO_PASSWORDS, running_identity
from tests.support.mongo import running_nx27017

FAULTS_ON = FaultSettings(enabled=True, rates={}, latency_ms=3000)


@dataclass
class OrderStack:
    order: OrderApp
    payment: PaymentApp
    payment_settings: PaymentSettings
    mongo_url: str
    identity: Any
    channel: grpc.aio.Channel
    tokens: dict[str, str]

    @property
    def stub(self) -> orders_pb2_grpc.OrderServiceStub:
        return orders_pb2_grpc.OrderServiceStub(self.channel)

    def md(self, user: str = "alice", *faults: str, extra: tuple[tuple[str, str], ...] = ()) -> tuple:
        md = [("authorization", f"Bearer {self.tokens[user]}"), *extra]
        if faults:
            md.append(("x-sagascope-fault", ",".join(faults)))
        return tuple(md)

    async def payments_for(self, order_id: str) -> list[dict[str, Any]]:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(self.mongo_url)
        try:
            return (
                await client[self.payment_settings.mongo_db]["payments"]
                .find({"order_id": order_id})
                .to_list()
            )
        finally:
            await client.close()

    async def stop_payment(self) -> None:
        await self.payment.stop()

    async def start_payment(self) -> None:
        self.payment = PaymentApp(self.payment_settings)
        await self.payment.start()


def request(
    key: str, customer: str = "alice", amount: int = 4999, quantity: int = 1, currency: str = "EUR"
) -> orders_pb2.CreateOrderRequest:
    return orders_pb2.CreateOrderRequest(
        customer_id=customer,
        currency=currency,
        idempotency_key=key,
        items=[orders_pb2.OrderItem(sku="SKU-1", quantity=quantity, unit_price_minor=amount)],
    )


@asynccontextmanager
async def running_order_stack(
    tmp_path: Path, database_url: str, identity_throttle: ThrottleSettings | None = None, **order_overrides: Any
) -> AsyncIterator[OrderStack]:
    async with (
        running_identity(tmp_path / "identity", throttle=identity_throttle) as identity,
        running_nx27017(tmp_path / "mongo") as mongo,
    ):
        auth: AuthSettings = identity.auth_settings
        payment_settings = PaymentSettings(
            auth=auth, grpc_port=free_port(), metrics_port=0, mongo_url=mongo, faults=FAULTS_ON
        )
        payment = PaymentApp(payment_settings)
        await payment.start()
        settings = OrderSettings(
            host="127.0.0.1",
            grpc_port=0,
            metrics_port=0,
            database_url=database_url,
            migrate=True,
            pool_size=10,
            payment_target=f"127.0.0.1:{payment_settings.grpc_port}",
            identity_target=identity.grpc_target,
            service_username="order-service",
            service_password=DEMO_PASSWORDS["order-service"],
            payment_timeout_s=1.0,
            payment_max_attempts=3,
            breaker_fail_max=5,
            breaker_reset_s=2.0,
            lease_seconds=2.0,
            recovery_interval_s=0.3,
            idempotency_wait_s=10.0,
            instance_id="test-order",
            auth=auth,
            faults=FAULTS_ON,
        )
        settings = replace(settings, **order_overrides)
        order = OrderApp(settings, init_telemetry("order-service", settings=TelemetrySettings(enabled=False)))
        port = await order.start()
        users = ("alice", "bob", "viewer", "admin", "operator")
        tokens = {u: await identity.login(u, DEMO_PASSWORDS[u]) for u in users}
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        stack = OrderStack(order, payment, payment_settings, mongo, identity, channel, tokens)
        try:
            yield stack
        finally:
            await channel.close()
            await stack.order.stop()
            await stack.payment.stop()
