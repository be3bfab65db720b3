"""How many statements a saga sends to PostgreSQL, read from PostgreSQL itself (pg_stat_statements).

A throwaway cluster with ``shared_preload_libraries=pg_stat_statements`` (utility statements
such as BEGIN/COMMIT/ROLLBACK are tracked too), the real order service over gRPC on a fresh
database, warm connections; the statistics are reset, sagas run one after another, and every
statement the order database executed in that window is counted. Each statement is one round
trip (the service sends no pipelines), so the count is the round-trip count.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import grpc
import pytest

from sagascope.api.orders.v1 import orders_pb2
from tests.integration.conftest import REQUIRE_POSTGRES
from tests.support import postgres
from tests.support.order_stack import running_order_stack

pytestmark = pytest.mark.timeout(240)

HAPPY_MAX, COMPENSATED_MAX = 3, 6
SAGAS = 8


@pytest.fixture(scope="module")
def counting_cluster() -> Iterator[str]:
    reason = postgres.unavailable_reason()
    if reason:
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL tier required but unavailable: {reason}")
        pytest.skip(f"PostgreSQL tier skipped: {reason}")
    with postgres.throwaway_cluster(
        {"shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track_utility": "on"}
    ) as url:
        yield url


class StatementCounter:
    """Reads pg_stat_statements of one database through a connection to another one."""

    def __init__(self, cluster_url: str, database: str) -> None:
        self.cluster_url = cluster_url
        self.database = database

    async def _run(self, query: str) -> list[asyncpg.Record]:
        connection = await asyncpg.connect(self.cluster_url)
        try:
            await connection.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            return await connection.fetch(query, self.database)
        finally:
            await connection.close()

    async def reset(self) -> None:
        await self._run(
            "SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database WHERE datname = $1), 0)"
        )

    async def statements(self) -> dict[str, int]:
        rows = await self._run(
            "SELECT query, calls FROM pg_stat_statements "
            "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1)"
        )
        return {row["query"]: row["calls"] for row in rows}


async def statements_per_saga(stack, counter: StatementCounter, *faults: str) -> tuple[float, dict[str, int]]:  # type: ignore[no-untyped-def]
    await counter.reset()
    for i in range(SAGAS):
        request = orders_pb2.CreateOrderRequest(
            customer_id="alice",
            currency="EUR",
            idempotency_key=f"rt-{uuid.uuid4().hex[:12]}-{i}",
            items=[
                orders_pb2.OrderItem(sku="SKU-1", quantity=2, unit_price_minor=1250),
                orders_pb2.OrderItem(sku="SKU-2", quantity=1, unit_price_minor=499),
            ],
        )
        reply = await stack.stub.CreateOrder(request, metadata=stack.md("alice", *faults), timeout=30)
        expected = orders_pb2.ORDER_STATUS_CANCELLED if faults else orders_pb2.ORDER_STATUS_COMPLETED
        assert reply.order.status == expected, reply.order
    statements = await counter.statements()
    return sum(statements.values()) / SAGAS, statements


def _listing(statements: dict[str, int]) -> str:
    return "\n".join(f"{calls:5d}  {' '.join(query.split())[:160]}" for query, calls in statements.items())


async def test_a_saga_costs_at_most_three_round_trips_and_a_compensated_one_six(
    tmp_path: Path, counting_cluster: str
) -> None:
    name = f"rt_{uuid.uuid4().hex[:12]}"
    database_url = postgres.fresh_database(counting_cluster, name)
    # No recovery pass inside the counting window: it would add its own (periodic) statements.
    async with running_order_stack(tmp_path, database_url, recovery_interval_s=3600.0) as stack:
        counter = StatementCounter(counting_cluster, name)
        for faults in ((), ("confirm_failure",)):  # warm the pool and the prepared statements
            await statements_per_saga(stack, counter, *faults)

        happy, happy_statements = await statements_per_saga(stack, counter)
        compensated, compensated_statements = await statements_per_saga(stack, counter, "confirm_failure")

    print(f"round trips per saga: happy {happy:g}, compensated (confirm fails, refund) {compensated:g}")
    assert happy <= HAPPY_MAX, f"{happy:g} statements per happy saga:\n{_listing(happy_statements)}"
    assert compensated <= COMPENSATED_MAX, (
        f"{compensated:g} statements per compensated saga:\n{_listing(compensated_statements)}"
    )
    # Something was counted at all (a broken counter must not pass).
    assert happy >= 1 and compensated >= happy


async def test_each_saga_admin_change_is_one_guarded_statement(tmp_path: Path, counting_cluster: str) -> None:
    """PauseSaga / ResumeSaga / ResolveSaga: the transition, its audit row and (resolve) the order's
    CANCELLED are ONE statement ending in saga_guard — no BEGIN/COMMIT, no second write."""
    from sagascope.api.admin.v1 import admin_pb2 as a
    from sagascope.api.admin.v1 import admin_pb2_grpc

    name = f"rt_{uuid.uuid4().hex[:12]}"
    database_url = postgres.fresh_database(counting_cluster, name)
    async with running_order_stack(tmp_path, database_url, recovery_interval_s=3600.0) as stack:
        counter = StatementCounter(counting_cluster, name)
        for key in ("rt-admin-1", "rt-admin-2"):  # refunds parked: FAILED
            request = orders_pb2.CreateOrderRequest(
                customer_id="alice", currency="EUR", idempotency_key=key,
                items=[orders_pb2.OrderItem(sku="SKU-1", quantity=1, unit_price_minor=1250)],
            )  # fmt: skip
            with contextlib.suppress(grpc.aio.AioRpcError):  # UNAVAILABLE: the refund is parked
                await stack.stub.CreateOrder(request, metadata=stack.md("alice", "confirm_failure", "refund_failure"))
        admin = admin_pb2_grpc.SagaAdminServiceStub(stack.channel)
        op = stack.md("operator")
        first, second = (await admin.ListSagas(a.ListSagasRequest(), metadata=op)).sagas
        assert first.status == second.status == a.SAGA_STATUS_FAILED
        # The second waits for ResolveSaga; paused first, so the first's resume (which wakes recovery) leaves it.
        await admin.PauseSaga(a.PauseSagaRequest(saga_id=second.saga_id), metadata=op)
        stack.order.admin._on_due = None  # no recovery pass woken by resume inside the counting window
        writes_by_action = {}
        for action, call in (
            ("pause", lambda: admin.PauseSaga(a.PauseSagaRequest(saga_id=first.saga_id), metadata=op)),
            ("resume", lambda: admin.ResumeSaga(a.ResumeSagaRequest(saga_id=first.saga_id), metadata=op)),
            ("resolve", lambda: admin.ResolveSaga(a.ResolveSagaRequest(saga_id=second.saga_id, note="x"), metadata=op)),
        ):
            await counter.reset()
            await call()
            writes_by_action[action] = _writes(await counter.statements())

    for action, writes in writes_by_action.items():
        assert len(writes) == 1 and sum(writes.values()) == 1, (action, _listing(writes))
        (statement,) = writes
        assert "saga_guard" in statement and "INSERT INTO saga_audit" in statement, statement
        assert not any(q.strip().upper() in ("BEGIN", "COMMIT") for q in writes), action
    assert "UPDATE orders" in next(iter(writes_by_action["resolve"]))


def _writes(statements: dict[str, int]) -> dict[str, int]:
    """The statements that write (and any transaction control), not the reads around them."""
    return {
        q: n for q, n in statements.items()
        if any(w in q.upper() for w in ("UPDATE ", "INSERT ", "DELETE ")) or q.strip().upper() in ("BEGIN", "COMMIT")
    }  # fmt: skip
