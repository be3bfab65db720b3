"""e2e: the `production` collector profile (tail sampling) never drops a compensation, thins the
happy sagas to about the configured share, and samples no logs.

tools/run_e2e.py restarts the collector with profiles/production.yml, places a load of orders
with injected confirm failures (the ``confirm_failure`` fault: charge, then refund) and writes
every order's outcome to the file named by E2E_PRODUCTION_ORDERS:
``[{"order_id", "correlation_id", "status"}, ...]``. Each order is then looked up one by one.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_backends import ES, JAEGER, eventually, http_json, reachable, unavailable

PERCENTAGE = float(os.environ.get("TAIL_SAMPLING_PERCENTAGE", "10"))
SLOW_MS = float(os.environ.get("TAIL_SAMPLING_SLOW_MS", "2000"))
OTLP_STREAM = "logs-sagascope.otel-default"


@pytest.fixture(scope="module")
def orders() -> list[dict[str, str]]:
    path = os.environ.get("E2E_PRODUCTION_ORDERS", "")
    if not path or not Path(path).is_file():
        unavailable("E2E_PRODUCTION_ORDERS (the production-profile load's orders, from tools/run_e2e.py) is not set")
    loaded: list[dict[str, str]] = json.loads(Path(path).read_text())
    if not reachable(f"{JAEGER}/api/services"):
        unavailable(f"Jaeger query API not reachable at {JAEGER}")
    return loaded


def saga_traces(correlation_id: str) -> list[dict[str, Any]]:
    tags = urllib.parse.quote(json.dumps({"correlation_id": correlation_id}))
    body = http_json(f"{JAEGER}/api/traces?service=order-service&tags={tags}&limit=5&lookback=1h")
    return [t for t in body.get("data") or [] if any(s["operationName"] == "saga CreateOrder" for s in t["spans"])]


def test_the_load_had_compensations_and_happy_orders(orders: list[dict[str, str]]) -> None:
    statuses = [o["status"] for o in orders]
    assert len(orders) >= 200, len(orders)
    assert statuses.count("CANCELLED") >= 20 and statuses.count("COMPLETED") >= 100, statuses


def test_every_compensated_order_trace_is_kept(orders: list[dict[str, str]]) -> None:
    compensated = [o for o in orders if o["status"] == "CANCELLED"]
    found: dict[str, dict[str, Any]] = {}

    def probe() -> tuple[bool, Any]:
        missing = []
        for order in compensated:  # one by one: none may be missing (polled: a decision may be due)
            if order["order_id"] in found:
                continue
            traces = saga_traces(order["correlation_id"])
            if len(traces) == 1:
                found[order["order_id"]] = traces[0]
            else:
                missing.append((order["order_id"], order["correlation_id"], len(traces)))
        return not missing, {"compensated": len(compensated), "without exactly one trace": missing}

    eventually(probe, "a Jaeger trace for every compensated saga")
    for order in compensated:
        ops = [s["operationName"] for s in found[order["order_id"]]["spans"]]
        assert any(op.startswith("saga.compensate ") for op in ops), (order, ops)


def test_happy_orders_are_thinned_to_about_the_configured_share(orders: list[dict[str, str]]) -> None:
    happy = [o for o in orders if o["status"] == "COMPLETED"]
    kept = slow = 0
    for order in happy:
        traces = saga_traces(order["correlation_id"])
        if not traces:
            continue
        root_ms = max(s["duration"] for s in traces[0]["spans"]) / 1000
        if root_ms >= SLOW_MS:
            slow += 1  # kept for being slow, not by the baseline share
        else:
            kept += 1
    share = 100 * kept / max(1, len(happy) - slow)
    print(f"happy sagas kept: {kept} of {len(happy) - slow} ({share:.1f} %, configured {PERCENTAGE:g} %); slow: {slow}")
    # Binomial spread around the configured share (n ~ 170, p = 0.1: sd ~ 2.3 points).
    assert PERCENTAGE / 3 <= share <= PERCENTAGE * 2.5, (kept, len(happy), slow, share)


def test_every_order_has_its_logs_in_elasticsearch(orders: list[dict[str, str]]) -> None:
    """Logs are never sampled: each saga's saga.finished record is there, kept trace or not."""
    if not reachable(f"{ES}/_cluster/health"):
        unavailable(f"Elasticsearch not reachable at {ES}")
    wanted = {o["correlation_id"] for o in orders}
    body = {
        "size": 0,
        "query": {
            "bool": {
                "filter": [
                    {"terms": {"attributes.correlation_id": sorted(wanted)}},
                    {"term": {"attributes.event": "saga.finished"}},
                ]
            }
        },
        "aggs": {"sagas": {"terms": {"field": "attributes.correlation_id", "size": len(wanted) + 10}}},
    }

    def probe() -> tuple[bool, Any]:
        found = http_json(f"{ES}/{OTLP_STREAM}/_search", body)
        seen = {b["key"] for b in found["aggregations"]["sagas"]["buckets"]}
        return wanted <= seen, sorted(wanted - seen)

    eventually(probe, f"saga.finished records of all {len(wanted)} orders (missing listed)")
