"""Auto-instrumentation wired by Telemetry: SQL spans under the caller's span."""

from __future__ import annotations

from pathlib import Path

from opentelemetry import trace
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.telemetry_testing import in_memory_telemetry


async def test_sqlalchemy_async_engine_statements_become_child_spans(tmp_path: Path) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    try:
        with in_memory_telemetry("order-service") as captured:
            captured.telemetry.instrument_sqlalchemy(engine)
            tracer = trace.get_tracer("t", tracer_provider=captured.telemetry.tracer_provider)
            with tracer.start_as_current_span("saga.step reserve") as step:
                async with engine.begin() as connection:
                    await connection.execute(text("CREATE TABLE t (id INTEGER)"))
                    await connection.execute(text("SELECT count(*) FROM t"))
    finally:
        await engine.dispose()
    sql = [span for span in captured.spans.get_finished_spans() if (span.attributes or {}).get("db.system")]
    assert len(sql) >= 2
    assert all(span.parent is not None and span.parent.span_id == step.get_span_context().span_id for span in sql)
    assert any("SELECT count(*) FROM t" in str((span.attributes or {}).get("db.statement")) for span in sql)
