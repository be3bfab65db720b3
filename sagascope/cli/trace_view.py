"""``sagascope trace <order-id | correlation-id>``: a saga's trace as a tree.

Spans come from Jaeger's query API when ``JAEGER_URL`` is set, otherwise from the
OTLP-JSON files the services write under ``var/telemetry/`` (``SAGASCOPE_TELEMETRY_DIR``).
A trace is selected when one of its spans carries the id as ``order.id``,
``correlation_id`` or ``saga.id``; traces linked to it (a saga resumed by recovery
links to the run it resumed) are shown too.

The CLI (sagascope/cli/main.py) calls :func:`trace_command`; the pieces are public
so the demo and tests can use them.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from sagascope.cli.otlp_files import iter_spans, service_files
from sagascope.cli.view_output import print_view
from sagascope.common.telemetry.files import TRACES_FILE

JAEGER_URL = "JAEGER_URL"
TELEMETRY_DIR = "SAGASCOPE_TELEMETRY_DIR"
DEFAULT_DIR = Path("var/telemetry")
SEARCH_ATTRIBUTES = ("order.id", "correlation_id", "saga.id")
_HTTP_TIMEOUT_S = 10.0


@dataclass
class SpanRow:
    trace_id: str
    span_id: str
    parent_id: str | None
    service: str
    name: str
    start_ns: int
    end_ns: int
    # "ok", "error" or "unset"
    status: str = "unset"
    status_message: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    # (trace_id, span_id) of each span link
    links: list[tuple[str, str]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    @property
    def duration_ms(self) -> float:
        return max(self.end_ns - self.start_ns, 0) / 1e6

    @property
    def is_compensation(self) -> bool:
        return bool(self.attributes.get("saga.compensation")) or self.name.startswith("saga.compensate ")


# ---- sources ------------------------------------------------------------------------------------

_STATUS = {0: "unset", 1: "ok", 2: "error"}


def spans_from_files(directory: Path) -> list[SpanRow]:
    rows = []
    for path in service_files(directory, TRACES_FILE):
        for span in iter_spans(path):
            status = span.get("status", {})
            rows.append(
                SpanRow(
                    trace_id=span.get("traceId", ""),
                    span_id=span.get("spanId", ""),
                    parent_id=span.get("parentSpanId") or None,
                    service=span["service"],
                    name=span.get("name", "?"),
                    start_ns=int(span.get("startTimeUnixNano", 0)),
                    end_ns=int(span.get("endTimeUnixNano", 0)),
                    status=_STATUS.get(int(status.get("code", 0)), "unset"),
                    status_message=status.get("message", ""),
                    attributes=span["attrs"],
                    links=[
                        (link.get("traceId", ""), link.get("spanId", "")) for link in span.get("links", [])
                    ],
                    events=[event.get("name", "") for event in span.get("events", [])],
                )
            )
    return rows


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=_HTTP_TIMEOUT_S) as response:
        return json.loads(response.read())


def _jaeger_rows(trace: dict[str, Any]) -> list[SpanRow]:
    processes = {key: value.get("serviceName", "?") for key, value in trace.get("processes", {}).items()}
    rows = []
    for span in trace.get("spans", []):
        tags = {tag["key"]: tag.get("value") for tag in span.get("tags", [])}
        parent = None
        links = []
        for ref in span.get("references", []):
            if ref.get("refType") == "CHILD_OF" and ref.get("traceID") == span["traceID"] and parent is None:
                parent = ref.get("spanID")
            else:
                links.append((ref.get("traceID", ""), ref.get("spanID", "")))
        status = (
            "error"
            if tags.get("error") in (True, "true") or tags.get("otel.status_code") == "ERROR"
            else ("ok" if tags.get("otel.status_code") == "OK" else "unset")
        )
        start_ns = int(span.get("startTime", 0)) * 1000
        rows.append(
            SpanRow(
                trace_id=span["traceID"].rjust(32, "0"),
                span_id=span["spanID"].rjust(16, "0"),
                parent_id=parent.rjust(16, "0") if parent else None,
                service=processes.get(span.get("processID", ""), "?"),
                name=span.get("operationName", "?"),
                start_ns=start_ns,
                end_ns=start_ns + int(span.get("duration", 0)) * 1000,
                status=status,
                status_message=str(tags.get("otel.status_description", "")),
                attributes=tags,
                links=[(trace_id.rjust(32, "0"), span_id.rjust(16, "0")) for trace_id, span_id in links],
                events=[
                    str(next((f["value"] for f in entry.get("fields", []) if f.get("key") == "event"), ""))
                    for entry in span.get("logs", [])
                ],
            )
        )
    return rows


def spans_from_jaeger(base_url: str, ref: str, lookback: str = "7d") -> list[SpanRow]:
    """Every span of the traces tagged with ``ref``, plus the traces they link to."""
    base = base_url.rstrip("/")
    services = _get_json(f"{base}/api/services").get("data") or []
    trace_ids: set[str] = set()
    for service in services:
        for key in SEARCH_ATTRIBUTES:
            query = urllib.parse.urlencode(
                {"service": service, "tags": json.dumps({key: ref}), "limit": 20, "lookback": lookback}
            )
            for trace in _get_json(f"{base}/api/traces?{query}").get("data") or []:
                trace_ids.add(trace["traceID"])
    rows: list[SpanRow] = []
    seen: set[str] = set()
    pending = list(trace_ids)
    while pending:
        trace_id = pending.pop()
        if trace_id in seen:
            continue
        seen.add(trace_id)
        for trace in _get_json(f"{base}/api/traces/{trace_id}").get("data") or []:
            new_rows = _jaeger_rows(trace)
            rows.extend(new_rows)
            pending.extend(link[0].lstrip("0") or "0" for row in new_rows for link in row.links)
    return rows


# ---- selection and rendering ---------------------------------------------------------------------


def select_traces(spans: Iterable[SpanRow], ref: str) -> list[str]:
    """Ids of the traces that mention ``ref``, plus traces linked to or from them, oldest first."""
    spans = list(spans)
    starts: dict[str, int] = {}
    neighbours: dict[str, set[str]] = defaultdict(set)
    for span in spans:
        starts[span.trace_id] = min(starts.get(span.trace_id, span.start_ns), span.start_ns)
        for linked_trace, _ in span.links:
            neighbours[span.trace_id].add(linked_trace)
            neighbours[linked_trace].add(span.trace_id)
    selected = {
        span.trace_id
        for span in spans
        if any(str(span.attributes.get(key)) == ref for key in SEARCH_ATTRIBUTES)
    }
    pending = list(selected)
    while pending:
        for other in neighbours[pending.pop()]:
            if other not in selected and other in starts:
                selected.add(other)
                pending.append(other)
    return sorted(selected, key=lambda trace_id: starts[trace_id])


def _label(span: SpanRow, by_id: dict[str, SpanRow]) -> str:
    parts = [f"{span.service}  {span.name}  {span.duration_ms:.1f} ms  {span.status.upper()}"]
    if span.status == "error" and span.status_message:
        parts.append(f"({span.status_message})")
    outcome = span.attributes.get("saga.outcome")
    if outcome:
        parts.append(f"[{outcome}]")
    if span.is_compensation:
        failed = next((by_id[s].name for _, s in span.links if s in by_id), None)
        parts.append("<- COMPENSATION" + (f" for {failed}" if failed else ""))
    elif span.attributes.get("saga.resumed"):
        parts.append("<- RESUMED" + (f" from trace {span.links[0][0]}" if span.links else ""))
    for event in span.events:
        if event in ("retry", "timeout", "circuit_breaker.state_change"):
            parts.append(f"!{event}")
    return "  ".join(parts)


def render_trace(trace_id: str, members: list[SpanRow]) -> str:
    """A header line, then the trace's spans as a tree, siblings ordered by start time."""
    by_id = {span.span_id: span for span in members}
    children: dict[str | None, list[SpanRow]] = defaultdict(list)
    for span in sorted(members, key=lambda s: s.start_ns):
        children[span.parent_id if span.parent_id in by_id else None].append(span)
    start = min(s.start_ns for s in members)
    end = max(s.end_ns for s in members)
    services = ", ".join(sorted({s.service for s in members}))
    lines = [f"trace {trace_id}  {len(members)} spans  {(end - start) / 1e6:.1f} ms  ({services})"]

    def walk(parent: str | None, prefix: str) -> None:
        kids = children.get(parent, [])
        for i, span in enumerate(kids):
            last = i == len(kids) - 1
            lines.append(f"{prefix}{'└─ ' if last else '├─ '}{_label(span, by_id)}")
            walk(span.span_id, prefix + ("   " if last else "│  "))

    walk(None, "")
    return "\n".join(lines)


def render_tree(spans: Iterable[SpanRow]) -> str:
    """One block per trace, oldest trace first."""
    by_trace: dict[str, list[SpanRow]] = defaultdict(list)
    for span in spans:
        by_trace[span.trace_id].append(span)
    ordered = sorted(by_trace.items(), key=lambda item: min(s.start_ns for s in item[1]))
    return "\n\n".join(render_trace(trace_id, members) for trace_id, members in ordered)


def load_trace_spans(
    ref: str, *, jaeger_url: str | None = None, directory: Path | None = None
) -> list[SpanRow]:
    """The spans of every trace belonging to ``ref`` (an order id or a correlation id)."""
    if jaeger_url:
        spans = spans_from_jaeger(jaeger_url, ref)
    else:
        spans = spans_from_files(directory or DEFAULT_DIR)
    wanted = set(select_traces(spans, ref))
    return [span for span in spans if span.trace_id in wanted]


def trace_command(
    ref: str,
    *,
    jaeger_url: str | None = None,
    directory: Path | None = None,
    out: TextIO | None = None,
) -> int:
    """Print the trace tree for ``ref``; 0 when found, 1 when not (with a hint on stderr)."""
    out = out or sys.stdout
    jaeger_url = jaeger_url if jaeger_url is not None else os.environ.get(JAEGER_URL) or None
    directory = directory or Path(os.environ.get(TELEMETRY_DIR) or DEFAULT_DIR)
    source = f"Jaeger at {jaeger_url}" if jaeger_url else f"files under {directory}"
    return print_view(
        lambda: load_trace_spans(ref, jaeger_url=jaeger_url, directory=directory),
        render_tree,
        what="traces",
        source=source,
        nothing=f"no trace found for {ref!r}",
        out=out,
    )
