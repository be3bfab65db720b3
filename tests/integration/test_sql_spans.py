"""SQL statement spans from opentelemetry-instrumentation-sqlalchemy against both databases: upstream's
scope, the statement text without values, the stable connection attributes."""

from __future__ import annotations

from sqlalchemy.engine import make_url

from sagascope.order.database import create_engine, migrate
from sagascope.order.repository import OrderReader
from tests.support.telemetry_testing import in_memory_telemetry

SQL_SCOPE = "opentelemetry.instrumentation.sqlalchemy"


async def test_the_order_read_is_one_upstream_statement_span_with_the_connection_attributes(
    database_url: str,
) -> None:
    await migrate(database_url)
    engine = create_engine(database_url)
    try:
        with in_memory_telemetry("order-service") as captured:
            captured.telemetry.instrument_sqlalchemy(engine)
            assert await OrderReader(engine).find_by_key("alice", "no-such-key") is None
            spans = [
                s
                for s in captured.spans.get_finished_spans()
                if s.instrumentation_scope.name == SQL_SCOPE and s.name != "connect"
            ]
    finally:
        await engine.dispose()
    (span,) = spans
    attributes = dict(span.attributes or {})
    query = str(attributes["db.query.text"])
    assert "FROM orders" in query and "alice" not in query  # bind parameters, never values
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        assert attributes["db.system.name"] == "postgresql"
        assert attributes["server.address"] == url.host and attributes["server.port"] == url.port
        assert attributes["db.namespace"] == url.database
        assert span.name == "SELECT"  # asyncpg's connection does not tell upstream the database name
    else:
        assert attributes["db.system.name"] == "sqlite" and "server.address" not in attributes
        assert span.name == f"SELECT {url.database}"  # upstream's "<operation> <database>"
    assert not {"db.system", "db.statement", "net.peer.name", "db.user"} & attributes.keys()
