"""Grafana dashboards as code: writes dashboards/*.json.

    python dashboards/build.py           # regenerate the committed JSON
    python dashboards/build.py --check   # exit 1 when the JSON drifted from this file

Plain data, standard library only: one function per dashboard, one helper per
panel kind. Datasource uids are fixed by observability/grafana/provisioning.
"""

# ruff: noqa: E501  (PromQL strings read better on one line)
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PROMETHEUS = {"type": "prometheus", "uid": "prometheus"}
SCHEMA_VERSION = 39


@dataclass
class Target:
    expr: str
    legend: str = "__auto"
    exemplar: bool = False

    def to_json(self, ref: str) -> dict[str, Any]:
        return {
            "datasource": PROMETHEUS,
            "refId": ref,
            "expr": self.expr,
            "legendFormat": self.legend,
            "range": True,
            "instant": False,
            "exemplar": self.exemplar,
            "editorMode": "code",
        }


@dataclass
class Panel:
    title: str
    targets: list[Target]
    kind: str = "timeseries"
    unit: str = "short"
    description: str = ""
    width: int = 12
    height: int = 8
    thresholds: list[tuple[float | None, str]] = field(default_factory=lambda: [(None, "green")])
    mappings: list[dict[str, Any]] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    min: float | None = None
    max: float | None = None


def _panel_json(panel: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "unit": panel.unit,
        "thresholds": {
            "mode": "absolute",
            "steps": [{"color": color, "value": value} for value, color in panel.thresholds],
        },
        "mappings": panel.mappings,
    }
    if panel.min is not None:
        defaults["min"] = panel.min
    if panel.max is not None:
        defaults["max"] = panel.max
    options: dict[str, Any] = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}}
    if panel.kind in ("stat",):
        options = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
        }
    options.update(panel.options)
    return {
        "id": pid,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": PROMETHEUS,
        "gridPos": {"x": x, "y": y, "w": panel.width, "h": panel.height},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
        "targets": [t.to_json(chr(ord("A") + i)) for i, t in enumerate(panel.targets)],
    }


def _variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": PROMETHEUS,
        "query": {"query": query, "refId": f"{name}-values"},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def dashboard(
    uid: str, title: str, description: str, panels: list[Panel], variables: list[dict[str, Any]]
) -> dict[str, Any]:
    laid_out: list[dict[str, Any]] = []
    x = y = row_height = 0
    for pid, panel in enumerate(panels, start=1):
        if x + panel.width > 24:
            x, y, row_height = 0, y + row_height, 0
        laid_out.append(_panel_json(panel, pid, x, y))
        x += panel.width
        row_height = max(row_height, panel.height)
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["sagascope"],
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "refresh": "10s",
        "time": {"from": "now-30m", "to": "now"},
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "links": [
            {
                "title": "sagascope",
                "type": "dashboards",
                "tags": ["sagascope"],
                "asDropdown": False,
                "includeVars": False,
                "keepTime": True,
            },
        ],
        "templating": {"list": variables},
        "annotations": {"list": []},
        "panels": laid_out,
    }


def quantiles(metric: str, by: str, selector: str, legend_prefix: str, exemplar: bool) -> list[Target]:
    group = f"le, {by}" if by else "le"
    suffix = f" {{{{{by}}}}}" if by and "," not in by else ""
    return [
        Target(
            f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{{{selector}}}[$__rate_interval])))",
            legend=f"{legend_prefix}p{int(q * 100)}{suffix}",
            exemplar=exemplar,
        )
        for q in (0.5, 0.95, 0.99)
    ]


# --- Saga overview --------------------------------------------------------

SAGA = 'saga=~"$saga"'


def saga_overview() -> dict[str, Any]:
    panels = [
        Panel(
            "Sagas per second by outcome",
            [
                Target(f"sum by (outcome) (rate(saga_finished_total{{{SAGA}}}[$__rate_interval]))", "{{outcome}}"),
                Target(f"sum(rate(saga_started_total{{{SAGA}}}[$__rate_interval]))", "started"),
            ],
            unit="reqps",
            description="Finished sagas by outcome (completed / compensated / failed) against started ones.",
        ),
        Panel(
            "Compensation ratio",
            [
                Target(
                    f'(sum(rate(saga_finished_total{{{SAGA},outcome="compensated"}}[$__rate_interval]))'
                    f" or 0 * sum(rate(saga_finished_total{{{SAGA}}}[$__rate_interval])))"
                    f" / sum(rate(saga_finished_total{{{SAGA}}}[$__rate_interval]))",
                    "compensated / finished",
                )
            ],
            unit="percentunit",
            min=0,
            max=1,
            thresholds=[(None, "green"), (0.2, "orange"), (0.5, "red")],
            description="Share of finished sagas that rolled back. The SagaCompensationRatioHigh alert fires above 20% for 5 minutes.",
        ),
        Panel(
            "Saga duration p50 / p95 / p99 (exemplars → Jaeger)",
            quantiles("saga_duration_seconds", "", SAGA, "", exemplar=True),
            unit="s",
            description="End-to-end saga latency. Each dot is an exemplar: click it to open that saga's trace in Jaeger.",
        ),
        Panel(
            "Step duration p95 by step (exemplars → Jaeger)",
            [
                Target(
                    f"histogram_quantile(0.95, sum by (le, step) (rate(saga_step_duration_seconds_bucket{{{SAGA}}}[$__rate_interval])))",
                    "p95 {{step}}",
                    exemplar=True,
                ),
                Target(
                    f"histogram_quantile(0.50, sum by (le, step) (rate(saga_step_duration_seconds_bucket{{{SAGA}}}[$__rate_interval])))",
                    "p50 {{step}}",
                ),
                Target(
                    f"histogram_quantile(0.99, sum by (le, step) (rate(saga_step_duration_seconds_bucket{{{SAGA}}}[$__rate_interval])))",
                    "p99 {{step}}",
                ),
            ],
            unit="s",
            description="reserve, charge, confirm: which step makes the saga slow.",
        ),
        Panel(
            "In flight",
            [Target(f"sum(saga_in_flight{{{SAGA}}})", "in flight")],
            kind="stat",
            width=6,
            height=5,
            description="Sagas started and not yet finished, across order-service replicas.",
        ),
        Panel(
            "FAILED (in range)",
            [Target(f'sum(increase(saga_finished_total{{{SAGA},outcome="failed"}}[$__range]))', "failed")],
            kind="stat",
            width=6,
            height=5,
            thresholds=[(None, "green"), (1, "red")],
            description="Sagas whose compensation could not finish. Anything above 0 pages (SagaFailed).",
        ),
        Panel(
            "Recovered (in range)",
            [Target(f"sum(increase(saga_recovered_total{{{SAGA}}}[$__range]))", "recovered")],
            kind="stat",
            width=6,
            height=5,
            thresholds=[(None, "green"), (1, "orange")],
            description="Sagas resumed or compensated by recovery after an orchestrator restart.",
        ),
        Panel(
            "Compensated (in range)",
            [Target(f'sum(increase(saga_finished_total{{{SAGA},outcome="compensated"}}[$__range]))', "compensated")],
            kind="stat",
            width=6,
            height=5,
            thresholds=[(None, "green"), (1, "orange")],
        ),
        Panel(
            "Compensations per second by step and result",
            [
                Target(
                    f"sum by (step, result) (rate(saga_compensations_total{{{SAGA}}}[$__rate_interval]))",
                    "{{step}} {{result}}",
                )
            ],
            unit="reqps",
            width=24,
            description="Which step was undone, and whether the compensation itself succeeded.",
        ),
    ]
    return dashboard(
        "saga-overview",
        "Saga overview",
        "The CreateOrder saga: throughput by outcome, compensation ratio, latency with exemplars linking to Jaeger.",
        panels,
        [_variable("saga", "saga", "label_values(saga_started_total, saga)")],
    )


# --- Service RED --------------------------------------------------------------

JOB = 'job=~"$job"'


def service_red() -> dict[str, Any]:
    panels = [
        Panel(
            "Requests per second by service",
            [Target(f"sum by (job) (rate(grpc_server_handled_total{{{JOB}}}[$__rate_interval]))", "{{job}}")],
            unit="reqps",
        ),
        Panel(
            "Requests per second by method",
            [
                Target(
                    f"sum by (job, grpc_method) (rate(grpc_server_handled_total{{{JOB}}}[$__rate_interval]))",
                    "{{job}} {{grpc_method}}",
                )
            ],
            unit="reqps",
        ),
        Panel(
            "Errors per second by code",
            [
                Target(
                    f'sum by (job, grpc_method, grpc_code) (rate(grpc_server_handled_total{{{JOB},grpc_code!="OK"}}[$__rate_interval]))',
                    "{{job}} {{grpc_method}} {{grpc_code}}",
                )
            ],
            unit="reqps",
        ),
        Panel(
            "Server-error ratio (SLO 99%)",
            [Target("job:grpc_server_error_ratio:rate5m{" + JOB + "}", "{{job}}")],
            unit="percentunit",
            min=0,
            thresholds=[(None, "green"), (0.01, "orange"), (0.144, "red")],
            description="Recording rule job:grpc_server_error_ratio:rate5m; caller errors (InvalidArgument, NotFound, ...) excluded.",
        ),
        Panel(
            "Duration p95 by service and method",
            [
                Target(
                    f"histogram_quantile(0.95, sum by (le, job, grpc_method) (rate(grpc_server_handling_seconds_bucket{{{JOB}}}[$__rate_interval])))",
                    "p95 {{job}} {{grpc_method}}",
                ),
                Target(
                    f"histogram_quantile(0.50, sum by (le, job, grpc_method) (rate(grpc_server_handling_seconds_bucket{{{JOB}}}[$__rate_interval])))",
                    "p50 {{job}} {{grpc_method}}",
                ),
                Target(
                    f"histogram_quantile(0.99, sum by (le, job, grpc_method) (rate(grpc_server_handling_seconds_bucket{{{JOB}}}[$__rate_interval])))",
                    "p99 {{job}} {{grpc_method}}",
                ),
            ],
            unit="s",
        ),
        Panel(
            "Outgoing calls by target method and code",
            [
                Target(
                    f"sum by (job, grpc_method, grpc_code) (rate(grpc_client_handled_total{{{JOB}}}[$__rate_interval]))",
                    "{{job}} → {{grpc_method}} {{grpc_code}}",
                ),
            ],
            unit="reqps",
        ),
        Panel(
            "Outgoing call duration p95",
            [
                Target(
                    f"histogram_quantile(0.95, sum by (le, job, grpc_method) (rate(grpc_client_handling_seconds_bucket{{{JOB}}}[$__rate_interval])))",
                    "p95 {{job}} → {{grpc_method}}",
                )
            ],
            unit="s",
            width=24,
        ),
    ]
    return dashboard(
        "service-red",
        "Service RED",
        "Rate, errors and duration of every gRPC method, per service (server side) and per outgoing call (client side).",
        panels,
        [_variable("job", "service", "label_values(grpc_server_handled_total, job)")],
    )


# --- Resilience ---------------------------------------------------------------

BREAKER_STATES = [
    {
        "type": "value",
        "options": {
            "0": {"text": "closed", "color": "green", "index": 0},
            "1": {"text": "half-open", "color": "orange", "index": 1},
            "2": {"text": "open", "color": "red", "index": 2},
        },
    }
]


def resilience() -> dict[str, Any]:
    panels = [
        Panel(
            "Circuit breaker state",
            [Target(f"max by (job, target) (circuit_breaker_state{{{JOB}}})", "{{job}} → {{target}}")],
            kind="state-timeline",
            mappings=BREAKER_STATES,
            width=24,
            thresholds=[(None, "green"), (1, "orange"), (2, "red")],
            description="0 closed, 1 half-open, 2 open. An open breaker fails calls fast; CircuitBreakerOpen fires after a minute.",
            options={"showValue": "auto", "mergeValues": True},
        ),
        Panel(
            "Retries per second by target and code",
            [
                Target(
                    f"sum by (job, target, code) (rate(resilience_retries_total{{{JOB}}}[$__rate_interval]))",
                    "{{job}} → {{target}} {{code}}",
                )
            ],
            unit="reqps",
            description="Only retryable codes (UNAVAILABLE, DEADLINE_EXCEEDED) are retried, with jittered backoff.",
        ),
        Panel(
            "Timeouts per second by target",
            [
                Target(
                    f"sum by (job, target) (rate(resilience_timeouts_total{{{JOB}}}[$__rate_interval]))",
                    "{{job}} → {{target}}",
                )
            ],
            unit="reqps",
            description="Calls that ran into their deadline.",
        ),
        Panel(
            "Outgoing call failures by code",
            [
                Target(
                    f'sum by (job, grpc_method, grpc_code) (rate(grpc_client_handled_total{{{JOB},grpc_code!="OK"}}[$__rate_interval]))',
                    "{{job}} → {{grpc_method}} {{grpc_code}}",
                )
            ],
            unit="reqps",
            width=24,
        ),
    ]
    return dashboard(
        "resilience",
        "Resilience",
        "Circuit breakers, retries and timeouts on every outgoing call.",
        panels,
        [_variable("job", "service", "label_values(circuit_breaker_state, job)")],
    )


DASHBOARDS = {
    "saga-overview.json": saga_overview,
    "service-red.json": service_red,
    "resilience.json": resilience,
}


def render(build: Any) -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
