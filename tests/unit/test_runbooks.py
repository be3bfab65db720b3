"""Every alert has a runbook, and every runbook names only things that exist.

- each alert rule (hand-written and Sloth-generated) has ``runbook_url: docs/runbooks/<alert>.md``
  and that file exists; every runbook file belongs to an alert (or is the README);
- every `` `Dashboard PANEL_SEP Panel` `` (README.md) in a runbook is a panel of that dashboard as built by
  dashboards/build.py; every ``saved search "..."`` is a Kibana saved search we ship;
- every metric in a runbook's ```promql block is defined in our code, is a recording rule, or is
  a known upstream metric (listed below, with where it comes from);
- a runbook acts on sagas with the admin CLI (`sagascope sagas ...`), not with SQL against the saga
  log — except SagaLogGaugesStale, whose suspect is the gauges' own query.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RUNBOOKS = REPO / "docs" / "runbooks"
PANEL_SEP = "\u203a"  # single right-pointing angle quotation mark: `Dashboard › Panel`  # noqa: RUF003
RULE_FILES = sorted((REPO / "observability" / "prometheus").glob("*.rules.yml"))

# Metrics we do not define ourselves, by origin.
UPSTREAM_METRICS = {
    # Prometheus itself
    "up", "ALERTS", "ALERTS_FOR_STATE",
    # the Collector's own telemetry (names as collector 0.156.0 serves them on :8888)
    "otelcol_receiver_accepted_spans", "otelcol_receiver_refused_spans", "otelcol_receiver_failed_spans",
    "otelcol_receiver_accepted_log_records", "otelcol_receiver_refused_log_records",
    "otelcol_receiver_accepted_metric_points", "otelcol_exporter_sent_spans", "otelcol_exporter_send_failed_spans",
    "otelcol_exporter_enqueue_failed_spans", "otelcol_exporter_sent_log_records",
    "otelcol_exporter_send_failed_log_records", "otelcol_exporter_enqueue_failed_log_records",
    "otelcol_exporter_sent_metric_points", "otelcol_exporter_queue_size", "otelcol_exporter_queue_capacity",
    "otelcol_process_memory_rss",
    # the Collector's servicegraph connector
    "traces_service_graph_request_total", "traces_service_graph_request_failed_total",
    "traces_service_graph_request_server_seconds_bucket",
}
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or", "unless",
    "inf", "nan", "time",
}
# Metric definitions in our code; an f-string part (grpc_{side}_handled) matches any word.
_METRIC_CALLS = re.compile(
    r'(?:Counter|Gauge|Histogram|Summary|GaugeMetricFamily|CounterMetricFamily)\(\s*f?"([a-zA-Z_:{][\w:{}]*)"'
)
_SUFFIXES = ("", "_total", "_bucket", "_count", "_sum", "_created")


def _rules() -> list[dict[str, object]]:
    groups = [group for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]]
    return [rule for group in groups for rule in group["rules"]]


def _alerts() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for rule in _rules():
        if "alert" in rule:
            annotations = rule.get("annotations") or {}
            assert isinstance(annotations, dict)
            out.setdefault(str(rule["alert"]), set()).add(str(annotations.get("runbook_url", "")))
    return out


def _panels() -> set[tuple[str, str]]:
    found = set()
    for path in (REPO / "dashboards").glob("*.json"):
        board = json.loads(path.read_text())
        for panel in board.get("panels", []):
            found.add((board["title"], panel["title"]))
            for inner in panel.get("panels", []):
                found.add((board["title"], inner["title"]))
    return found


def _saved_searches() -> set[str]:
    titles = set()
    for path in (REPO / "observability" / "elk" / "kibana").glob("*.ndjson"):
        for line in path.read_text().splitlines():
            if line.strip():
                obj = json.loads(line)
                if obj.get("type") == "search":
                    titles.add(obj["attributes"]["title"])
    return titles


@functools.cache
def _definition_patterns() -> tuple[str, ...]:
    bases = {base for path in (REPO / "sagascope").rglob("*.py") for base in _METRIC_CALLS.findall(path.read_text())}
    return tuple(re.sub(r"\\\{\w+\\\}", r"\\w+", re.escape(base)) for base in sorted(bases))


def _defined(name: str) -> bool:
    if name in UPSTREAM_METRICS or name in {str(r["record"]) for r in _rules() if "record" in r}:
        return True
    return any(re.fullmatch(p + suffix, name) for p in _definition_patterns() for suffix in _SUFFIXES)


def metrics_in(promql: str) -> set[str]:
    """Metric names in PromQL: identifiers outside strings, label matchers, ranges and grouping
    clauses that are not functions or keywords."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', promql)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in PROMQL_WORDS or re.fullmatch(r"\d+[smhdwy]", name):
            continue
        names.add(name)
    return names


def _runbooks() -> list[Path]:
    return sorted(p for p in RUNBOOKS.glob("*.md") if p.name != "README.md")


def test_every_alert_has_a_runbook_that_exists() -> None:
    alerts = _alerts()
    assert len(alerts) >= 15, sorted(alerts)
    for alert, urls in alerts.items():
        assert urls == {f"docs/runbooks/{alert}.md"}, f"{alert}: runbook_url {urls}"
        assert (REPO / f"docs/runbooks/{alert}.md").is_file(), f"{alert}: docs/runbooks/{alert}.md is missing"
    assert {p.stem for p in _runbooks()} == set(alerts), "a runbook without an alert"


@pytest.mark.parametrize("runbook", _runbooks(), ids=lambda p: p.stem)
def test_runbook_names_only_panels_searches_and_metrics_that_exist(runbook: Path) -> None:
    text = runbook.read_text()
    panels = re.findall(rf"`([^`\n]+?) {PANEL_SEP} ([^`\n]+)`", text)
    assert panels, "a runbook names the Grafana panel to open"
    unknown_panels = set(panels) - _panels()
    assert not unknown_panels, f"no such panel(s) in dashboards/*.json: {unknown_panels}"
    searches = set(re.findall(r'saved search "([^"]+)"', text))
    assert searches, "a runbook names the Kibana saved search to use"
    assert searches <= _saved_searches(), f"no such saved search: {searches - _saved_searches()}"
    blocks = re.findall(r"```promql\n(.*?)```", text, re.S)
    assert blocks, "a runbook gives the PromQL to run"
    used = set().union(*(metrics_in(b) for b in blocks))
    unknown = {name for name in used if not _defined(name)}
    assert not unknown, f"metrics not defined in code, rules or known upstream: {unknown}"
    confirming = ("sagascope trace", "sagascope logs", "sagascope sagas", "```sql", "grpcurl", "curl ")
    assert any(command in text for command in confirming), (
        "a runbook ends with a command that confirms the cause"
    )


# Runbooks that may print SQL on saga_instances, and why: the gauges' own query is the suspect.
SQL_ON_SAGA_LOG = {"SagaLogGaugesStale"}


@pytest.mark.parametrize("runbook", _runbooks(), ids=lambda p: p.stem)
def test_runbook_acts_on_sagas_with_the_admin_cli_not_sql(runbook: Path) -> None:
    text = runbook.read_text()
    sql_on_saga_log = [b for b in re.findall(r"```sql\n(.*?)```", text, re.S) if "saga_instances" in b]
    if runbook.stem not in SQL_ON_SAGA_LOG:
        assert not sql_on_saga_log, "SQL against saga_instances: name the `sagascope sagas` command instead"
    if "saga_log_" in text or sql_on_saga_log:
        assert "sagascope sagas " in text, "a saga-log runbook says which `sagascope sagas` command to run"


def test_metric_extraction_sees_through_promql_syntax() -> None:
    assert metrics_in(
        'sum by (saga) (rate(saga_finished_total{outcome="failed",x=~"a|b"}[5m])) / on () group_left () '
        "max(sagascope:saga_stuck_threshold_seconds offset 10m) > bool 0.2"
    ) == {"saga_finished_total", "sagascope:saga_stuck_threshold_seconds"}
