"""A small typed client for the CLI and the demo: log in, place and read orders."""

from __future__ import annotations

import time
from dataclasses import dataclass

import grpc

from sagascope.api.identity.v1 import identity_pb2, identity_pb2_grpc
from sagascope.api.orders.v1 import orders_pb2, orders_pb2_grpc
from sagascope.common import correlation, faults
from sagascope.common.tls import CLIENT_PREFIX, TlsSettings, open_channel


@dataclass(frozen=True)
class OrderResult:
    order: orders_pb2.Order | None
    code: grpc.StatusCode
    message: str
    correlation_id: str
    elapsed_s: float

    @property
    def status_name(self) -> str:
        if self.order is None:
            return self.code.name
        return orders_pb2.OrderStatus.Name(self.order.status).removeprefix("ORDER_STATUS_")


async def login(identity_target: str, username: str, password: str) -> str:
    async with open_channel(identity_target, TlsSettings.from_env(CLIENT_PREFIX)) as channel:
        reply = await identity_pb2_grpc.IdentityServiceStub(channel).Login(
            identity_pb2.LoginRequest(username=username, password=password), timeout=10
        )
    return str(reply.access_token)


class OrderClient:
    def __init__(self, order_target: str, token: str) -> None:
        # round_robin: with several order replicas every one gets its share of the calls.
        self._channel = open_channel(
            order_target, TlsSettings.from_env(CLIENT_PREFIX), options=[("grpc.lb_policy_name", "round_robin")]
        )
        self._stub = orders_pb2_grpc.OrderServiceStub(self._channel)
        self._token = token

    async def close(self) -> None:
        await self._channel.close()

    def _metadata(self, inject: tuple[str, ...] = (), correlation_id: str = "") -> tuple[tuple[str, str], ...]:
        md: list[tuple[str, str]] = [("authorization", f"Bearer {self._token}")]
        if inject:
            md.append((faults.HEADER, ",".join(inject)))
        if correlation_id:
            md.append((correlation.HEADER, correlation_id))
        return tuple(md)

    async def create_order(
        self,
        request: orders_pb2.CreateOrderRequest,
        inject: tuple[str, ...] = (),
        timeout: float = 30.0,
        correlation_id: str = "",
    ) -> OrderResult:
        started = time.perf_counter()
        call = self._stub.CreateOrder(request, metadata=self._metadata(inject, correlation_id), timeout=timeout)
        try:
            reply = await call
            order, code, message = reply.order, grpc.StatusCode.OK, ""
        except grpc.aio.AioRpcError as exc:
            order, code, message = None, exc.code(), exc.details() or ""
        elapsed = time.perf_counter() - started
        header = dict(await call.initial_metadata() or ())
        cid = header.get(correlation.HEADER) or (order.correlation_id if order else "")
        return OrderResult(order, code, message, str(cid), elapsed)

    async def get_order(self, order_id: str) -> orders_pb2.Order:
        reply = await self._stub.GetOrder(
            orders_pb2.GetOrderRequest(order_id=order_id), metadata=self._metadata(), timeout=10
        )
        return reply.order


def order_request(
    customer_id: str,
    key: str,
    *,
    amount_minor: int = 4999,
    quantity: int = 1,
    sku: str = "SKU-DEMO-1",
    currency: str = "EUR",
) -> orders_pb2.CreateOrderRequest:
    return orders_pb2.CreateOrderRequest(
        customer_id=customer_id,
        currency=currency,
        idempotency_key=key,
        items=[orders_pb2.OrderItem(sku=sku, quantity=quantity, unit_price_minor=amount_minor)],
    )
