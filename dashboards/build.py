"""Grafana dashboards as typed code (grafana-foundation-sdk): writes dashboards/*.json.

    python dashboards/build.py           # regenerate the committed JSON
    python dashboards/build.py --check   # exit 1 when the JSON drifted from this file

One function per dashboard; the SDK's builders follow Grafana's own schema, so a panel option
Grafana would reject does not type-check. Datasource uids are fixed by
observability/grafana/provisioning (exemplars link to Jaeger through the Prometheus one). The
one SQL panel ("Stuck sagas") reads the saga log through the PostgreSQL datasource; its query is
run against a real PostgreSQL by tests/integration/test_stuck_sagas_panel.py.
The SDK line is pinned in pyproject.toml to the newest schema Grafana in compose reads.
"""

# ruff: noqa: E501  (PromQL strings read better on one line)
from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, cast

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import elasticsearch as es
from grafana_foundation_sdk.builders import nodegraph, prometheus, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.elasticsearch import TermsOrder
from grafana_foundation_sdk.models.prometheus import PromQueryFormat, QueryEditorMode

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PROMETHEUS = model.DataSourceRef(type_val="prometheus", uid="prometheus")
# The saga log itself (observability/grafana/provisioning/datasources/datasources.yml).
POSTGRES = model.DataSourceRef(type_val="grafana-postgresql-datasource", uid="postgres")
JAEGER_UID, ELASTICSEARCH_UID = "jaeger", "elasticsearch"
ELASTICSEARCH = model.DataSourceRef(type_val="elasticsearch", uid=ELASTICSEARCH_UID)
# Where a browser reaches the UIs in compose and through kubectl port-forward (as the Kibana
# index pattern's trace_id link does for Jaeger: observability/elk/kibana/saved-objects.ndjson).
KIBANA_URL, JAEGER_URL = "http://localhost:5601", "http://localhost:16686"
KIBANA_OBJECTS = REPO / "observability" / "elk" / "kibana" / "saved-objects.ndjson"
GRPC_SERVER_ERRORS = 'grpc_code=~"UNKNOWN|DEADLINE_EXCEEDED|RESOURCE_EXHAUSTED|ABORTED|UNIMPLEMENTED|INTERNAL|UNAVAILABLE|DATA_LOSS|CANCELLED"'

PanelT = TypeVar("PanelT", timeseries.Panel, stat.Panel, statetimeline.Panel, nodegraph.Panel, table.Panel)


# --- building blocks ---------------------------------------------------------------------------


def query(expr: str, legend: str = "__auto", exemplar: bool = False, table: bool = False) -> prometheus.Dataquery:
    q = prometheus.Dataquery().expr(expr).legend_format(legend).editor_mode(QueryEditorMode.CODE).datasource(PROMETHEUS)
    if table:  # an instant table (the node graph reads fields, not series)
        return q.instant().format(PromQueryFormat.TABLE)
    return q.range().exemplar(exemplar)


def thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    return dash.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(
        [model.Threshold(value=value, color=color) for value, color in steps]
    )


GREEN = thresholds((None, "green"))


@dataclass
class Cell:
    """A panel and its size; :func:`board` lays cells out left to right, row by row."""

    panel: timeseries.Panel | stat.Panel | statetimeline.Panel | nodegraph.Panel | table.Panel
    width: int = 12
    height: int = 8


def series(
    title: str,
    queries: Sequence[prometheus.Dataquery],
    unit: str = "short",
    description: str = "",
    steps: dash.ThresholdsConfig = GREEN,
    min_: float | None = None,
    max_: float | None = None,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .unit(unit)
        .thresholds(steps)
        .legend(common_b.VizLegendOptions().display_mode(common.LegendDisplayMode.LIST).placement(common.LegendPlacement.BOTTOM).show_legend(True))
    )
    if min_ is not None:
        panel = panel.min(min_)
    if max_ is not None:
        panel = panel.max(max_)
    return with_targets(panel, queries)


def with_targets(panel: PanelT, queries: Sequence[prometheus.Dataquery]) -> PanelT:
    """Targets get refIds A, B, ... unless they name their own."""
    for index, q in enumerate(queries):
        if not q.build().ref_id:
            q = q.ref_id(chr(ord("A") + index))
        panel = panel.with_target(q)
    return panel


def single(title: str, expr: str, legend: str, description: str = "", steps: dash.ThresholdsConfig = GREEN, unit: str = "short") -> stat.Panel:
    return with_targets(
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .unit(unit)
        .thresholds(steps)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False)),
        [query(expr, legend)],
    )


def variable(name: str, label: str, definition: str) -> dash.QueryVariable:
    return (
        dash.QueryVariable(name)
        .label(label)
        .datasource(PROMETHEUS)
        .query(definition)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .include_all(True)
        .multi(True)
        .all_value(".*")
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .current(model.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )


def board(uid: str, title: str, description: str, cells: Sequence[Cell], variables: Sequence[dash.QueryVariable] = ()) -> model.Dashboard:
    builder = (
        dash.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["sagascope"])
        .timezone("browser")
        .editable()
        .readonly()
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .refresh("10s")
        .time("now-30m", "now")
        .version(1)
        .link(
            dash.DashboardLink("sagascope")
            .type(model.DashboardLinkType.DASHBOARDS)
            .tags(["sagascope"])
            .as_dropdown(False)
            .include_vars(False)
            .keep_time(True)
        )
    )
    for v in variables:
        builder = builder.with_variable(v)
    x = y = row_height = 0
    for pid, cell in enumerate(cells, start=1):
        if x + cell.width > 24:
            x, y, row_height = 0, y + row_height, 0
        builder = builder.with_panel(cell.panel.id(pid).grid_pos(model.GridPos(h=cell.height, w=cell.width, x=x, y=y)))
        x += cell.width
        row_height = max(row_height, cell.height)
    return builder.build()


def quantiles(metric: str, by: str, selector: str, legend_prefix: str, exemplar: bool) -> list[prometheus.Dataquery]:
    group = f"le, {by}" if by else "le"
    suffix = f" {{{{{by}}}}}" if by and "," not in by else ""
    return [
        query(
            f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{{{selector}}}[$__rate_interval])))",
            f"{legend_prefix}p{int(q * 100)}{suffix}",
            exemplar=exemplar,
        )
        for q in (0.5, 0.95, 0.99)
    ]



# --- the saga log, through the PostgreSQL datasource ---------------------------------------------


@dataclass(frozen=True)
class SqlQuery(cogvariants.Dataquery):
    """A target of Grafana's PostgreSQL datasource (the SDK has no builder for it): raw SQL in code
    mode, returned as a table."""

    raw_sql: str
    ref_id: str = "A"

    def to_json(self) -> dict[str, object]:
        return {
            "datasource": POSTGRES.to_json(),
            "editorMode": "code",
            "format": "table",
            "rawQuery": True,
            "rawSql": self.raw_sql,
            "refId": self.ref_id,
        }


class Sql(cogbuilder.Builder[SqlQuery]):
    def __init__(self, raw_sql: str) -> None:
        self._query = SqlQuery(raw_sql)

    def build(self) -> SqlQuery:
        return self._query


def saga_steps() -> dict[str, list[str]]:
    """Step names by saga, from the saga definitions (the saga log stores the step's index)."""
    from sagascope.common.faults import FaultInjector
    from sagascope.order.payment_client import PaymentParticipant
    from sagascope.order.saga import OrderSagaSteps, create_order_saga

    # Only the declaration is read, no step runs: the steps object needs no participant or faults.
    definition = create_order_saga(OrderSagaSteps(cast(PaymentParticipant, None), cast(FaultInjector, None)))
    return {definition.name: [step.name for step in definition.steps]}


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# The statuses of a saga that has not finished (sagascope/saga/store.py; PAUSED: set by an operator).
UNFINISHED_STATUSES = ("RUNNING", "COMPENSATING", "FAILED", "PAUSED")


def stuck_sagas_sql(steps: Mapping[str, Sequence[str]]) -> str:
    """Unfinished sagas, oldest first, with what an operator needs to pick one: no Grafana macro,
    so the text in the dashboard is exactly what PostgreSQL runs. Times in the saga log are Unix
    seconds; the trace id is the second field of the stored W3C traceparent."""
    step_name = "CASE name " + " ".join(
        f"WHEN {_sql_text(saga)} THEN (ARRAY[{', '.join(_sql_text(s) for s in names)}])[step_index + 1]"
        for saga, names in sorted(steps.items())
    ) + " END"
    statuses = ", ".join(_sql_text(s) for s in UNFINISHED_STATUSES)
    return (
        "SELECT\n"
        "  to_timestamp(created_at) AS \"started\",\n"
        "  round((extract(epoch FROM now()) - created_at)::numeric, 1) AS \"age\",\n"
        "  round((extract(epoch FROM now()) - updated_at)::numeric, 1) AS \"idle\",\n"
        "  status,\n"
        "  name AS \"saga\",\n"
        f"  coalesce({step_name}, step_index::text) AS \"step\",\n"
        "  attempts,\n"
        "  failure_reason AS \"last failure\",\n"
        "  CASE WHEN next_attempt_at > 0 THEN to_timestamp(next_attempt_at) END AS \"next attempt\",\n"
        "  lease_owner AS \"lease owner\",\n"
        "  id AS \"saga id\",\n"
        "  correlation_id AS \"correlation id\",\n"
        "  nullif(split_part(traceparent, '-', 2), '') AS \"trace id\"\n"
        "FROM saga_instances\n"
        f"WHERE status IN ({statuses})\n"
        "ORDER BY created_at, id\n"
        "LIMIT 100"
    )


def saved_search_id(title: str) -> str:
    """The id of the Kibana saved search we ship under ``title`` (so a renamed search breaks the build)."""
    for line in KIBANA_OBJECTS.read_text().splitlines():
        obj = json.loads(line) if line.strip() else {}
        if obj.get("type") == "search" and obj["attributes"]["title"] == title:
            return str(obj["id"])
    raise LookupError(f"no Kibana saved search titled {title!r} in {KIBANA_OBJECTS}")


def kibana_logs_url(correlation_id: str) -> str:
    """Kibana Discover on the "Saga logs by correlation_id" search, filtered to one id (KQL, rison)."""
    kql = urllib.parse.quote(f'attributes.correlation_id : "{correlation_id}"', safe="${}._:")
    return (
        f"{KIBANA_URL}/app/discover#/view/{saved_search_id('Saga logs by correlation_id')}"
        f"?_g=(time:(from:now-7d,to:now))&_a=(query:(language:kuery,query:'{kql}'))"
    )


def links(*items: dict[str, object]) -> list[model.DynamicConfigValue]:
    return [model.DynamicConfigValue(id_val="links", value=list(items))]


def stuck_sagas() -> table.Panel:
    value = "${__value.raw}"
    trace = links(
        {"title": "Trace in Jaeger", "url": "", "internal": {
            "datasourceUid": JAEGER_UID, "datasourceName": "Jaeger", "query": {"query": value},
        }},
        {"title": "Trace in the Jaeger UI", "url": f"{JAEGER_URL}/trace/{value}", "targetBlank": True},
    )
    logs = links(
        {"title": "Logs in Kibana", "url": kibana_logs_url(value), "targetBlank": True},
        {"title": "Logs in Grafana (Elasticsearch)", "url": "", "internal": {
            "datasourceUid": ELASTICSEARCH_UID, "datasourceName": "Elasticsearch",
            "query": {"query": f'attributes.correlation_id:"{value}"', "metrics": [{"id": "1", "type": "logs"}]},
        }},
    )
    status_colours: list[model.ValueMapping] = [
        model.ValueMap(options={
            "RUNNING": model.ValueMappingResult(color="green", index=0),
            "COMPENSATING": model.ValueMappingResult(color="orange", index=1),
            "FAILED": model.ValueMappingResult(color="red", index=2),
            "PAUSED": model.ValueMappingResult(color="blue", index=3),
        })
    ]
    return (
        table.Panel()
        .title("Stuck sagas")
        .description(
            "Sagas in the saga log that have not finished (RUNNING, COMPENSATING, FAILED = a compensation parked for "
            "recovery, PAUSED = held by an operator), oldest first; age since the saga started, idle since its last "
            "saga-log write. Trace id: the saga's trace in Jaeger. Correlation id: its logs in Kibana. Act on one with "
            "sagascope sagas show / retry / pause / resume / resolve (docs/operations.md)."
        )
        .datasource(POSTGRES)
        .with_target(Sql(stuck_sagas_sql(saga_steps())))
        .show_header(True)
        .override_by_name("age", [model.DynamicConfigValue(id_val="unit", value="s")])
        .override_by_name("idle", [model.DynamicConfigValue(id_val="unit", value="s")])
        .override_by_name("status", [
            model.DynamicConfigValue(id_val="mappings", value=status_colours),
            model.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"}),
        ])
        .override_by_name("trace id", trace)
        .override_by_name("correlation id", logs)
    )


# --- Saga overview -------------------------------------------------------------------------------

SAGA = 'saga=~"$saga"'


def saga_overview() -> model.Dashboard:
    cells = [
        Cell(series(
            "Sagas per second by outcome",
            [
                query(f"sum by (outcome) (rate(saga_finished_total{{{SAGA}}}[$__rate_interval]))", "{{outcome}}"),
                query(f"sum(rate(saga_started_total{{{SAGA}}}[$__rate_interval]))", "started"),
            ],
            unit="reqps",
            description="Finished sagas by outcome (completed / compensated / failed) against started ones.",
        )),
        Cell(series(
            "Compensation ratio",
            [query(
                f'(sum(rate(saga_finished_total{{{SAGA},outcome="compensated"}}[$__rate_interval]))'
                f" or 0 * sum(rate(saga_finished_total{{{SAGA}}}[$__rate_interval])))"
                f" / sum(rate(saga_finished_total{{{SAGA}}}[$__rate_interval]))",
                "compensated / finished",
            )],
            unit="percentunit",
            min_=0,
            max_=1,
            steps=thresholds((None, "green"), (0.2, "orange"), (0.5, "red")),
            description="Share of finished sagas that rolled back. The SagaCompensationRatioHigh alert fires above 20% for 5 minutes.",
        )),
        Cell(series(
            "Saga duration p50 / p95 / p99 (exemplars → Jaeger)",
            quantiles("saga_duration_seconds", "", SAGA, "", exemplar=True),
            unit="s",
            description="End-to-end saga latency. Each dot is an exemplar: click it to open that saga's trace in Jaeger.",
        )),
        Cell(series(
            "Step duration p95 by step (exemplars → Jaeger)",
            [
                query(f"histogram_quantile(0.95, sum by (le, step) (rate(saga_step_duration_seconds_bucket{{{SAGA}}}[$__rate_interval])))", "p95 {{step}}", exemplar=True),
                query(f"histogram_quantile(0.50, sum by (le, step) (rate(saga_step_duration_seconds_bucket{{{SAGA}}}[$__rate_interval])))", "p50 {{step}}"),
                query(f"histogram_quantile(0.99, sum by (le, step) (rate(saga_step_duration_seconds_bucket{{{SAGA}}}[$__rate_interval])))", "p99 {{step}}"),
            ],
            unit="s",
            description="reserve, charge, confirm: which step makes the saga slow.",
        )),
        Cell(single("In flight", f"sum(saga_in_flight{{{SAGA}}})", "in flight", "Sagas started and not yet finished, across order-service replicas."), 6, 5),
        Cell(single(
            "FAILED (in range)", f'sum(increase(saga_finished_total{{{SAGA},outcome="failed"}}[$__range]))', "failed",
            "Sagas whose compensation could not finish. Anything above 0 pages (SagaFailed).", thresholds((None, "green"), (1, "red")),
        ), 6, 5),
        Cell(single(
            "Recovered (in range)", f"sum(increase(saga_recovered_total{{{SAGA}}}[$__range]))", "recovered",
            "Sagas resumed or compensated by recovery after an orchestrator restart.", thresholds((None, "green"), (1, "orange")),
        ), 6, 5),
        Cell(single(
            "Compensated (in range)", f'sum(increase(saga_finished_total{{{SAGA},outcome="compensated"}}[$__range]))', "compensated",
            steps=thresholds((None, "green"), (1, "orange")),
        ), 6, 5),
        Cell(series(
            "Compensations per second by step and result",
            [query(f"sum by (step, result) (rate(saga_compensations_total{{{SAGA}}}[$__rate_interval]))", "{{step}} {{result}}")],
            unit="reqps",
            description="Which step was undone, and whether the compensation itself succeeded.",
        ), 24),
        # From the saga log itself (sagascope/saga/gauges.py), not from spans: what is stuck.
        Cell(series(
            "Unfinished sagas by status and step (saga log)",
            [query(f"max by (status, step) (saga_log_unfinished{{{SAGA}}})", "{{status}} {{step}}")],
            description="Rows of the saga log not COMPLETED / COMPENSATED, per status and the step they are in. FAILED = a compensation parked for recovery.",
        )),
        Cell(series(
            "Longest without progress by step (saga log)",
            [
                query(f'max by (status, step) (saga_log_idle_seconds{{{SAGA},status=~"RUNNING|COMPENSATING"}})', "{{status}} {{step}}"),
                query("max(sagascope:saga_stuck_threshold_seconds)", "stuck threshold"),
            ],
            unit="s",
            description="Longest time an unfinished saga went without a saga-log write. Above the threshold for a minute: SagaStuckInStep.",
        )),
        Cell(series(
            "Compensations parked as FAILED: oldest age (saga log)",
            [
                query(f'max by (step) (saga_log_oldest_age_seconds{{{SAGA},status="FAILED"}})', "parked at {{step}}"),
                query("max(sagascope:saga_parked_threshold_seconds)", "parked threshold"),
            ],
            unit="s",
            description="How long the oldest compensation recovery keeps retrying has existed. Above the threshold: SagaCompensationParked.",
        )),
        Cell(series(
            "Recovery attempts and due sagas (saga log)",
            [
                query(f"sum(saga_log_recovery_attempts{{{SAGA}}})", "attempts on unfinished sagas"),
                query(f"sum(saga_log_due{{{SAGA}}})", "due for recovery now"),
            ],
            description="Attempts rising while unfinished sagas do not fall is SagaRecoveryNoProgress.",
        )),
        Cell(stuck_sagas(), 24, 10),
    ]
    return board(
        "saga-overview",
        "Saga overview",
        "The CreateOrder saga: throughput by outcome, compensation ratio, latency with exemplars linking to Jaeger, and what the saga log says is stuck.",
        cells,
        [variable("saga", "saga", "label_values(saga_started_total, saga)")],
    )


# --- Service RED ---------------------------------------------------------------------------------

JOB = 'job=~"$job"'


def service_red() -> model.Dashboard:
    cells = [
        Cell(series(
            "Requests per second by service",
            [query(f"sum by (job) (rate(grpc_server_handled_total{{{JOB}}}[$__rate_interval]))", "{{job}}")],
            unit="reqps",
        )),
        Cell(series(
            "Requests per second by method",
            [query(f"sum by (job, grpc_method) (rate(grpc_server_handled_total{{{JOB}}}[$__rate_interval]))", "{{job}} {{grpc_method}}")],
            unit="reqps",
        )),
        Cell(series(
            "Errors per second by code",
            [query(f'sum by (job, grpc_method, grpc_code) (rate(grpc_server_handled_total{{{JOB},grpc_code!="OK"}}[$__rate_interval]))', "{{job}} {{grpc_method}} {{grpc_code}}")],
            unit="reqps",
        )),
        Cell(series(
            "Server-error ratio",
            [query(
                f"(sum by (job) (rate(grpc_server_handled_total{{{JOB},{GRPC_SERVER_ERRORS}}}[$__rate_interval]))"
                f" or 0 * sum by (job) (rate(grpc_server_handled_total{{{JOB}}}[$__rate_interval])))"
                f" / sum by (job) (rate(grpc_server_handled_total{{{JOB}}}[$__rate_interval]))",
                "{{job}}",
            )],
            unit="percentunit",
            min_=0,
            steps=thresholds((None, "green"), (0.005, "orange"), (0.072, "red")),
            description="Server-side codes only (caller errors such as INVALID_ARGUMENT or NOT_FOUND excluded). The SLOs allow 0.5%; 14.4x that (7.2%) pages. See the SLOs dashboard.",
        )),
        Cell(series(
            "Duration p95 by service and method",
            [
                query(f"histogram_quantile(0.95, sum by (le, job, grpc_method) (rate(grpc_server_handling_seconds_bucket{{{JOB}}}[$__rate_interval])))", "p95 {{job}} {{grpc_method}}"),
                query(f"histogram_quantile(0.50, sum by (le, job, grpc_method) (rate(grpc_server_handling_seconds_bucket{{{JOB}}}[$__rate_interval])))", "p50 {{job}} {{grpc_method}}"),
                query(f"histogram_quantile(0.99, sum by (le, job, grpc_method) (rate(grpc_server_handling_seconds_bucket{{{JOB}}}[$__rate_interval])))", "p99 {{job}} {{grpc_method}}"),
            ],
            unit="s",
        )),
        Cell(series(
            "Outgoing calls by target method and code",
            [query(f"sum by (job, grpc_method, grpc_code) (rate(grpc_client_handled_total{{{JOB}}}[$__rate_interval]))", "{{job}} → {{grpc_method}} {{grpc_code}}")],
            unit="reqps",
        )),
        Cell(series(
            "Outgoing call duration p95",
            [query(f"histogram_quantile(0.95, sum by (le, job, grpc_method) (rate(grpc_client_handling_seconds_bucket{{{JOB}}}[$__rate_interval])))", "p95 {{job}} → {{grpc_method}}")],
            unit="s",
        ), 24),
        Cell(series(
            "Login attempts throttled per minute by reason",
            [query("sum by (reason) (rate(identity_login_throttled_total[$__rate_interval])) * 60", "{{reason}}")],
            unit="short",
            min_=0,
            description="identity-service refusing logins (RESOURCE_EXHAUSTED / HTTP 429): per username, per client address, or no free password-hashing slot. Alert: LoginThrottlingHigh.",
        ), 24),
    ]
    return board(
        "service-red",
        "Service RED",
        "Rate, errors and duration of every gRPC method, per service (server side) and per outgoing call (client side).",
        cells,
        [variable("job", "service", "label_values(grpc_server_handled_total, job)")],
    )


# --- Resilience ----------------------------------------------------------------------------------

BREAKER_STATES: list[model.ValueMapping] = [
    model.ValueMap(options={
        "0": model.ValueMappingResult(text="closed", color="green", index=0),
        "1": model.ValueMappingResult(text="half-open", color="orange", index=1),
        "2": model.ValueMappingResult(text="open", color="red", index=2),
    })
]


def resilience() -> model.Dashboard:
    cells = [
        Cell(
            with_targets(
            statetimeline.Panel()
            .title("Circuit breaker state")
            .description("0 closed, 1 half-open, 2 open. An open breaker fails calls fast; CircuitBreakerOpen fires after a minute.")
            .datasource(PROMETHEUS)
            .mappings(BREAKER_STATES)
            .thresholds(thresholds((None, "green"), (1, "orange"), (2, "red")))
            .show_value(common.VisibilityMode.AUTO)
            .merge_values(True),
            [query(f"max by (job, target) (circuit_breaker_state{{{JOB}}})", "{{job}} → {{target}}")]),
            24,
        ),
        Cell(series(
            "Retries per second by target and code",
            [query(f"sum by (job, target, code) (rate(resilience_retries_total{{{JOB}}}[$__rate_interval]))", "{{job}} → {{target}} {{code}}")],
            unit="reqps",
            description="Only retryable codes (UNAVAILABLE, DEADLINE_EXCEEDED) are retried, with jittered backoff.",
        )),
        Cell(series(
            "Timeouts per second by target",
            [query(f"sum by (job, target) (rate(resilience_timeouts_total{{{JOB}}}[$__rate_interval]))", "{{job}} → {{target}}")],
            unit="reqps",
            description="Calls that ran into their deadline.",
        )),
        Cell(series(
            "Outgoing call failures by code",
            [query(f'sum by (job, grpc_method, grpc_code) (rate(grpc_client_handled_total{{{JOB},grpc_code!="OK"}}[$__rate_interval]))', "{{job}} → {{grpc_method}} {{grpc_code}}")],
            unit="reqps",
        ), 24),
    ]
    return board(
        "resilience",
        "Resilience",
        "Circuit breakers, retries and timeouts on every outgoing call.",
        cells,
        [variable("job", "service", "label_values(circuit_breaker_state, job)")],
    )


# --- SLOs (rules generated by Sloth from observability/slo/) -------------------------------------

SLO = 'sloth_service="sagascope",sloth_slo=~"$slo"'


def slos() -> model.Dashboard:
    cells = [
        Cell(single(
            "Error budget remaining (30 days)",
            f"slo:period_error_budget_remaining:ratio{{{SLO}}}",
            "{{sloth_slo}}",
            "Share of the 30-day error budget not yet spent, per objective. Below 0 the objective is missed for the period.",
            thresholds((None, "red"), (0.25, "orange"), (0.5, "green")),
            unit="percentunit",
        ), 24, 6),
        Cell(series(
            "Burn rate now (5m window)",
            [query(f"slo:current_burn_rate:ratio{{{SLO}}}", "{{sloth_slo}}")],
            description="How many times faster than sustainable the budget burns. 1 = exactly spent at the period's end; the page alert needs 14.4 over 5m and 1h (or 6 over 30m and 6h).",
            steps=thresholds((None, "green"), (1, "orange"), (6, "red")),
        )),
        Cell(series(
            "Burn rate over the period (30 days)",
            [query(f"slo:period_burn_rate:ratio{{{SLO}}}", "{{sloth_slo}}")],
            description="Average burn rate over the whole SLO period; above 1 the objective will be missed.",
            steps=thresholds((None, "green"), (1, "red")),
        )),
        Cell(series(
            "SLI error ratio by alert window",
            [
                query(f"slo:sli_error:ratio_rate5m{{{SLO}}}", "{{sloth_slo}} 5m"),
                query(f"slo:sli_error:ratio_rate1h{{{SLO}}}", "{{sloth_slo}} 1h"),
                query(f"slo:sli_error:ratio_rate6h{{{SLO}}}", "{{sloth_slo}} 6h"),
            ],
            unit="percentunit",
            description="The error ratio the multi-window alerts compare: short windows react, long ones confirm.",
        )),
        Cell(series(
            "Objective and budget",
            [
                query(f"slo:objective:ratio{{{SLO}}}", "{{sloth_slo}} objective"),
                query(f"slo:error_budget:ratio{{{SLO}}}", "{{sloth_slo}} budget"),
            ],
            unit="percentunit",
            description="The objectives as the specs (observability/slo/sagascope.slo.yml) declare them.",
        )),
        Cell(series(
            "SLO alerts firing",
            [query(f'sum by (alertname, sloth_severity) (ALERTS{{{SLO},alertstate="firing"}})', "{{alertname}} ({{sloth_severity}})")],
            description="The generated burn-rate alerts currently firing, page or ticket.",
        ), 24),
    ]
    return board(
        "slos",
        "SLOs",
        "Service level objectives (Sloth specs in observability/slo/): error budget remaining and burn rates, per objective.",
        cells,
        [variable("slo", "objective", 'label_values(sloth_slo_info{sloth_service="sagascope"}, sloth_slo)')],
    )


# --- Telemetry pipeline (the Collector's own metrics, names as collector 0.156.0 serves them) -----


def telemetry_pipeline() -> model.Dashboard:
    def rate_by(metric: str, by: str, legend: str) -> prometheus.Dataquery:
        return query(f"sum by ({by}) (rate({metric}[$__rate_interval]))", legend)

    cells = [
        Cell(series(
            "Spans received and refused per second",
            [
                rate_by("otelcol_receiver_accepted_spans", "receiver", "accepted {{receiver}}"),
                rate_by("otelcol_receiver_refused_spans", "receiver", "refused {{receiver}}"),
            ],
            unit="reqps",
            description="What the SDKs delivered to the Collector's receivers. Refused = pushed back (memory limiter); the SDK retries, then drops.",
        )),
        Cell(series(
            "Log records received and refused per second",
            [
                rate_by("otelcol_receiver_accepted_log_records", "receiver", "accepted {{receiver}}"),
                rate_by("otelcol_receiver_refused_log_records", "receiver", "refused {{receiver}}"),
            ],
            unit="reqps",
        )),
        Cell(series(
            "Spans exported, failed and dropped per second by exporter",
            [
                rate_by("otelcol_exporter_sent_spans", "exporter", "sent {{exporter}}"),
                rate_by("otelcol_exporter_send_failed_spans", "exporter", "failed {{exporter}}"),
                rate_by("otelcol_exporter_enqueue_failed_spans", "exporter", "queue full {{exporter}}"),
            ],
            unit="reqps",
            description="Failed = given up after retries; queue full = dropped before sending. Either for 5 minutes: TelemetryDropped.",
        )),
        Cell(series(
            "Log records exported, failed and dropped per second by exporter",
            [
                rate_by("otelcol_exporter_sent_log_records", "exporter", "sent {{exporter}}"),
                rate_by("otelcol_exporter_send_failed_log_records", "exporter", "failed {{exporter}}"),
                rate_by("otelcol_exporter_enqueue_failed_log_records", "exporter", "queue full {{exporter}}"),
            ],
            unit="reqps",
        )),
        Cell(series(
            "Exporter queue fill",
            [query("max by (exporter) (otelcol_exporter_queue_size / otelcol_exporter_queue_capacity)", "{{exporter}}")],
            unit="percentunit",
            min_=0,
            max_=1,
            steps=thresholds((None, "green"), (0.8, "red")),
            description="Sending queue size over capacity. Above 80% for 5 minutes: TelemetryQueueNearlyFull; at 100% records are dropped.",
        )),
        Cell(series(
            "Metric points received and exported per second",
            [
                rate_by("otelcol_receiver_accepted_metric_points", "receiver", "accepted {{receiver}}"),
                rate_by("otelcol_exporter_sent_metric_points", "exporter", "sent {{exporter}}"),
            ],
            unit="reqps",
            description="Metrics scraped from the services and derived from spans (spanmetrics, servicegraph) on their way to Prometheus.",
        )),
        Cell(series(
            "Collector memory",
            [query("max by (job) (otelcol_process_memory_rss)", "rss {{job}}")],
            unit="bytes",
            description="Resident memory; the memory limiter refuses data before the limit. The Python SDKs expose no exporter metrics of their own: a drop on their side shows as a gap here.",
        ), 24),
    ]
    return board(
        "telemetry-pipeline",
        "Telemetry pipeline",
        "The OpenTelemetry Collector's own metrics: what it received, exported, refused and dropped, and its queues.",
        cells,
    )


# --- Service map (the Collector's servicegraph connector) ----------------------------------------

EDGE = "traces_service_graph_request"


def service_map() -> model.Dashboard:
    edges = query(
        f'label_join(sum by (client, server) (rate({EDGE}_total[$__rate_interval])), "id", "->", "client", "server")',
        "edges",
        table=True,
    ).ref_id("edges")
    nodes = query(
        f'sum by (id) (label_replace(sum by (server) (rate({EDGE}_total[$__rate_interval])), "id", "$1", "server", "(.*)")'
        f' or label_replace(0 * sum by (client) (rate({EDGE}_total[$__rate_interval])), "id", "$1", "client", "(.*)"))',
        "nodes",
        table=True,
    ).ref_id("nodes")
    graph = (
        nodegraph.Panel()
        .title("Service map")
        .description("Who calls whom, from the Collector's servicegraph connector (spans paired client → server). Edge number: calls per second; node number: calls it serves per second.")
        .datasource(PROMETHEUS)
        .with_target(nodes)
        .with_target(edges)
        # The node graph reads fields: edges need id/source/target, nodes id (+ mainstat).
        .with_transformation(model.DataTransformerConfig(id_val="organize", options={
            "renameByName": {"client": "source", "server": "target", "Value #edges": "mainstat", "Value #nodes": "mainstat"},
            "excludeByName": {"Time": True},
        }))
    )
    cells = [
        Cell(graph, 24, 14),
        Cell(series(
            "Calls per second by edge",
            [query(f"sum by (client, server) (rate({EDGE}_total[$__rate_interval]))", "{{client}} → {{server}}")],
            unit="reqps",
        )),
        Cell(series(
            "Failed calls ratio by edge",
            [query(
                f"(sum by (client, server) (rate({EDGE}_failed_total[$__rate_interval])) or 0 * sum by (client, server) (rate({EDGE}_total[$__rate_interval])))"
                f" / sum by (client, server) (rate({EDGE}_total[$__rate_interval]))",
                "{{client}} → {{server}}",
            )],
            unit="percentunit",
            min_=0,
        )),
        Cell(series(
            "Server duration p95 by edge",
            [query(f"histogram_quantile(0.95, sum by (le, client, server) (rate({EDGE}_server_seconds_bucket[$__rate_interval])))", "{{client}} → {{server}}")],
            unit="s",
        ), 24),
    ]
    return board(
        "service-map",
        "Service map",
        "The services and the calls between them, derived from traces by the Collector's servicegraph connector.",
        cells,
    )


# --- Databases -----------------------------------------------------------------------------------

# The order database, from the Collector's postgresql receiver (profiles/postgresql.yml: job
# "postgresql"; database, table and index names are the resource's, as labels).
PG_DB = 'postgresql_database_name=~"$database"'
SAGA_LOG_TABLE = 'postgresql_table_name=~"(public[.])?saga_instances"'
TOP_QUERY = 'event_name:"db.server.top_query"'


def top_statements() -> table.Panel:
    """pg_stat_statements through the receiver's db.server.top_query records (Elasticsearch): per
    statement (queryid), the total execution time and calls in the time range."""
    total = es.Sum().id("1").field("attributes.postgresql.total_exec_time")
    calls = es.Sum().id("2").field("attributes.postgresql.calls")
    by_statement = (
        es.Terms().id("3").field("attributes.postgresql.queryid")
        .settings(es.ElasticsearchTermsSettings().order(TermsOrder.DESC).order_by("1").size("10").min_doc_count("1"))
    )
    text = es.Terms().id("4").field("attributes.db.query.text").settings(
        es.ElasticsearchTermsSettings().order(TermsOrder.DESC).order_by("_count").size("1").min_doc_count("1")
    )
    target = (
        es.Dataquery().ref_id("A").datasource(ELASTICSEARCH).query(TOP_QUERY).time_field("@timestamp")
        .metrics([total, calls]).bucket_aggs([by_statement, text])
    )
    return (
        table.Panel()
        .title("Top statements by total time")
        .description(
            "pg_stat_statements, as the Collector's postgresql receiver reports it every minute (db.server.top_query "
            "records in Elasticsearch: the change since the last report). Sum of execution time (ms) and calls per "
            "statement in the time range; the text is obfuscated by the receiver (values → ?). The saga's transitions "
            "are the statements that call saga_guard(...)."
        )
        .datasource(ELASTICSEARCH)
        .with_target(target)
    )


def databases() -> model.Dashboard:
    rate = "[$__rate_interval]"
    cells = [
        Cell(single(
            "Connections used",
            f"sum by (postgresql_database_name) (postgresql_backends{{{PG_DB}}}) / scalar(max(postgresql_connection_max))",
            "{{postgresql_database_name}}",
            "Sessions on the database over the server's max_connections (PgConnectionsNearMax at 80%).",
            thresholds((None, "green"), (0.6, "orange"), (0.8, "red")),
            unit="percentunit",
        ), 6, 5),
        Cell(single(
            "Deadlocks (in range)",
            f"sum by (postgresql_database_name) (increase(postgresql_deadlocks_total{{{PG_DB}}}[$__range]))",
            "{{postgresql_database_name}}",
            "PostgreSQL aborted a transaction to break a lock cycle (PgDeadlocks).",
            thresholds((None, "green"), (1, "red")),
        ), 6, 5),
        Cell(single(
            "Buffer cache hit ratio",
            f"sum by (postgresql_database_name) (rate(postgresql_blks_hit_total{{{PG_DB}}}{rate})) / (sum by (postgresql_database_name) (rate(postgresql_blks_hit_total{{{PG_DB}}}{rate})) + sum by (postgresql_database_name) (rate(postgresql_blks_read_total{{{PG_DB}}}{rate})))",
            "{{postgresql_database_name}}",
            "Blocks found in shared buffers over all blocks the database needed.",
            thresholds((None, "red"), (0.9, "orange"), (0.99, "green")),
            unit="percentunit",
        ), 6, 5),
        Cell(single(
            "Database size",
            f"sum by (postgresql_database_name) (postgresql_db_size_bytes{{{PG_DB}}})",
            "{{postgresql_database_name}}",
            unit="bytes",
        ), 6, 5),
        Cell(series(
            "Connections vs max_connections",
            [
                query(f"sum by (postgresql_database_name) (postgresql_backends{{{PG_DB}}})", "{{postgresql_database_name}}"),
                query("max(postgresql_connection_max)", "max_connections"),
            ],
            description="pg_stat_activity sessions per database (the order service's pool: ORDER_DB_POOL_SIZE + overflow per replica).",
        )),
        Cell(series(
            "Commits and rollbacks per second",
            [
                query(f"sum by (postgresql_database_name) (rate(postgresql_commits_total{{{PG_DB}}}{rate}))", "commits {{postgresql_database_name}}"),
                query(f"sum by (postgresql_database_name) (rate(postgresql_rollbacks_total{{{PG_DB}}}{rate}))", "rollbacks {{postgresql_database_name}}"),
            ],
            unit="ops",
        )),
        Cell(series(
            "Blocks hit and read per second",
            [
                query(f"sum by (postgresql_database_name) (rate(postgresql_blks_hit_total{{{PG_DB}}}{rate}))", "hit {{postgresql_database_name}}"),
                query(f"sum by (postgresql_database_name) (rate(postgresql_blks_read_total{{{PG_DB}}}{rate}))", "read {{postgresql_database_name}}"),
            ],
            unit="ops",
        )),
        Cell(series(
            "Locks by table and mode",
            [query("sum by (relation, mode) (postgresql_database_locks)", "{{relation}} {{mode}}")],
            description="pg_locks on tables at each collection (10 s). A lock on saga_instances stronger than RowExclusiveLock blocks the saga's writes (SagaLogLockedByLongTransaction).",
        )),
        Cell(series(
            "Saga log table size (saga_instances)",
            [
                query(f"sum by (postgresql_table_name) (postgresql_table_size_bytes{{{PG_DB},{SAGA_LOG_TABLE}}})", "table {{postgresql_table_name}}"),
                query(f'sum by (postgresql_index_name) (postgresql_index_size_bytes{{{PG_DB},postgresql_table_name=~"(public[.])?saga_instances"}})', "index {{postgresql_index_name}}"),
            ],
            unit="bytes",
        )),
        Cell(series(
            "Saga log live and dead tuples (saga_instances)",
            [query(f"sum by (state) (postgresql_rows{{{PG_DB},{SAGA_LOG_TABLE}}})", "{{state}}")],
            description="Every saga transition updates its row: dead tuples grow until autovacuum reclaims them.",
        )),
        Cell(series(
            "Row operations per second by table",
            [query(f"sum by (postgresql_table_name, operation) (rate(postgresql_operations_total{{{PG_DB}}}{rate}))", "{{postgresql_table_name}} {{operation}}")],
            unit="ops",
        )),
        Cell(series(
            "Index and sequential scans per second by table",
            [
                query(f"sum by (postgresql_table_name) (rate(postgresql_index_scans_total{{{PG_DB}}}{rate}))", "index {{postgresql_table_name}}"),
                query(f"sum by (postgresql_table_name) (rate(postgresql_sequential_scans_total{{{PG_DB}}}{rate}))", "seq {{postgresql_table_name}}"),
            ],
            unit="ops",
        )),
        Cell(series(
            "Table sizes",
            [query(f"topk(10, sum by (postgresql_table_name) (postgresql_table_size_bytes{{{PG_DB}}}))", "{{postgresql_table_name}}")],
            unit="bytes",
        )),
        Cell(series(
            "Background writer: buffers written per second by source",
            [query(f"sum by (bg_buffer_source) (rate(postgresql_bgwriter_buffers_writes_total{rate}))", "{{bg_buffer_source}}")],
            unit="ops",
        )),
        Cell(top_statements(), 24, 10),
        Cell(series(
            "MongoDB (payments): operations per second, from the payment service's spans",
            [query(f'sum by (span_name) (rate(traces_span_metrics_calls_total{{service_name="payment-service",span_name=~"payments[.].*"}}{rate}))', "{{span_name}}")],
            description="nx-27017 does not answer the statistics commands the Collector's mongodb receiver needs (docs/databases.md): the MongoDB side is seen through the payment service's PyMongo spans.",
            unit="ops",
        )),
        Cell(series(
            "MongoDB (payments): p95 per operation, from the payment service's spans",
            [query(f'histogram_quantile(0.95, sum by (le, span_name) (rate(traces_span_metrics_duration_seconds_bucket{{service_name="payment-service",span_name=~"payments[.].*"}}{rate})))', "{{span_name}}")],
            unit="s",
        )),
    ]
    return board(
        "databases",
        "Databases",
        "The stores under the saga: the order database's own statistics (PostgreSQL, through the Collector's postgresql receiver), its top statements (pg_stat_statements, in Elasticsearch) and the payment store as the payment service's spans see it.",
        cells,
        [variable("database", "Database", "label_values(postgresql_db_size_bytes, postgresql_database_name)")],
    )


DASHBOARDS: dict[str, Callable[[], model.Dashboard]] = {
    "saga-overview.json": saga_overview,
    "service-red.json": service_red,
    "resilience.json": resilience,
    "slos.json": slos,
    "telemetry-pipeline.json": telemetry_pipeline,
    "service-map.json": service_map,
    "databases.json": databases,
}


def render(build: Callable[[], model.Dashboard]) -> str:
    return json.dumps(build(), cls=JSONEncoder, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the committed JSON differs")
    args = parser.parse_args(argv)
    drifted = []
    for name, build in DASHBOARDS.items():
        path = HERE / name
        text = render(build)
        if args.check:
            if not path.exists() or path.read_text() != text:
                drifted.append(name)
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(HERE.parent)}")
    if drifted:
        print(
            f"dashboards drifted from dashboards/build.py: {', '.join(drifted)} — run python dashboards/build.py",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
