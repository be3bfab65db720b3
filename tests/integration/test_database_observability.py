"""The order database's own view, against a real PostgreSQL with pg_stat_statements preloaded:

- the collector's monitoring role (observability/postgresql/monitoring-role.sql, applied the way
  the local stack applies it) reads what the postgresql receiver reads, and may write nothing:
  INSERT, UPDATE, DELETE, TRUNCATE, DDL and a role change are each refused;
- the slow-database game day's batch job makes the saga's writes slow inside the server;
- ORDER_SQL_COMMENTER: the statement carries upstream's sqlcommenter traceparent, the session's
  application_name the traceparent of the span at checkout, and pg_stat_statements still counts
  the commented statements of many traces as ONE statement (the comment is not in the queryid).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from opentelemetry import trace
from sqlalchemy import text

from sagascope.cli.gameday import GameDay
from sagascope.local.postgres_monitoring import MonitoringRole, apply_monitoring_role
from sagascope.order.database import create_engine, migrate
from sagascope.order.repository import OrderReader
from tests.integration.conftest import REQUIRE_POSTGRES
from tests.support import postgres
from tests.support.telemetry_testing import in_memory_telemetry

PASSWORD = "test-monitor-password"


@pytest.fixture(scope="module")
def stats_cluster() -> Iterator[str]:
    """A cluster of its own: pg_stat_statements needs shared_preload_libraries at start."""
    reason = postgres.unavailable_reason()
    if reason:
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL tier required but unavailable: {reason}")
        pytest.skip(f"PostgreSQL tier skipped: {reason}")
    with postgres.throwaway_cluster({"shared_preload_libraries": "pg_stat_statements"}) as url:
        yield url


@pytest.fixture(scope="module")
def monitored(stats_cluster: str) -> tuple[str, MonitoringRole]:
    """The app's database (migrated) and the monitoring role, applied by the administrator."""
    role = MonitoringRole(user="sagascope_monitor", password=PASSWORD)
    apply_monitoring_role(stats_cluster, role)
    apply_monitoring_role(stats_cluster, role)  # idempotent: a second run only resets the password
    return postgres.fresh_database(stats_cluster, f"t_{uuid.uuid4().hex[:12]}"), role


def _as(url: str, user: str, password: str, database: str | None = None) -> str:
    base, _, name = url.rpartition("/")
    host = base.split("@", 1)[1]
    return f"postgresql://{user}:{password}@{host}/{database or name}"


async def test_the_monitoring_role_reads_the_statistics_and_can_write_nothing(
    monitored: tuple[str, MonitoringRole],
) -> None:
    app_url, role = monitored
    await migrate(app_url)
    owner = await asyncpg.connect(app_url)
    try:
        await owner.execute("SELECT count(*) FROM saga_instances")  # something for pg_stat_statements
    finally:
        await owner.close()

    # What the receiver reads: in the app's database, and pg_stat_statements in `postgres`.
    monitor = await asyncpg.connect(_as(app_url, role.user, role.password))
    try:
        tables = {r["relname"] for r in await monitor.fetch("SELECT relname FROM pg_stat_user_tables")}
        assert {"orders", "saga_instances"} <= tables
        await monitor.fetch("SELECT * FROM pg_stat_database")
        await monitor.fetch("SELECT relname, mode FROM pg_locks JOIN pg_class ON pg_locks.relation = pg_class.oid")
        await monitor.fetch("SELECT * FROM pg_stat_bgwriter")
        other_sessions = await monitor.fetch("SELECT query FROM pg_stat_activity WHERE usename <> current_user")
        assert "<insufficient privilege>" not in {r["query"] for r in other_sessions}

        refused = {
            "INSERT": "INSERT INTO saga_instances (id) VALUES ('x')",
            "UPDATE": "UPDATE saga_instances SET status = 'FAILED'",
            "DELETE": "DELETE FROM orders",
            "TRUNCATE": "TRUNCATE saga_instances",
            "CREATE TABLE": "CREATE TABLE monitor_was_here (id int)",
            "DROP TABLE": "DROP TABLE orders",
            "ALTER TABLE": "ALTER TABLE saga_instances ADD COLUMN evil int",
            "CREATE ROLE": "CREATE ROLE escalated SUPERUSER",
        }
        # Read-write explicitly: the role's default_transaction_read_only is only the second
        # guard (a session may turn it off); the privileges themselves must refuse.
        await monitor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")
        for what, statement in refused.items():
            with pytest.raises(asyncpg.PostgresError) as refusal:
                await monitor.execute(statement)
            assert isinstance(refusal.value, asyncpg.InsufficientPrivilegeError), f"{what}: {refusal.value!r}"
    finally:
        await monitor.close()
    # and a fresh session is read-only to begin with
    fresh = await asyncpg.connect(_as(app_url, role.user, role.password))
    try:
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await fresh.execute("CREATE TEMP TABLE scratch (id int)")
    finally:
        await fresh.close()

    admin_db = await asyncpg.connect(_as(app_url, role.user, role.password, "postgres"))
    try:
        rows = await admin_db.fetch("SELECT queryid, calls, query FROM pg_stat_statements WHERE query LIKE $1",
                                    "%FROM saga_instances%")
        assert rows, "the monitoring role sees no statement in pg_stat_statements"
    finally:
        await admin_db.close()


async def test_the_commenter_carries_the_trace_to_the_server_without_splitting_statements(
    monitored: tuple[str, MonitoringRole],
) -> None:
    app_url, role = monitored
    await migrate(app_url)
    key = f"commenter-{uuid.uuid4().hex[:8]}"
    engine = create_engine(app_url)
    traces: list[str] = []
    try:
        with in_memory_telemetry("order-service") as captured:
            captured.telemetry.instrument_sqlalchemy(engine, commenter=True)
            tracer = captured.telemetry.tracer("test")
            for _ in range(3):
                with tracer.start_as_current_span("saga.step reserve") as step:
                    assert await OrderReader(engine).find_by_key("alice", key) is None
                    traces.append(f"{step.get_span_context().trace_id:032x}")
                    # the session's application_name while the step runs: its traceparent
                    async with engine.connect() as connection:
                        name = (await connection.execute(text("SELECT current_setting('application_name')"))).scalar()
                    context = trace.get_current_span().get_span_context()
                    assert name.startswith(f"00-{context.trace_id:032x}-"), name
            sql_spans = [s for s in captured.spans.get_finished_spans() if s.name != "connect" and "FROM orders" in
                         str((s.attributes or {}).get("db.query.text", ""))]
            # outside any span: the connection's name goes back to the service's
            async with engine.connect() as connection:
                untraced = (await connection.execute(text("SELECT current_setting('application_name')"))).scalar()
    finally:
        await engine.dispose()
    assert untraced == "order-service"
    assert len(sql_spans) == 3 and all("traceparent" not in str(s.attributes) for s in sql_spans), (
        "the span's db.query.text stays without the comment (enable_attribute_commenter is off)"
    )

    admin = await asyncpg.connect(_as(app_url, role.user, role.password, "postgres"))
    try:
        rows = await admin.fetch(
            "SELECT queryid, calls, query FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
            "WHERE d.datname = $1 AND query LIKE '%FROM orders%' AND query LIKE '%traceparent%'",
            app_url.rpartition("/")[2],
        )
    finally:
        await admin.close()
    # One entry for the three traces' statements: the comment is not part of the queryid; the
    # stored text is the first execution's, comment and all.
    assert len(rows) == 1, rows
    assert rows[0]["calls"] >= 3 and f"traceparent='00-{traces[0]}-" in rows[0]["query"], rows


async def test_the_slow_database_game_days_lock_makes_the_saga_writes_slow_inside_the_server(
    monitored: tuple[str, MonitoringRole], tmp_path: Path
) -> None:
    """The premise of slow-database's database view: while the game day's batch job locks the saga
    log, a write to saga_instances waits in the server, and pg_stat_statements counts the wait as
    the statement's execution time (what the top-query records and the panel rank by)."""
    app_url, role = monitored
    await migrate(app_url)
    day = GameDay(tmp_path, database_url=app_url)
    assert day.on_postgresql
    marker = f"gameday_probe_{uuid.uuid4().hex[:8]}"
    writer = await asyncpg.connect(app_url)
    await writer.execute(
        "INSERT INTO saga_instances (id, name, status, step_index, step_started, state, failure_reason, "
        "correlation_id, traceparent, lease_owner, lease_expires_at, attempts, next_attempt_at, created_at, "
        "updated_at) VALUES ($1, 'CreateOrder', 'RUNNING', 1, 0, '{}', '', $1, '', 'test', 0, 0, 0, 0, 0)",
        marker,
    )
    lock = asyncio.create_task(day.lock_saga_log())
    try:
        await asyncio.sleep(0.2)
        for _ in range(5):
            # the comment names the entry (pg_stat_statements replaces literals, keeps the first text)
            await writer.execute(f"/* {marker} */ UPDATE saga_instances SET attempts = attempts + 1 WHERE id = $1",
                                 marker)
            await asyncio.sleep(0.05)
    finally:
        lock.cancel()
        await asyncio.gather(lock, return_exceptions=True)
        await writer.close()
    admin = await asyncpg.connect(_as(app_url, role.user, role.password, "postgres"))
    try:
        (row,) = await admin.fetch(
            "SELECT calls, mean_exec_time FROM pg_stat_statements WHERE query LIKE $1", f"%{marker}%"
        )
    finally:
        await admin.close()
    assert row["calls"] == 5 and row["mean_exec_time"] >= 50, dict(row)
