"""SQL statement spans wired by Telemetry: under the caller's span, named and attributed."""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import Column, Integer, MetaData, Table, insert, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.telemetry_testing import in_memory_telemetry

_metadata = MetaData()
_things = Table("things", _metadata, Column("id", Integer, primary_key=True))


async def test_each_statement_is_a_client_span_under_the_callers_span(tmp_path: Path) -> None:
    database = tmp_path / "x.db"
    engine = create_async_engine(f"sqlite+aiosqlite:///{database}")
    try:
        with in_memory_telemetry("order-service") as captured:
            captured.telemetry.instrument_sqlalchemy(engine)
            tracer = trace.get_tracer("t", tracer_provider=captured.telemetry.tracer_provider)
            with tracer.start_as_current_span("saga.step reserve") as step:
                async with engine.begin() as connection:
                    await connection.run_sync(_metadata.create_all)
                    for key in (1, 2):  # the same statement twice: the cached shape is reused
                        await connection.execute(insert(_things).values(id=key))
                    await connection.execute(select(_things.c.id))
                    await connection.execute(text("SELECT count(*) FROM things"))
            sql = [s for s in captured.spans.get_finished_spans() if (s.attributes or {}).get("db.system")]
    finally:
        await engine.dispose()
    assert all(s.parent is not None and s.parent.span_id == step.get_span_context().span_id for s in sql)
    assert all(s.kind is SpanKind.CLIENT for s in sql)
    names = [s.name for s in sql]
    assert names.count("INSERT things") == 2 and "SELECT things" in names and names[-1] == "SELECT"
    insert_span = next(s for s in sql if s.name == "INSERT things")
    assert dict(insert_span.attributes or {}) == {
        "db.system": "sqlite",
        "db.name": str(database),
        "db.operation": "INSERT",
        "db.sql.table": "things",
        "db.statement": "INSERT INTO things (id) VALUES (?)",
    }
    assert sql[-1].attributes is not None and sql[-1].attributes["db.statement"] == "SELECT count(*) FROM things"


async def test_a_failing_statement_ends_its_span_with_the_error(tmp_path: Path) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    try:
        with in_memory_telemetry("order-service") as captured:
            captured.telemetry.instrument_sqlalchemy(engine)
            with pytest.raises(OperationalError):
                async with engine.begin() as connection:
                    await connection.execute(text("SELECT * FROM missing_table"))
            captured.telemetry.shutdown()  # removes the listeners
            async with engine.begin() as connection:
                await connection.execute(text("SELECT 1"))
            spans = [s for s in captured.spans.get_finished_spans() if (s.attributes or {}).get("db.system")]
    finally:
        await engine.dispose()
    assert [s.name for s in spans] == ["SELECT"]
    assert spans[0].status.status_code is StatusCode.ERROR
    assert "no such table: missing_table" in (spans[0].status.description or "")
