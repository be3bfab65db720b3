"""The order service over real gRPC, on SQLite and on a real PostgreSQL, with the real
payment service on nx-27017 and the real identity service for tokens."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from sqlalchemy import func, select

from sagascope.api.orders.v1 import orders_pb2
from sagascope.order.tables import orders
from sagascope.saga.store import saga_instances
from tests.support.order_stack import request

COMPLETED = orders_pb2.ORDER_STATUS_COMPLETED
CANCELLED = orders_pb2.ORDER_STATUS_CANCELLED
FAILED = orders_pb2.ORDER_STATUS_FAILED


async def create(stack, req, *faults, user="alice", timeout=30.0):
    call = stack.stub.CreateOrder(req, metadata=stack.md(user, *faults), timeout=timeout)
    reply = await call
    return reply.order, dict(await call.initial_metadata())


async def rpc_error(coro) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await coro
    return info.value


async def test_happy_path_completes_with_one_charge_and_returns_the_correlation_id(order_stack):
    order, headers = await create(order_stack, request("k-happy", amount=2500, quantity=2))
    assert order.status == COMPLETED
    assert order.total_minor == 5000 and order.currency == "EUR"
    assert order.correlation_id and headers["x-correlation-id"] == order.correlation_id
    payments = await order_stack.payments_for(order.id)
    assert [(p["status"], p["amount_minor"], p["_id"]) for p in payments] == [
        ("CHARGED", 5000, order.payment_id)
    ]
    fetched = (
        await order_stack.stub.GetOrder(
            orders_pb2.GetOrderRequest(order_id=order.id), metadata=order_stack.md()
        )
    ).order
    assert fetched.status == COMPLETED and fetched.payment_id == order.payment_id


async def test_a_correlation_id_from_the_caller_is_kept(order_stack):
    call = order_stack.stub.CreateOrder(
        request("k-corr"), metadata=order_stack.md(extra=(("x-correlation-id", "gw-1234"),))
    )
    order = (await call).order
    assert order.correlation_id == "gw-1234"
    assert dict(await call.initial_metadata())["x-correlation-id"] == "gw-1234"


async def test_declined_payment_cancels_the_order_and_charges_nothing(order_stack):
    order, _ = await create(order_stack, request("k-declined", amount=150_000))
    assert order.status == CANCELLED
    assert "declined" in order.failure_reason and "1500.00 EUR" in order.failure_reason
    assert [p["status"] for p in await order_stack.payments_for(order.id)] == ["DECLINED"]


async def test_failed_confirm_refunds_the_charge(order_stack):
    order, _ = await create(order_stack, request("k-confirm"), "confirm_failure")
    assert order.status == CANCELLED
    assert "confirm failed" in order.failure_reason
    payments = await order_stack.payments_for(order.id)
    assert [(p["_id"], p["status"]) for p in payments] == [(order.payment_id, "REFUNDED")]


async def test_same_key_returns_the_same_order_and_a_different_body_is_refused(order_stack):
    first, _ = await create(order_stack, request("k-same"))
    again, _ = await create(order_stack, request("k-same"))
    assert again.id == first.id and again.payment_id == first.payment_id
    assert len(await order_stack.payments_for(first.id)) == 1
    error = await rpc_error(create(order_stack, request("k-same", amount=5000)))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "k-same" in error.details() and first.id in error.details()


async def test_twenty_concurrent_requests_with_one_key_make_one_order_and_one_charge(order_stack):
    results = await asyncio.gather(*(create(order_stack, request("k-race")) for _ in range(20)))
    ids = {order.id for order, _ in results}
    assert len(ids) == 1
    assert {order.status for order, _ in results} == {COMPLETED}
    order_id = ids.pop()
    assert len(await order_stack.payments_for(order_id)) == 1
    async with order_stack.order.store.sessions() as session:
        count = (
            await session.execute(
                select(func.count()).select_from(orders).where(orders.c.idempotency_key == "k-race")
            )
        ).scalar()
    assert count == 1


@pytest.mark.parametrize(
    ("req", "field"),
    [
        (orders_pb2.CreateOrderRequest(customer_id="alice", currency="EUR", idempotency_key="k"), "items"),
        (request("k", quantity=0), "items[0].quantity"),
        (request("k", amount=0), "items[0].unit_price_minor"),
        (request("k", amount=-5), "items[0].unit_price_minor"),
        (request("k", amount=10**13), "items[0].unit_price_minor"),
        (request("k", currency="XYZ"), "currency"),
        (request("", customer="alice"), "idempotency_key"),
        (request("k" * 200), "idempotency_key"),
        (request("k", customer=""), "customer_id"),
    ],
)
async def test_invalid_requests_are_refused_naming_the_field(order_stack, req, field):
    error = await rpc_error(create(order_stack, req))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(field)


async def test_auth_is_required_and_roles_are_checked(order_stack):
    error = await rpc_error(order_stack.stub.CreateOrder(request("k-auth")))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    error = await rpc_error(create(order_stack, request("k-auth", customer="viewer"), user="viewer"))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    error = await rpc_error(create(order_stack, request("k-auth", customer="bob")))  # alice for bob
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_orders_of_others_are_invisible_and_listing_pages_through_everything(order_stack):
    made = [(await create(order_stack, request(f"k-list-{i}")))[0].id for i in range(5)]
    error = await rpc_error(
        order_stack.stub.GetOrder(
            orders_pb2.GetOrderRequest(order_id=made[0]), metadata=order_stack.md("bob")
        )
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    seen, token = [], ""
    while True:
        page = await order_stack.stub.ListOrders(
            orders_pb2.ListOrdersRequest(page_size=2, page_token=token), metadata=order_stack.md()
        )
        assert len(page.orders) <= 2
        seen += [o.id for o in page.orders]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(made)
    completed = await order_stack.stub.ListOrders(
        orders_pb2.ListOrdersRequest(status=CANCELLED), metadata=order_stack.md()
    )
    assert list(completed.orders) == []
    assert (
        await order_stack.stub.ListOrders(orders_pb2.ListOrdersRequest(), metadata=order_stack.md("bob"))
    ).orders == []
    for bad, field in (
        (orders_pb2.ListOrdersRequest(page_size=101), "page_size"),
        (orders_pb2.ListOrdersRequest(page_token="%%%"), "page_token"),
    ):
        error = await rpc_error(order_stack.stub.ListOrders(bad, metadata=order_stack.md()))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith(field)


async def test_payment_down_fails_the_order_until_recovery_refunds_by_key_once_it_is_back(order_stack):
    await order_stack.stop_payment()
    started = time.monotonic()
    error = await rpc_error(create(order_stack, request("k-down")))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "FAILED until its refund can be made" in error.details()
    assert time.monotonic() - started < 15
    page = await order_stack.stub.ListOrders(orders_pb2.ListOrdersRequest(), metadata=order_stack.md())
    (order,) = page.orders
    assert order.status == FAILED and "compensation pending" in order.failure_reason

    await order_stack.start_payment()
    deadline = time.monotonic() + 30
    while order.status == FAILED and time.monotonic() < deadline:
        await asyncio.sleep(0.3)
        order = (
            await order_stack.stub.GetOrder(
                orders_pb2.GetOrderRequest(order_id=order.id), metadata=order_stack.md()
            )
        ).order
    assert order.status == CANCELLED
    # The refund by charge key found no charge and fenced the key: nothing was ever taken.
    assert [p["status"] for p in await order_stack.payments_for(order.id)] in ([], ["VOIDED"])
    async with order_stack.order.store.sessions() as session:
        status = (await session.execute(select(saga_instances.c.status))).scalars().all()
    assert status == ["COMPENSATED"]


async def test_breaker_opens_and_orders_fail_fast_without_charging(order_stack):
    timings = []
    for i in range(5):
        started = time.monotonic()
        error = await rpc_error(create(order_stack, request(f"k-unreach-{i}"), "payment_unreachable"))
        timings.append(time.monotonic() - started)
        assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "circuit breaker open" in error.details()
    page = await order_stack.stub.ListOrders(orders_pb2.ListOrdersRequest(), metadata=order_stack.md())
    assert {o.status for o in page.orders} == {CANCELLED}
    for o in page.orders:
        assert await order_stack.payments_for(o.id) == []
