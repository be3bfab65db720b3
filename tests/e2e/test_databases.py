"""e2e: the order database's own view, through the real Collector (profiles/postgresql.yml) into
Prometheus and Elasticsearch, after tools/run_e2e.py's load on PostgreSQL with
ORDER_SQL_COMMENTER=1:

- the receiver's metrics arrive in Prometheus under job="postgresql" with the order database's
  name (E2E_ORDER_DATABASE);
- every PromQL query of the Databases dashboard returns data, and its top-statements panel's
  Elasticsearch query finds records;
- the top-query records include the saga's one-statement write (the CTE ending in
  saga_guard(...)), and one of those statements leads, through a session sample with the same
  query id, to a trace id that Jaeger resolves.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from tests.e2e import queries
from tests.e2e.test_backends import ES, JAEGER, PROM, eventually, http_json, reachable, unavailable

DATABASE = os.environ.get("E2E_ORDER_DATABASE", "")
STREAM = "logs-sagascope.otel-default"
SAGA_WRITE = "saga_guard"  # every saga transition on PostgreSQL is one statement calling it


@pytest.fixture(scope="module")
def database() -> str:
    absent = os.environ.get("E2E_DATABASE_VIEW_ABSENT", "")
    if absent:  # a known limit of this collector build, said in the summary (-rs), not a pass
        pytest.skip(f"the database view is not checked: {absent}")
    if not DATABASE:
        unavailable("E2E_ORDER_DATABASE is not set: the order service did not run on PostgreSQL")
    for name, url in (("Prometheus", f"{PROM}/-/ready"), ("Elasticsearch", ES), ("Jaeger", f"{JAEGER}/api/services")):
        if not reachable(url):
            unavailable(f"{name} not reachable at {url}")
    return DATABASE


def _series(query: str) -> tuple[bool, Any]:
    body = http_json(f"{PROM}/api/v1/query", form={"query": query})
    return bool(body["data"]["result"]), body


def _records(event: str, size: int = 500) -> list[dict[str, Any]]:
    body = http_json(
        f"{ES}/{STREAM}/_search",
        {"size": size, "sort": [{"@timestamp": "desc"}], "query": {"term": {"event_name": event}}},
    )
    return [hit["_source"] for hit in body["hits"]["hits"]]


def _attr(doc: dict[str, Any], key: str) -> Any:
    """An attribute of an OTel-mapped document, whether ES returns it flat or nested."""
    attributes = doc.get("attributes", {})
    if key in attributes:
        return attributes[key]
    node: Any = attributes
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def test_the_receivers_metrics_arrive_with_the_order_databases_name(database: str) -> None:
    for metric in ("postgresql_commits_total", "postgresql_backends", "postgresql_db_size_bytes",
                   "postgresql_deadlocks_total", "postgresql_blks_hit_total"):
        body = eventually(lambda m=metric: _series(f'{m}{{job="postgresql",postgresql_database_name="{database}"}}'),
                          f"{metric} of database {database}")
        assert body["data"]["result"], metric
    tables = eventually(lambda: _series(f'postgresql_table_size_bytes{{postgresql_database_name="{database}"}}'),
                        "table sizes")
    names = {s["metric"].get("postgresql_table_name", "") for s in tables["data"]["result"]}
    assert any(name.endswith("saga_instances") for name in names), names
    assert eventually(lambda: _series("postgresql_connection_max"), "max_connections")["data"]["result"]


DATABASE_PANELS = [q for q in queries.dashboard_queries() if q.source.endswith("databases.json")]


@pytest.mark.parametrize("query", DATABASE_PANELS, ids=lambda q: f"{q.name}::{q.ref}")
def test_every_databases_panel_query_returns_data(database: str, query: queries.PromQuery) -> None:
    rendered = queries.render_promql(query.expr, {"__rate_interval": "5m", "__range": "1h", "database": ".*"})
    body = eventually(lambda: _series(rendered), f"{query.name} ({rendered})")
    assert body["data"]["result"], f"{query.name}: no data for {rendered}"


def test_the_top_statements_panels_records_are_in_elasticsearch(database: str) -> None:
    board = json.loads((queries.DASHBOARD_DIR / "databases.json").read_text())
    (panel,) = [p for p in board["panels"] if p["title"] == "Top statements by total time"]
    (target,) = panel["targets"]
    field = next(a["field"] for a in target["bucketAggs"] if a["id"] == "3")
    body = eventually(
        lambda: (
            bool((b := http_json(f"{ES}/{STREAM}/_search", {
                "size": 0,
                "query": {"query_string": {"query": target["query"]}},
                "aggs": {"by": {"terms": {"field": field, "size": 10},
                                "aggs": {"ms": {"sum": {"field": "attributes.postgresql.total_exec_time"}}}}},
            }))["aggregations"]["by"]["buckets"]),
            b,
        ),
        "top statements by total time",
    )
    buckets = body["aggregations"]["by"]["buckets"]
    assert any(bucket["ms"]["value"] > 0 for bucket in buckets), buckets


def test_the_sagas_one_statement_write_is_a_top_query_and_leads_to_its_trace(database: str) -> None:
    def saga_writes() -> tuple[bool, Any]:
        found = [d for d in _records("db.server.top_query")
                 if SAGA_WRITE in str(_attr(d, "db.query.text")) and _attr(d, "db.namespace") == database]
        return bool(found), found or _records("db.server.top_query", 5)

    writes = eventually(saga_writes, f"a db.server.top_query record of {SAGA_WRITE}(...) in {database}")
    assert all(float(_attr(d, "postgresql.total_exec_time") or 0) > 0 for d in writes), writes[:2]
    query_ids = {str(_attr(d, "postgresql.queryid")) for d in writes}

    def traced_samples() -> tuple[bool, Any]:
        samples = _records("db.server.query_sample", 1000)
        linked = [s for s in samples if s.get("trace_id") and str(_attr(s, "postgresql.query_id")) in query_ids]
        return bool(linked), linked or [{k: s.get(k) for k in ("trace_id", "attributes")} for s in samples[:5]]

    linked = eventually(traced_samples, "a session sample of a saga write carrying its trace id")
    trace_ids = list(dict.fromkeys(s["trace_id"] for s in linked))

    def resolves() -> tuple[bool, Any]:
        for trace_id in trace_ids[:10]:
            try:
                data = http_json(f"{JAEGER}/api/traces/{trace_id}")["data"]
            except AssertionError:  # 404 until Jaeger has it
                continue
            if data and any(s["operationName"] == "saga CreateOrder" for s in data[0]["spans"]):
                return True, data[0]["traceID"]
        return False, trace_ids[:10]

    eventually(resolves, "a trace of a sampled saga write in Jaeger (with its saga CreateOrder span)")
