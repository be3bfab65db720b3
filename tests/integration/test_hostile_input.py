"""Issue 10's input defects, over real sockets against all three services (identity, payment,
order on SQLite + nx-27017): undecodable requests (1), whole-string validation (3) and
``BadRequest`` field violations (6)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import FieldDescriptor
from grpc_health.v1 import health_pb2

from sagascope.api.identity.v1 import identity_pb2, identity_pb2_grpc
from sagascope.api.orders.v1 import orders_pb2
from tests.support.order_stack import OrderStack, request, running_order_stack
from tests.support.raw_grpc import call_raw, field_violations

# username (field 1) holding bytes that are not UTF-8; a length prefix that runs past the end;
# a tag with wire type 7 (does not exist).
NOT_UTF8 = b"\x0a\x02\xff\xfe"
TRUNCATED = b"\x0a\x7fabc"
BAD_WIRE_TYPE = b"\x0f\x01"


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[OrderStack]:
    async with running_order_stack(tmp_path, f"sqlite:///{tmp_path / 'orders.db'}") as running:
        yield running


def _garbage_for(method: str) -> list[bytes]:
    """Truncated and bad-wire-type bytes always; non-UTF-8 text when field 1 is a string."""
    service, name = method.strip("/").split("/")
    request_type = descriptor_pool.Default().FindServiceByName(service).FindMethodByName(name).input_type
    first = request_type.fields_by_number.get(1)
    text_first = first is not None and first.type == FieldDescriptor.TYPE_STRING
    return [TRUNCATED, BAD_WIRE_TYPE, *([NOT_UTF8] if text_first else [])]


def _every_rpc(stack: OrderStack) -> list[tuple[str, str]]:
    """(target, method) of every unary RPC of every service, health included."""
    targets = {
        "identity": stack.identity.grpc_target,
        "payment": f"127.0.0.1:{stack.payment_settings.grpc_port}",
        "order": f"127.0.0.1:{stack.order.port}",
    }
    services = {
        "identity": ["/sagascope.identity.v1.IdentityService/Login", "/sagascope.identity.v1.IdentityService/GetJwks"],
        "payment": [
            "/sagascope.payments.v1.PaymentService/ProcessPayment",
            "/sagascope.payments.v1.PaymentService/RefundPayment",
            "/sagascope.payments.v1.PaymentService/GetPayment",
        ],
        "order": [
            "/sagascope.orders.v1.OrderService/CreateOrder",
            "/sagascope.orders.v1.OrderService/GetOrder",
            "/sagascope.orders.v1.OrderService/ListOrders",
        ],
    }
    calls = [(targets[name], method) for name, methods in services.items() for method in methods]
    calls += [(target, "/grpc.health.v1.Health/Check") for target in targets.values()]
    return calls


async def test_undecodable_requests_get_invalid_argument_on_every_rpc_before_auth(
    stack: OrderStack, caplog: pytest.LogCaptureFixture
) -> None:
    """Defect 1: no UNKNOWN, no class names, a WARNING without traceback; no token is needed to be told."""
    caplog.set_level(logging.WARNING)
    for target, method in _every_rpc(stack):
        async with grpc.aio.insecure_channel(target) as channel:
            for payload in _garbage_for(method):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await call_raw(channel, method, payload)
                error = caught.value
                assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, payload, error)
                details = error.details() or ""
                assert "is not a valid" in details and "class" not in details and "Error" not in details
                assert [field for field, _ in field_violations(error)] == ["request"]
    undecodable = [r for r in caplog.records if "undecodable" in r.getMessage()]
    assert len(undecodable) == sum(len(_garbage_for(method)) for _, method in _every_rpc(stack))
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in undecodable)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]
    # ... and every service still answers a valid request.
    async with grpc.aio.insecure_channel(stack.identity.grpc_target) as channel:
        reply = await identity_pb2_grpc.IdentityServiceStub(channel).GetJwks(identity_pb2.GetJwksRequest(), timeout=5)
        assert reply.keys
    got = await stack.stub.CreateOrder(request("after-garbage"), metadata=stack.md("alice"), timeout=10)
    assert got.order.id
    raw = await call_raw(stack.channel, "/grpc.health.v1.Health/Check", b"")
    assert health_pb2.HealthCheckResponse.FromString(raw).status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("value", ["bob\n", "bob\r\n", "\nbob", "bob\x00"])
async def test_ids_ending_in_a_newline_are_refused(stack: OrderStack, value: str) -> None:
    """Defect 3: an admin cannot create an order for ``"bob\\n"`` (a different customer from ``bob``)."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.stub.CreateOrder(
            request(f"nl-{len(value)}", customer=value), metadata=stack.md("admin"), timeout=10
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [field for field, _ in field_violations(caught.value)] == ["customer_id"]
    bad_sku = request("nl-sku")
    bad_sku.items[0].sku = "SKU-1\n"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.stub.CreateOrder(bad_sku, metadata=stack.md("alice"), timeout=10)
    assert [field for field, _ in field_violations(caught.value)] == ["items[0].sku"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.stub.CreateOrder(request("key\n"), metadata=stack.md("alice"), timeout=10)
    assert [field for field, _ in field_violations(caught.value)] == ["idempotency_key"]


async def test_refusals_carry_bad_request_field_violations_and_keep_the_message(stack: OrderStack) -> None:
    """Defect 6: ``google.rpc.BadRequest`` details, readable with grpcio-status, beside the same message."""
    bad = request("fv-1", quantity=0)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.stub.CreateOrder(bad, metadata=stack.md("alice"), timeout=10)
    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "items[0].quantity: must be between 1 and 1000, got 0" or error.details().startswith(
        "items[0].quantity:"
    )
    violations = field_violations(error)
    assert [field for field, _ in violations] == ["items[0].quantity"]
    assert violations[0][1] in error.details()
    async with grpc.aio.insecure_channel(stack.identity.grpc_target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await identity_pb2_grpc.IdentityServiceStub(channel).Login(
                identity_pb2.LoginRequest(username="alice", password=""), timeout=5
            )
    assert field_violations(caught.value) == [("password", "is required")]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.stub.GetOrder(orders_pb2.GetOrderRequest(order_id=""), metadata=stack.md("alice"), timeout=5)
    assert field_violations(caught.value) == [("order_id", "is required")]


async def test_undecodable_streaming_requests_get_invalid_argument(
    stack: OrderStack, caplog: pytest.LogCaptureFixture
) -> None:
    """Defect 1 on the streaming RPCs too: reflection (both versions) and health Watch."""
    caplog.set_level(logging.WARNING)
    for service in ("grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"):
        call = stack.channel.stream_stream(f"/{service}/ServerReflectionInfo")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in call(iter([TRUNCATED]), timeout=10):
                pass
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value
        assert [field for field, _ in field_violations(caught.value)] == ["request"]
    watch = stack.channel.unary_stream("/grpc.health.v1.Health/Watch")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in watch(TRUNCATED, timeout=10):
            pass
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # A valid Watch still streams its first status, and reflection still lists services.
    async for reply in stack.channel.unary_stream("/grpc.health.v1.Health/Watch")(b"", timeout=10):
        assert health_pb2.HealthCheckResponse.FromString(reply).status == health_pb2.HealthCheckResponse.SERVING
        break
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
