"""Defect 5: reflection v1 and v1alpha, method symbols resolvable — checked with the real grpcurl
(``list``, ``describe`` of a method, a call) against identity, payment and order."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2

from tests.support.grpcurl import grpcurl_binary, run_grpcurl
from tests.support.order_stack import OrderStack, running_order_stack


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[OrderStack]:
    grpcurl_binary()  # skip (or fail in CI) before starting anything
    async with running_order_stack(tmp_path, f"sqlite:///{tmp_path / 'orders.db'}") as running:
        yield running


async def _grpcurl(*args: str) -> str:
    result = await asyncio.to_thread(run_grpcurl, "-plaintext", *args)
    assert result.returncode == 0, f"grpcurl {' '.join(args)}: {result.stderr}"
    return result.stdout


async def test_grpcurl_lists_describes_methods_and_calls_every_service(stack: OrderStack) -> None:
    order = f"127.0.0.1:{stack.order.port}"
    payment = f"127.0.0.1:{stack.payment_settings.grpc_port}"
    identity = stack.identity.grpc_target
    services = {
        identity: ("sagascope.identity.v1.IdentityService", "Login"),
        payment: ("sagascope.payments.v1.PaymentService", "ProcessPayment"),
        order: ("sagascope.orders.v1.OrderService", "CreateOrder"),
    }
    for target, (service, method) in services.items():
        listed = (await _grpcurl(target, "list")).split()
        assert {service, "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection"} <= set(listed)  # fmt: skip
        assert method in await _grpcurl(target, "list", service)
        described = await _grpcurl(target, "describe", f"{service}.{method}")
        assert f"{service}.{method} is a method" in described and f"rpc {method} (" in described
    # The order service serves the saga admin API too.
    admin_methods = (await _grpcurl(order, "list", "sagascope.admin.v1.SagaAdminService")).split()
    assert {f"sagascope.admin.v1.SagaAdminService.{m}" for m in (
        "ListSagas", "GetSaga", "RetrySaga", "PauseSaga", "ResumeSaga", "ResolveSaga", "RetrySagas", "ResumeSagas"
    )} == set(admin_methods)  # fmt: skip

    credentials = '{"username": "alice", "password": "alice-dev-password"}'
    login = json.loads(await _grpcurl("-d", credentials, identity, "sagascope.identity.v1.IdentityService/Login"))
    bearer = f"authorization: Bearer {login['access_token']}"
    order_json = (
        '{"customerId": "alice", "currency": "EUR", "idempotencyKey": "grpcurl-1",'
        ' "items": [{"sku": "SKU-1", "quantity": 1, "unitPriceMinor": "1200"}]}'
    )
    created = json.loads(
        await _grpcurl("-H", bearer, "-d", order_json, order, "sagascope.orders.v1.OrderService/CreateOrder")
    )
    assert created["order"]["customer_id"] == "alice" and created["order"]["id"]
    service_login = '{"username": "order-service", "password": "order-service-dev-secret"}'
    service = json.loads(await _grpcurl("-d", service_login, identity, "sagascope.identity.v1.IdentityService/Login"))
    result = await asyncio.to_thread(
        run_grpcurl, "-plaintext", "-H", f"authorization: Bearer {service['access_token']}",
        "-d", '{"paymentId": "no-such-payment"}', payment, "sagascope.payments.v1.PaymentService/GetPayment",
    )  # fmt: skip
    assert "Code: NotFound" in result.stderr, result.stderr
    health = json.loads(await _grpcurl(payment, "grpc.health.v1.Health/Check"))
    assert health["status"] == "SERVING"


async def test_reflection_v1_answers_with_the_same_protocol(stack: OrderStack) -> None:
    """A v1 client (v1alpha's messages are wire-identical) resolves a method symbol."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.order.port}") as channel:
        info = channel.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        requests = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(
                file_containing_symbol="sagascope.orders.v1.OrderService.CreateOrder"
            ),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="sagascope.orders.v1.OrderService.Nope"),
        ]
        replies = [reply async for reply in info(iter(requests), timeout=10)]
    names = {s.name for s in replies[0].list_services_response.service}
    assert "grpc.reflection.v1.ServerReflection" in names and "sagascope.orders.v1.OrderService" in names
    assert replies[1].file_descriptor_response.file_descriptor_proto
    assert replies[2].error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
