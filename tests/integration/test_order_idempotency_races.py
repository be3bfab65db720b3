"""Concurrent requests with one idempotency key, against the order service as a real process
on PostgreSQL (real sockets, real payment on nx-27017, telemetry on).

- Only sagas that really start are counted and logged: the losers of the key's insert race
  are answered from the winner's order and leave no ``saga_started_total``, no failed
  ``reserve`` step and no ``saga interrupted`` line (issue 10, defect 7).
- While the payment breaker is open, every copy of one request gets the same answer — the
  stored outcome: UNAVAILABLE with the same message, now and on a later retry (defect 8).
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from sagascope.api.orders.v1 import orders_pb2
from sagascope.cli.client import OrderClient, OrderResult, login, order_request
from sagascope.local.services import LocalStack, Ports
from tests.support import postgres

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(240)]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory, pg_cluster: str) -> AsyncIterator[LocalStack]:
    tmp = tmp_path_factory.mktemp("idempotency-races")
    database_url = postgres.fresh_database(pg_cluster, f"races_{uuid.uuid4().hex[:12]}")
    stack = LocalStack(
        tmp / "stack",
        Ports.free(),
        database_url=database_url,
        extra_env={
            "SAGASCOPE_FAULTS_ENABLED": "true",
            "SAGASCOPE_TELEMETRY_DIR": str(tmp / "telemetry"),
            "ORDER_BREAKER_FAIL_MAX": "3",
            "ORDER_BREAKER_RESET_SECONDS": "120",  # stays open for the whole module
            "ORDER_PAYMENT_MAX_ATTEMPTS": "1",
        },
    )
    await stack.start()
    try:
        yield stack
    finally:
        await stack.stop()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def client(stack: LocalStack) -> AsyncIterator[OrderClient]:
    client = OrderClient(stack.order_target, await login(stack.identity_target, "alice", "alice-dev-password"))
    try:
        yield client
    finally:
        await client.close()


def metric(stack: LocalStack, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.ports.order_metrics}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def order_log(stack: LocalStack) -> list[dict[str, object]]:
    lines = (stack.state_dir / "logs" / "order.log").read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


async def test_only_the_winner_of_a_duplicate_key_race_counts_and_logs_a_saga(
    stack: LocalStack, client: OrderClient
) -> None:
    before = metric(stack, "saga_started_total", saga="CreateOrder")
    keys = [f"race-{uuid.uuid4().hex[:10]}" for _ in range(3)]
    results: list[OrderResult] = await asyncio.gather(
        *(client.create_order(order_request("alice", key)) for key in keys for _ in range(8))
    )
    assert {r.code for r in results} == {grpc.StatusCode.OK}, [r.message for r in results]
    by_key: dict[str, set[str]] = {}
    for result in results:
        assert result.order is not None and result.order.status == orders_pb2.ORDER_STATUS_COMPLETED
        by_key.setdefault(result.order.idempotency_key, set()).add(result.order.id)
    assert {k: len(ids) for k, ids in by_key.items()} == dict.fromkeys(keys, 1)  # one order per key

    assert metric(stack, "saga_started_total", saga="CreateOrder") - before == len(keys)
    failed_reserve = {"saga": "CreateOrder", "step": "reserve", "result": "failure"}
    assert metric(stack, "saga_step_duration_seconds_count", **failed_reserve) == 0
    order_ids = {next(iter(ids)) for ids in by_key.values()}

    def started_lines() -> list[dict[str, object]]:
        return [
            line for line in order_log(stack)
            if line.get("order.id") in order_ids and line.get("event") == "saga.started"
        ]

    # The last replies' log lines may still be on their way to the file (a busy host): wait for
    # them, then make sure no more than one per key ever arrives.
    for _ in range(100):
        if len(started_lines()) >= len(keys):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.3)
    assert len(started_lines()) == len(keys)
    every_line = order_log(stack)
    assert not [line for line in every_line if line.get("event") in ("saga.interrupted", "saga.step.failed")]
    assert not [line for line in every_line if "IntegrityError" in str(line.get("message"))]


async def test_copies_of_one_request_get_the_same_answer_while_the_breaker_is_open(
    stack: LocalStack, client: OrderClient
) -> None:
    # Open the payment breaker: three calls that cannot reach payment.
    for i in range(3):
        tripped = await client.create_order(
            order_request("alice", f"trip-{uuid.uuid4().hex[:8]}-{i}"), inject=("payment_unreachable",)
        )
        assert tripped.code == grpc.StatusCode.UNAVAILABLE, tripped.message

    key = f"open-{uuid.uuid4().hex[:10]}"
    copies = await asyncio.gather(*(client.create_order(order_request("alice", key)) for _ in range(4)))
    answers = {(r.code, r.message) for r in copies}
    assert len(answers) == 1, answers
    ((code, message),) = answers
    assert code == grpc.StatusCode.UNAVAILABLE
    assert "circuit breaker open" in message and "nothing stays charged" in message
    assert "retry with a new idempotency_key" in message

    # A client retrying the same key later gets the stored outcome again, not a new attempt.
    again = await client.create_order(order_request("alice", key))
    assert (again.code, again.message) == (code, message)
    listed = await client._stub.ListOrders(orders_pb2.ListOrdersRequest(), metadata=client._metadata())
    assert [o.status for o in listed.orders if o.idempotency_key == key] == [orders_pb2.ORDER_STATUS_CANCELLED]
