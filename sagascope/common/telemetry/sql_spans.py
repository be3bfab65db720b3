"""One CLIENT span per SQL statement, from SQLAlchemy's cursor events.

Same spans and attributes as opentelemetry-instrumentation-sqlalchemy (its
default, pre-1.26 database conventions: ``db.system``, ``db.name``,
``db.user``, ``db.statement``, ``db.operation``, ``net.peer.name``,
``net.peer.port``), plus ``db.sql.table``, for about a third of its CPU.
Written here because that library, profiled under the saga benchmark, cost
~1 ms per saga for six statements (a tenth of the order process): it re-derives
the URL attributes and the operation name on every statement, sets each
attribute through its own lock, attaches a context it never uses, and opens an
extra ``connect`` span for every pool checkout. Here the URL attributes are
worked out once per engine, the name and table once per distinct statement
text (statements are compiled once with bind parameters, so there are a
handful), and the span starts with all of its attributes in one go.

The span is named ``<operation> <table>`` (``INSERT saga_instances``), the
newer conventions' ``{db.operation.name} {target}``, so a trace reads without
opening each span; hand-written SQL without one table is named by its
operation alone.
"""

from __future__ import annotations

import re
from typing import Any

from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from sqlalchemy import event
from sqlalchemy.engine import Engine

_SPAN = "_sagascope_sql_span"
_LEADING_COMMENTS = re.compile(r"^\s*(?:--[^\n]*\n|/\*.*?\*/)*\s*", re.DOTALL)
_MAX_CACHED_STATEMENTS = 512


def _url_attributes(engine: Engine) -> dict[str, Any]:
    url = engine.url
    attributes: dict[str, Any] = {"db.system": engine.name}
    if url.host:
        attributes["net.peer.name"] = url.host
    if url.port:
        attributes["net.peer.port"] = url.port
    if url.database:
        attributes["db.name"] = url.database
    if url.username:
        attributes["db.user"] = url.username
    return attributes


def _table_of(context: Any) -> str | None:
    """The one table a Core/ORM statement works on, when it has exactly one."""
    compiled = getattr(context, "compiled", None)
    statement = getattr(compiled, "statement", None)
    table = getattr(statement, "table", None)  # INSERT / UPDATE / DELETE
    if table is None:
        froms = getattr(statement, "get_final_froms", None)
        tables = froms() if callable(froms) else []
        table = tables[0] if len(tables) == 1 else None
    name = getattr(table, "name", None)
    return name if isinstance(name, str) else None


class SqlStatementSpans:
    """Listens on ``engine`` (a sync Engine; an AsyncEngine's ``.sync_engine``) until :meth:`remove`."""

    def __init__(self, engine: Engine, tracer: Tracer) -> None:
        self.engine = engine
        self._tracer = tracer
        self._base = _url_attributes(engine)
        # statement text -> (span name, attributes without db.statement)
        self._shapes: dict[str, tuple[str, dict[str, Any]]] = {}
        event.listen(engine, "before_cursor_execute", self._before, retval=True)
        event.listen(engine, "after_cursor_execute", self._after)
        event.listen(engine, "handle_error", self._error)

    def remove(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._before)
        event.remove(self.engine, "after_cursor_execute", self._after)
        event.remove(self.engine, "handle_error", self._error)

    def _shape(self, statement: str, context: Any) -> tuple[str, dict[str, Any]]:
        shape = self._shapes.get(statement)
        if shape is None:
            words = _LEADING_COMMENTS.sub("", statement, count=1).split(maxsplit=1)
            operation = words[0].upper() if words else ""
            table = _table_of(context)
            attributes = dict(self._base)
            if operation:
                attributes["db.operation"] = operation
            if table:
                attributes["db.sql.table"] = table
            name = f"{operation} {table}" if operation and table else operation or self.engine.name
            shape = (name, attributes)
            if len(self._shapes) >= _MAX_CACHED_STATEMENTS:  # hand-written SQL with literals inlined
                self._shapes.clear()
            self._shapes[statement] = shape
        return shape

    def _before(
        self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> tuple[str, Any]:
        name, attributes = self._shape(statement, context)
        span = self._tracer.start_span(
            name, kind=SpanKind.CLIENT, attributes={**attributes, "db.statement": statement}
        )
        if context is not None:
            setattr(context, _SPAN, span)
        else:  # DBAPI-level execution without an execution context: nothing to end it on
            span.end()
        return statement, parameters

    def _after(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        span = getattr(context, _SPAN, None)
        if span is not None:
            setattr(context, _SPAN, None)
            span.end()

    def _error(self, exception_context: Any) -> None:
        span = getattr(exception_context.execution_context, _SPAN, None)
        if span is not None:
            setattr(exception_context.execution_context, _SPAN, None)
            if span.is_recording():
                span.set_status(Status(StatusCode.ERROR, str(exception_context.original_exception)))
            span.end()
