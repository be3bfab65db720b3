"""The Saga overview's "Stuck sagas" table, run against a real PostgreSQL.

Grafana sends a SQL panel's text to PostgreSQL after replacing its macros and variables; this
panel uses none (checked here), so the SQL read from the committed dashboard JSON is exactly what
Grafana runs. On a fresh database migrated by the order service's own migrations, sagas are
written in every status; the query must return the unfinished ones only (RUNNING, COMPENSATING,
FAILED, PAUSED), oldest first, with the step's name, and the trace id taken from the stored W3C
traceparent — the value the panel's Jaeger link opens. The e2e stack runs no Grafana, so this is
the panel's proof (tests/e2e/test_backends.py says so for every SQL panel).
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from opentelemetry.trace import SpanContext, TraceFlags
from sqlalchemy import insert

from sagascope.order.database import create_engine, migrate
from sagascope.saga.store import saga_instances
from sagascope.saga.telemetry import traceparent_of
from tests.support import postgres

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "dashboards" / "saga-overview.json"
PANEL = "Stuck sagas"
DATASOURCE = {"type": "grafana-postgresql-datasource", "uid": "postgres"}

pytestmark = pytest.mark.timeout(180)


def panel(title: str = PANEL) -> dict[str, Any]:
    board = json.loads(DASHBOARD.read_text())
    (found,) = [p for p in board["panels"] if p["title"] == title]
    return dict(found)


def panel_sql() -> str:
    target = panel()["targets"][0]
    assert target["datasource"] == DATASOURCE and target["format"] == "table" and target["rawQuery"], target
    sql = str(target["rawSql"])
    # No $__timeFilter, $__timeFrom, $var: the text needs no substitution, Grafana runs it as it is.
    assert "$" not in sql and "[[" not in sql, "a Grafana macro or variable: substitute it here before running"
    return sql


def trace_id(n: int) -> int:
    return 0x0AF7651916CD43DD8448EB211C80319C + n


def row(
    saga_id: str,
    status: str,
    step_index: int,
    created_ago: float,
    now: float,
    *,
    attempts: int = 0,
    reason: str = "",
    next_attempt_in: float | None = None,
    traceparent: str = "",
) -> dict[str, Any]:
    return {
        "id": saga_id,
        "name": "CreateOrder",
        "status": status,
        "step_index": step_index,
        "step_started": 0,
        "state": json.dumps({"order_id": f"ord_{saga_id}"}),
        "failure_reason": reason,
        "failure_kind": "",
        "correlation_id": f"corr-{saga_id}",
        "traceparent": traceparent,
        "lease_owner": "order-1",
        "lease_expires_at": now - created_ago + 30,
        "attempts": attempts,
        "next_attempt_at": 0.0 if next_attempt_in is None else now + next_attempt_in,
        "created_at": now - created_ago,
        "updated_at": now - created_ago / 2,
    }


def traceparent(n: int) -> str:
    context = SpanContext(trace_id(n), 0x00F067AA0BA902B7 + n, is_remote=False, trace_flags=TraceFlags(1))
    value = traceparent_of(context)
    assert value is not None
    return value


async def test_stuck_sagas_query_lists_unfinished_sagas_oldest_first(pg_cluster: str) -> None:
    url = postgres.fresh_database(pg_cluster, f"panel_{uuid.uuid4().hex[:12]}")
    await migrate(url)
    now = time.time()
    rows = [
        row("s-done", "COMPLETED", 3, 900, now, traceparent=traceparent(0)),
        row("s-undone", "COMPENSATED", 0, 800, now, traceparent=traceparent(1)),
        row("s-parked", "FAILED", 1, 700, now, attempts=7, reason="compensate charge: UNAVAILABLE",
            next_attempt_in=40, traceparent=traceparent(2)),
        row("s-paused", "PAUSED", 1, 600, now, attempts=3, reason="compensate charge: UNAVAILABLE",
            traceparent=traceparent(3)),
        row("s-running", "RUNNING", 2, 120, now, traceparent=traceparent(4)),
        row("s-comp", "COMPENSATING", 1, 60, now, traceparent=traceparent(5)),
        # Written before traceparents were stored (or by a run without telemetry): no trace to link.
        row("s-untraced", "RUNNING", 0, 30, now),
    ]
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(saga_instances), rows)
    finally:
        await engine.dispose()

    connection = await asyncpg.connect(url)
    try:
        got = [dict(r) for r in await connection.fetch(panel_sql())]
    finally:
        await connection.close()

    assert [r["saga id"] for r in got] == ["s-parked", "s-paused", "s-running", "s-comp", "s-untraced"]
    by_id = {r["saga id"]: r for r in got}
    assert [by_id[s]["status"] for s in by_id] == ["FAILED", "PAUSED", "RUNNING", "COMPENSATING", "RUNNING"]
    assert [by_id[s]["step"] for s in by_id] == ["charge", "charge", "confirm", "charge", "reserve"]
    parked = by_id["s-parked"]
    assert parked["trace id"] == f"{trace_id(2):032x}"
    assert parked["correlation id"] == "corr-s-parked"
    assert parked["attempts"] == 7 and parked["last failure"] == "compensate charge: UNAVAILABLE"
    assert parked["lease owner"] == "order-1"
    assert abs(parked["next attempt"].timestamp() - (now + 40)) < 1
    assert abs(parked["started"].timestamp() - (now - 700)) < 1
    assert 699 <= float(parked["age"]) < 760 and 349 <= float(parked["idle"]) < 410
    assert by_id["s-running"]["trace id"] == f"{trace_id(4):032x}"
    assert by_id["s-paused"]["next attempt"] is None
    assert by_id["s-untraced"]["trace id"] is None


def test_the_panels_links_name_columns_the_query_returns() -> None:
    """The overrides (units, colours, the Jaeger and Kibana links) match columns by name; a renamed
    column would silently lose its link."""
    sql = panel_sql()
    matched = {o["matcher"]["options"] for o in panel()["fieldConfig"]["overrides"]}
    assert matched == {"age", "idle", "status", "trace id", "correlation id"}
    for name in matched - {"status"}:
        assert f'AS "{name}"' in sql, name
    links = {
        o["matcher"]["options"]: o["properties"][0]["value"]
        for o in panel()["fieldConfig"]["overrides"]
        if o["properties"][0]["id"] == "links"
    }
    assert links["trace id"][0]["internal"]["datasourceUid"] == "jaeger"
    kibana = links["correlation id"][0]["url"]
    assert kibana.startswith("http://localhost:5601/app/discover#/view/sagascope-saga-logs-by-correlation-id")
    assert "${__value.raw}" in kibana and links["correlation id"][1]["internal"]["datasourceUid"] == "elasticsearch"
