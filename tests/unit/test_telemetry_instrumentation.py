"""SQL statement spans from opentelemetry-instrumentation-sqlalchemy, wired by Telemetry: under the
caller's span, with the stable database conventions, and gone again after shutdown."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Decision
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import Column, Integer, MetaData, Table, insert, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import create_async_engine

from sagascope.common.telemetry import TelemetrySettings
from sagascope.common.telemetry.instrumentation import DEFAULT_SEMCONV_OPT_IN, SEMCONV_OPT_IN, default_semconv_opt_in
from sagascope.common.telemetry.tracing import WithoutPoolCheckoutSpans
from tests.support.telemetry_testing import in_memory_telemetry

SQL_SCOPE = "opentelemetry.instrumentation.sqlalchemy"

_metadata = MetaData()
_things = Table("things", _metadata, Column("id", Integer, primary_key=True))


def _statements(spans):  # type: ignore[no-untyped-def]
    return [s for s in spans if s.instrumentation_scope.name == SQL_SCOPE and s.name != "connect"]


async def test_each_statement_is_an_upstream_client_span_under_the_callers_span(tmp_path: Path) -> None:
    database = tmp_path / "x.db"
    engine = create_async_engine(f"sqlite+aiosqlite:///{database}")
    try:
        with in_memory_telemetry("order-service") as captured:
            captured.telemetry.instrument_sqlalchemy(engine)
            tracer = trace.get_tracer("t", tracer_provider=captured.telemetry.tracer_provider)
            with tracer.start_as_current_span("saga.step reserve") as step:
                async with engine.begin() as connection:
                    await connection.run_sync(_metadata.create_all)
                    await connection.execute(insert(_things).values(id=1))
                    await connection.execute(select(_things.c.id))
            sql = _statements(captured.spans.get_finished_spans())
    finally:
        await engine.dispose()
    assert sql, "no statement spans: is the installed SQLAlchemy in the instrumentation's supported range?"
    assert all(s.parent is not None and s.parent.span_id == step.get_span_context().span_id for s in sql)
    assert all(s.kind is SpanKind.CLIENT for s in sql)
    insert_span = next(s for s in sql if s.name.startswith("INSERT"))
    # Upstream names a statement "<first word> <database>", and puts the same in db.operation.name.
    assert insert_span.name == f"INSERT {database}"
    attributes = dict(insert_span.attributes or {})
    assert attributes["db.system.name"] == "sqlite" and attributes["db.namespace"] == str(database)
    assert attributes["db.query.text"] == "INSERT INTO things (id) VALUES (?)"  # bind parameters, no values
    assert not {"db.system", "db.statement", "db.name", "db.operation"} & attributes.keys()  # the old names


async def test_a_failing_statement_ends_its_span_with_the_error_and_shutdown_removes_the_listeners(
    tmp_path: Path,
) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    try:
        with in_memory_telemetry("order-service") as captured:
            captured.telemetry.instrument_sqlalchemy(engine)
            with pytest.raises(OperationalError):
                async with engine.begin() as connection:
                    await connection.execute(text("SELECT * FROM missing_table"))
            captured.telemetry.shutdown()  # uninstruments
            async with engine.begin() as connection:
                await connection.execute(text("SELECT 1"))
            spans = _statements(captured.spans.get_finished_spans())
    finally:
        await engine.dispose()
    assert [s.name.split()[0] for s in spans] == ["SELECT"]
    assert spans[0].status.status_code is StatusCode.ERROR
    assert "no such table: missing_table" in (spans[0].status.description or "")


async def _spans_of_two_checkouts(tmp_path: Path, settings: TelemetrySettings) -> list[ReadableSpan]:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    try:
        with in_memory_telemetry("order-service", settings) as captured:
            captured.telemetry.instrument_sqlalchemy(engine)
            tracer = trace.get_tracer("t", tracer_provider=captured.telemetry.tracer_provider)
            with tracer.start_as_current_span("saga.step reserve"):
                for _ in range(2):
                    async with engine.connect() as connection:
                        await connection.execute(text("SELECT 1"))
            return list(captured.spans.get_finished_spans())
    finally:
        await engine.dispose()


async def test_pool_checkouts_are_not_spans_unless_asked_and_statements_still_are(tmp_path: Path) -> None:
    spans = await _spans_of_two_checkouts(tmp_path, TelemetrySettings())
    step = next(s for s in spans if s.name == "saga.step reserve")
    assert [s.name for s in spans if s.instrumentation_scope.name == SQL_SCOPE] == [f"SELECT {tmp_path / 'x.db'}"] * 2
    assert all(s.parent is not None and s.parent.span_id == step.context.span_id for s in spans if s is not step)

    kept = await _spans_of_two_checkouts(tmp_path, TelemetrySettings(sql_connect_spans=True))
    connects = [s for s in kept if s.name == "connect"]
    assert len(connects) == 2 and all(s.instrumentation_scope.name == SQL_SCOPE for s in connects)
    assert all(s.kind is SpanKind.CLIENT and s.attributes["db.system.name"] == "sqlite" for s in connects)


def test_the_pool_checkout_filter_defers_everything_else_to_the_configured_sampler() -> None:
    on, off = WithoutPoolCheckoutSpans(ALWAYS_ON), WithoutPoolCheckoutSpans(ALWAYS_OFF)
    assert on.should_sample(None, 1, "connect", SpanKind.CLIENT).decision is Decision.DROP
    assert on.should_sample(None, 1, "connect", SpanKind.INTERNAL).decision is Decision.RECORD_AND_SAMPLE
    assert on.should_sample(None, 1, "SELECT orders", SpanKind.CLIENT).decision is Decision.RECORD_AND_SAMPLE
    assert off.should_sample(None, 1, "SELECT orders", SpanKind.CLIENT).decision is Decision.DROP
    assert on.get_description() == "WithoutPoolCheckoutSpans{AlwaysOnSampler}"


def test_the_stable_conventions_are_the_default_unless_the_user_chose(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SEMCONV_OPT_IN, raising=False)
    default_semconv_opt_in()
    assert os.environ[SEMCONV_OPT_IN] == DEFAULT_SEMCONV_OPT_IN == "database,http"
    monkeypatch.setenv(SEMCONV_OPT_IN, "database/dup")
    default_semconv_opt_in()
    assert os.environ[SEMCONV_OPT_IN] == "database/dup"
