"""e2e: every signal goes through the Collector, and what it derives from traces lands in Prometheus.

Run by ``make e2e`` (tools/run_e2e.py) against the base collector config plus the e2e overlay
``collector-filelog-compare.yml``, which sends the services' JSON lines through the file_log
receiver into a second data stream beside the OTLP records, so the two log paths can be compared
for the same saga.
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
from typing import Any

import pytest

from sagascope.local.topology import COLLECTOR, IDENTITY, ORDER, PAYMENT
from tests.e2e.test_backends import ES, JAEGER, PROM, REPO, eventually, http_json, reachable, unavailable

CREATE_ORDER = "/sagascope.orders.v1.OrderService/CreateOrder"
PROCESS_PAYMENT = "/sagascope.payments.v1.PaymentService/ProcessPayment"
OTLP_STREAM = "logs-sagascope.otel-default"
FILELOG_STREAM = "logs-sagascope.otel-filelog"
# Resource attributes the SDK sets about itself and the process; a JSON line does not carry them.
SDK_ONLY_FIELDS = frozenset(
    {
        "resource.attributes.telemetry.sdk.language",
        "resource.attributes.telemetry.sdk.name",
        "resource.attributes.telemetry.sdk.version",
        "resource.attributes.service.version",
        "resource.attributes.deployment.environment",
        "resource.attributes.service.instance.id",
    }
)
# Differ by design: when each path read the record, and which data stream it went to. (@timestamp
# is compared to the millisecond, the JSON line's precision.)
PER_PATH_FIELDS = frozenset({"observed_timestamp", "data_stream.namespace", "@timestamp"})


@pytest.fixture(scope="module")
def prometheus() -> str:
    if not reachable(f"{PROM}/-/ready"):
        unavailable(f"Prometheus not reachable at {PROM}")
    return PROM


def promql(prometheus: str, query: str) -> list[dict[str, Any]]:
    body = http_json(f"{prometheus}/api/v1/query", form={"query": query})
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def eventually_series(prometheus: str, query: str, what: str) -> list[dict[str, Any]]:
    """Series for ``query`` with a non-zero value (a connector's first flush of a series is 0)."""

    def probe() -> tuple[bool, Any]:
        result = promql(prometheus, query)
        return any(float(s["value"][1]) > 0 for s in result), result

    return list(eventually(probe, f"{what} ({query})"))


# --- metrics through the collector --------------------------------------------------------------


def test_prometheus_scrapes_the_collector_not_the_services(prometheus: str) -> None:
    targets = http_json(f"{prometheus}/api/v1/targets")["data"]["activeTargets"]
    jobs = {t["labels"]["job"] for t in targets}
    assert jobs == {"otel-collector", "prometheus"}, json.dumps(targets)[:3000]
    service_ports = {IDENTITY.metrics.default, ORDER.metrics.default, PAYMENT.metrics.default}
    scraped = {urllib.parse.urlsplit(t["scrapeUrl"]).port for t in targets}
    assert not scraped & service_ports, f"Prometheus scrapes a service directly: {scraped}"
    collector = next(t for t in targets if t["labels"]["job"] == "otel-collector")
    assert collector["health"] == "up" and f":{COLLECTOR.metrics.port}/" in collector["scrapeUrl"], collector


def test_saga_metrics_arrive_by_remote_write_with_their_job_and_instance(prometheus: str) -> None:
    """The series keep the labels the dashboards and rules use: job is the service, instance its
    /metrics address (service.name / service.instance.id in the collector, and back)."""
    result = eventually_series(prometheus, "saga_finished_total", "saga_finished_total from the collector")
    labels = {(s["metric"]["job"], s["metric"].get("instance")) for s in result}
    assert ("order-service", f"127.0.0.1:{ORDER.metrics.default}") in labels, labels
    # What the collector's own telemetry says: it scraped the services and sent the points on.
    # (the collector's own metric names carry no _total in v0.158: otelcol_receiver_accepted_metric_points)
    received = promql(
        prometheus, 'sum({__name__=~"otelcol_receiver_accepted_metric_points(_total)?", receiver="prometheus"})'
    )
    sent = promql(
        prometheus,
        'sum({__name__=~"otelcol_exporter_sent_metric_points(_total)?", exporter="prometheus_remote_write"})',
    )
    assert received and float(received[0]["value"][1]) > 0, received
    assert sent and float(sent[0]["value"][1]) > 0, sent
    # The services' scrape health comes through as well (the receiver's `up`).
    up = promql(prometheus, 'up{job=~"identity-service|order-service|payment-service"}')
    assert {s["metric"]["job"] for s in up if s["value"][1] == "1"} == {
        "identity-service",
        "order-service",
        "payment-service",
    }, up


def test_an_exemplar_trace_id_resolves_in_jaeger(prometheus: str) -> None:
    now = time.time()
    body = http_json(
        f"{prometheus}/api/v1/query_exemplars?"
        + urllib.parse.urlencode({"query": "saga_duration_seconds_bucket", "start": now - 3600, "end": now})
    )
    exemplars = [e for series in body["data"] for e in series["exemplars"]]
    assert exemplars, f"no exemplars on saga_duration_seconds after the collector hop: {body}"
    trace_id = exemplars[-1]["labels"]["trace_id"]

    def probe() -> tuple[bool, Any]:
        try:
            found = http_json(f"{JAEGER}/api/traces/{trace_id}")
        except AssertionError as exc:  # 404 until the trace is there
            return False, str(exc)
        return bool(found.get("data")), found

    trace = eventually(probe, f"Jaeger trace {trace_id} (from a saga_duration_seconds exemplar)")["data"][0]
    assert any(s["operationName"] == "saga CreateOrder" for s in trace["spans"]), [
        s["operationName"] for s in trace["spans"]
    ]


# --- derived from traces ------------------------------------------------------------------------


def test_service_graph_has_the_order_to_payment_edge_and_the_databases(prometheus: str) -> None:
    eventually_series(
        prometheus,
        'traces_service_graph_request_total{client="order-service",server="payment-service"}',
        "the order -> payment edge",
    )
    edges = promql(prometheus, "sum by (client, server, connection_type) (traces_service_graph_request_total)")
    found = {(e["metric"]["client"], e["metric"]["server"], e["metric"].get("connection_type", "")) for e in edges}
    # the order database's node is named by db.system.name: postgresql in make e2e, sqlite locally by default
    order_db = os.environ.get("E2E_ORDER_DB_SYSTEM", "sqlite")
    assert ("order-service", order_db, "database") in found, found
    assert ("payment-service", "mongodb", "database") in found, found
    latency = promql(prometheus, "traces_service_graph_request_server_seconds_bucket")
    assert latency, "no service graph latency histogram"


def test_write_down_the_derived_series_as_they_land(prometheus: str) -> None:
    """Not a check: the label sets of the derived metrics, for docs/observability.md and dashboards
    (var/e2e/derived-metrics.json)."""
    series = http_json(
        f"{prometheus}/api/v1/series?"
        + urllib.parse.urlencode({"match[]": '{__name__=~"traces_(span_metrics|service_graph)_.*"}'})
    )["data"]
    out = REPO / "var" / "e2e" / "derived-metrics.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(sorted(series, key=lambda s: json.dumps(s, sort_keys=True)), indent=1))
    assert series


@pytest.mark.parametrize(("service", "span"), [("order-service", CREATE_ORDER), ("payment-service", PROCESS_PAYMENT)])
def test_span_metrics_exist_for_the_saga_calls(prometheus: str, service: str, span: str) -> None:
    selector = f'service_name="{service}",span_name="{span}",span_kind="SPAN_KIND_SERVER"'
    calls = eventually_series(prometheus, f"traces_span_metrics_calls_total{{{selector}}}", f"calls of {span}")
    assert sum(float(s["value"][1]) for s in calls) > 0, calls
    duration = promql(prometheus, f"traces_span_metrics_duration_seconds_bucket{{{selector}}}")
    assert duration, f"no traces_span_metrics_duration_seconds for {span}"


# --- both log paths, same documents -------------------------------------------------------------


def _flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _comparable(source: dict[str, Any]) -> dict[str, Any]:
    flat = _flatten(source)
    return {k: v for k, v in flat.items() if k not in SDK_ONLY_FIELDS and k not in PER_PATH_FIELDS}


def _stream_docs(stream: str, correlation_id: str) -> list[dict[str, Any]]:
    body = {
        "query": {"term": {"attributes.correlation_id": correlation_id}},
        "sort": [{"@timestamp": "asc"}],
        "size": 500,
    }
    found = http_json(f"{ES}/{stream}/_search", body)
    return [h["_source"] for h in found["hits"]["hits"]]


def test_both_log_paths_land_the_same_documents(correlation_id: str) -> None:
    if not reachable(f"{ES}/_cluster/health"):
        unavailable(f"Elasticsearch not reachable at {ES}")

    def probe() -> tuple[bool, Any]:
        otlp, filelog = _stream_docs(OTLP_STREAM, correlation_id), _stream_docs(FILELOG_STREAM, correlation_id)
        finished = [d for d in filelog if d.get("attributes", {}).get("event") == "saga.finished"]
        return bool(otlp) and len(filelog) == len(otlp) and bool(finished), {"otlp": otlp, "filelog": filelog}

    both = eventually(probe, f"the saga {correlation_id}'s records in both {OTLP_STREAM} and {FILELOG_STREAM}")
    otlp = sorted((_comparable(d) for d in both["otlp"]), key=lambda d: json.dumps(d, sort_keys=True))
    filelog = sorted((_comparable(d) for d in both["filelog"]), key=lambda d: json.dumps(d, sort_keys=True))
    assert {d["resource.attributes.service.name"] for d in otlp} >= {"order-service", "payment-service"}
    for a, b in zip(otlp, filelog, strict=True):
        differing = {k: (a.get(k), b.get(k)) for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
        assert not differing, f"OTLP vs file_log document differs in {differing}\nOTLP: {a}\nfile_log: {b}"
    # The exporter writes @timestamp as "<epoch ms>.<ns>"; the line has milliseconds (truncated
    # on both sides, so at most a float rounding apart).
    millis = sorted((_millis(d), d["span_id"] if "span_id" in d else "") for d in both["otlp"])
    line_millis = sorted((_millis(d), d["span_id"] if "span_id" in d else "") for d in both["filelog"])
    assert all(abs(a[0] - b[0]) <= 1 for a, b in zip(millis, line_millis, strict=True)), (millis, line_millis)


def _millis(doc: dict[str, Any]) -> int:
    return int(str(doc["@timestamp"]).split(".")[0])
