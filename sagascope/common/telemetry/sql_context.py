"""The trace context in what a PostgreSQL server sees of our statements (``ORDER_SQL_COMMENTER``).

Two carriers, because PostgreSQL's tools read two different places:

- the statement text: upstream's sqlcommenter (opentelemetry-instrumentation-sqlalchemy's
  ``enable_commenter``) appends ``/*traceparent='00-<trace>-<span>-01'*/`` to every statement.
  PostgreSQL's own logs (``log_min_duration_statement``, ``log_lock_waits``, auto_explain) and
  ``pg_stat_activity.query`` show it. ``pg_stat_statements`` groups by the parse tree, so the
  comment does not split an entry; the entry's stored text is its FIRST execution's, comment
  included. The collector's postgresql receiver obfuscates query texts, which drops comments.
- the session's ``application_name``: the postgresql receiver's query samples read the
  traceparent from ``pg_stat_activity.application_name`` and emit the sample with that trace
  context, so the record in Elasticsearch carries the statement's ``trace_id`` (receiver v0.157+,
  ``client.go``). It is set once per pool checkout, to the span active there (the saga step's,
  under its ``connect`` span), and put back when a checkout happens outside any trace.

What it costs: the comment makes every statement's text unique, so asyncpg's prepared-statement
cache never hits (one more round trip and a parse + plan per statement); the checkout adds one
``set_config`` round trip. Measured in docs/databases.md; hence off by default.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry import trace

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

# Only the trace context goes into the comment: the driver and framework names are the same on
# every statement and would only lengthen it.
COMMENTER_OPTIONS = {"db_driver": False, "db_framework": False, "opentelemetry_values": True}
_SET_APPLICATION_NAME = "SELECT set_config('application_name', $1, false)"
_TAGGED = "sagascope.application_name_traced"


def traceparent() -> str | None:
    """The W3C traceparent of the current span; None outside a trace. Upstream's ``connect`` span
    wraps every checkout: when it is a root (a checkout outside any request or saga), it starts
    a trace of its own that ties the session to nothing, so it counts as no trace."""
    span = trace.get_current_span()
    context = span.get_span_context()
    if not context.is_valid:
        return None
    if getattr(span, "name", "") == "connect" and getattr(span, "parent", None) is None:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def trace_application_name(engine: AsyncEngine, default_name: str) -> None:
    """Each pool checkout on PostgreSQL sets the session's ``application_name`` to the current
    traceparent (back to ``default_name`` on a checkout outside any span). SQLite: nothing."""
    if engine.dialect.name != "postgresql":
        return
    from sqlalchemy import event
    from sqlalchemy.util import await_only

    @event.listens_for(engine.sync_engine, "checkout")
    def _tag(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        value = traceparent()
        if value is None:
            if not record.info.get(_TAGGED):
                return  # never tagged: the connection still has the name it connected with
            value = default_name
        # The driver's own connection (asyncpg), outside any transaction SQLAlchemy manages: a
        # rollback later must not undo it. The same text each time, so its prepared statement
        # stays in asyncpg's cache.
        await_only(dbapi_connection.driver_connection.execute(_SET_APPLICATION_NAME, value))
        record.info[_TAGGED] = value != default_name
