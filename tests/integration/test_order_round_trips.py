"""How many statements a saga sends to PostgreSQL, read from PostgreSQL itself (pg_stat_statements).

A throwaway cluster with ``shared_preload_libraries=pg_stat_statements`` (utility statements
such as BEGIN/COMMIT/ROLLBACK are tracked too), the real order service over gRPC on a fresh
database, warm connections; the statistics are reset, sagas run one after another, and every
statement the order database executed in that window is counted. Each statement is one round
trip (the service sends no pipelines), so the count is the round-trip count.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
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
