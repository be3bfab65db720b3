"""What ORDER_SQL_COMMENTER costs per statement, in isolation: one pooled connection on a throwaway
PostgreSQL, the order service's key lookup N times, each in its own span, the setting off and on
in alternating runs; then how many prepared statements the server holds for that connection.

    python -m benchmarks.sql_commenter [--statements 300] [--runs 4]

`make bench BENCH_ARGS=--sql-commenter` gives the figure per saga under load; this one shows
where it comes from (docs/databases.md).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from sqlalchemy import text

from sagascope.order.database import create_engine, migrate
from sagascope.order.repository import OrderReader
from tests.support.postgres import throwaway_cluster
from tests.support.telemetry_testing import in_memory_telemetry


async def run_once(url: str, commenter: bool, statements: int) -> tuple[float, float, int]:
    """(wall ms per statement, this process's CPU ms per statement, server prepared statements)."""
    engine = create_engine(url, pool_size=1)
    try:
        with in_memory_telemetry("order-service") as captured:
            captured.telemetry.instrument_sqlalchemy(engine, commenter=commenter)
            tracer = captured.telemetry.tracer("bench")
            reader = OrderReader(engine)
            for _ in range(20):  # warm-up: connection, compiled statement, driver cache
                with tracer.start_as_current_span("warm-up"):
                    await reader.find_by_key("alice", "bench")
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(statements):
                with tracer.start_as_current_span("saga.step"):
                    await reader.find_by_key("alice", "bench")
            wall_ms = (time.perf_counter() - wall) / statements * 1000
            cpu_ms = (time.process_time() - cpu) / statements * 1000
            async with engine.connect() as connection:
                prepared = (await connection.execute(text("SELECT count(*) FROM pg_prepared_statements"))).scalar()
    finally:
        await engine.dispose()
    return wall_ms, cpu_ms, int(prepared or 0)


async def measure(url: str, statements: int, runs: int) -> None:
    await migrate(url)
    results: dict[bool, list[tuple[float, float, int]]] = {False: [], True: []}
    for _ in range(runs):
        for commenter in (False, True):
            results[commenter].append(await run_once(url, commenter, statements))
    for commenter, rows in results.items():
        walls = [r[0] for r in rows]
        print(
            f"ORDER_SQL_COMMENTER={int(commenter)}: wall {statistics.median(walls):.2f} ms/statement "
            f"(runs {', '.join(f'{w:.2f}' for w in walls)}), client CPU {statistics.median(r[1] for r in rows):.2f} "
            f"ms/statement, prepared statements on the server {rows[-1][2]}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--statements", type=int, default=300)
    parser.add_argument("--runs", type=int, default=4)
    args = parser.parse_args()
    with throwaway_cluster() as url:
        asyncio.run(measure(url, args.statements, args.runs))


if __name__ == "__main__":
    main()
