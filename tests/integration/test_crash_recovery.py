"""SIGKILL the order service mid-saga, restart it, and the saga still finishes with
exactly one net charge. Real processes (sagascope.local's supervisor), real sockets, real storage."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import pytest
from pymongo import AsyncMongoClient

from sagascope.api.orders.v1 import orders_pb2
from sagascope.cli.client import OrderClient, login, order_request
from sagascope.local.services import LocalStack, Ports

pytestmark = pytest.mark.timeout(240)


def crash_stack(tmp_path, database_url: str, order_replicas: int = 1) -> LocalStack:  # type: ignore[no-untyped-def]
    """Faults on (3 s latency), short leases and a fast recovery loop, so a crash heals in seconds."""
    return LocalStack(
        tmp_path / "stack",
        Ports.free(),
        database_url=database_url,
        order_replicas=order_replicas,
        extra_env={
            "SAGASCOPE_FAULTS_ENABLED": "true",
            "SAGASCOPE_FAULT_LATENCY_MS": "3000",
            "ORDER_SAGA_LEASE_SECONDS": "2",
            "ORDER_RECOVERY_INTERVAL_SECONDS": "0.5",
            "ORDER_PAYMENT_TIMEOUT_SECONDS": "10",
            "SAGASCOPE_TELEMETRY_DIR": str(tmp_path / "telemetry"),
        },
    )


@pytest.fixture
async def stack(tmp_path, database_url):
    stack = crash_stack(tmp_path, database_url)
    await stack.start()
    try:
        yield stack
    finally:
        await stack.stop()


async def charged_payments(stack: LocalStack) -> list[dict[str, Any]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        f"mongodb://127.0.0.1:{stack.ports.mongo}/?directConnection=true"
    )
    try:
        return await client["payments"]["payments"].find({}).to_list()
    finally:
        await client.close()


async def wait_for(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def crash_and_recover(stack: LocalStack, fault: str, crash_when) -> tuple[orders_pb2.Order, list]:  # type: ignore[no-untyped-def]
    token = await login(stack.identity_target, "alice", "alice-dev-password")
    client = OrderClient(stack.order_target, token)
    placing = asyncio.create_task(client.create_order(order_request("alice", f"crash-{fault}"), inject=(fault,)))
    order_id = await wait_for(lambda: crash_when(stack), 30, f"the saga to reach the crash point ({fault})")
    stack.kill("order")
    result = await placing
    assert result.order is None and result.code == grpc.StatusCode.UNAVAILABLE  # the caller saw the crash
    await client.close()

    await stack.start_one("order")
    client = OrderClient(stack.order_target, token)
    try:

        async def finished() -> orders_pb2.Order | None:
            order = await client.get_order(order_id)
            return order if order.status != orders_pb2.ORDER_STATUS_PENDING else None

        order = await wait_for(finished, 60, "recovery to finish the saga")
    finally:
        await client.close()
    return order, [p for p in await charged_payments(stack) if p.get("order_id") == order_id]


async def test_killed_between_charge_and_confirm_completes_with_one_charge(stack):
    async def charged(stack: LocalStack) -> str | None:
        # The charge is done at payment while the order service sleeps before confirm.
        docs = [p for p in await charged_payments(stack) if p["status"] == "CHARGED"]
        return docs[0]["order_id"] if docs else None

    order, payments = await crash_and_recover(stack, "confirm_latency", charged)
    assert order.status == orders_pb2.ORDER_STATUS_COMPLETED
    assert [(p["status"], p["_id"]) for p in payments] == [("CHARGED", order.payment_id)]


async def test_killed_while_the_charge_is_in_flight_retries_it_with_the_same_key(stack):
    async def order_row_exists(stack: LocalStack) -> str | None:
        token = await login(stack.identity_target, "alice", "alice-dev-password")
        client = OrderClient(stack.order_target, token)
        try:
            page = await client._stub.ListOrders(orders_pb2.ListOrdersRequest(), metadata=client._metadata())
        finally:
            await client.close()
        return page.orders[0].id if page.orders else None

    order, payments = await crash_and_recover(stack, "payment_latency", order_row_exists)
    assert order.status == orders_pb2.ORDER_STATUS_COMPLETED
    assert len(payments) == 1 and payments[0]["status"] == "CHARGED"
    assert payments[0]["_id"] == order.payment_id


async def test_with_two_replicas_the_survivor_finishes_a_saga_the_crashed_one_started(tmp_path, database_url):
    stack = crash_stack(tmp_path, database_url, order_replicas=2)
    await stack.start()
    try:
        token = await login(stack.identity_target, "alice", "alice-dev-password")
        first = OrderClient(f"127.0.0.1:{stack.order_ports[0]}", token)
        survivor = OrderClient(f"127.0.0.1:{stack.order_ports[1]}", token)
        placing = asyncio.create_task(
            first.create_order(order_request("alice", "two-replicas"), inject=("payment_latency",))
        )

        async def order_id_from_survivor() -> str | None:
            page = await survivor._stub.ListOrders(orders_pb2.ListOrdersRequest(), metadata=survivor._metadata())
            return page.orders[0].id if page.orders else None

        order_id = await wait_for(order_id_from_survivor, 30, "the first replica to reserve the order")
        stack.kill("order")  # the replica that owns the saga, mid-charge
        assert (await placing).code == grpc.StatusCode.UNAVAILABLE
        await first.close()

        async def finished() -> orders_pb2.Order | None:
            order = await survivor.get_order(order_id)
            return order if order.status != orders_pb2.ORDER_STATUS_PENDING else None

        order = await wait_for(finished, 60, "the surviving replica's recovery to finish the saga")
        await survivor.close()
        assert order.status == orders_pb2.ORDER_STATUS_COMPLETED
        payments = [p for p in await charged_payments(stack) if p.get("order_id") == order_id]
        assert [(p["status"], p["_id"]) for p in payments] == [("CHARGED", order.payment_id)]
    finally:
        await stack.stop()
