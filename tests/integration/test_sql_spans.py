"""SQL statement spans against both databases: names, statement text without values, connection attributes."""

from __future__ import annotations

from sqlalchemy.engine import make_url

from sagascope.order.database import create_engine, migrate
from sagascope.order.repository import OrderReader
from tests.support.telemetry_testing import in_memory_telemetry


async def test_the_order_read_is_one_statement_span_with_the_connection_attributes(database_url: str) -> None:
    await migrate(database_url)
    engine = create_engine(database_url)
    try:
        with in_memory_telemetry("order-service") as captured:
            captured.telemetry.instrument_sqlalchemy(engine)
            assert await OrderReader(engine).find_by_key("alice", "no-such-key") is None
            spans = [s for s in captured.spans.get_finished_spans() if (s.attributes or {}).get("db.system")]
    finally:
        await engine.dispose()
    (span,) = spans
    attributes = dict(span.attributes or {})
    assert span.name == "SELECT orders"
    assert attributes["db.operation"] == "SELECT" and attributes["db.sql.table"] == "orders"
    assert "FROM orders" in str(attributes["db.statement"]) and "alice" not in str(attributes["db.statement"])
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        assert attributes["db.system"] == "postgresql"
        assert attributes["net.peer.name"] == url.host and attributes["net.peer.port"] == url.port
        assert attributes["db.name"] == url.database and attributes["db.user"] == url.username
    else:
        assert attributes["db.system"] == "sqlite" and "net.peer.name" not in attributes
