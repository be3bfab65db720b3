"""What the services' own JSON logs say, for the report: ERROR causes, and a violating order's saga."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Saga events worth a line in a timeline (saga.step.started is noise next to the rest).
TIMELINE_EVENTS = frozenset({
    "saga.started", "saga.step.completed", "saga.step.failed", "saga.interrupted", "saga.recovered",
    "saga.compensation.started", "saga.compensation.completed", "saga.compensation.failed", "saga.finished",
})


def _records(log_dir: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(log_dir.glob("*.log")):
        with path.open(errors="replace") as lines:
            for line in lines:
                if not line.startswith("{"):
                    continue
                try:
                    yield path.stem, json.loads(line)
                except json.JSONDecodeError:
                    continue


def error_causes(log_dir: Path) -> Counter[str]:
    """ERROR lines by process, message and the exception's last line."""
    causes: Counter[str] = Counter()
    for process, record in _records(log_dir):
        if record.get("level") != "ERROR":
            continue
        trace = str(record.get("exc_info") or "").strip()
        last = trace.splitlines()[-1] if trace else ""
        causes[f"{process}: {str(record.get('message'))[:70]} / {last[:110]}"] += 1
    return causes


def timelines(log_dir: Path, order_ids: set[str]) -> dict[str, list[str]]:
    """The saga events of each order, in time order, as 'time process event: message' lines."""
    found: dict[str, list[tuple[str, str]]] = {order_id: [] for order_id in order_ids}
    for process, record in _records(log_dir):
        order_id = record.get("order.id")
        if order_id in found and record.get("event") in TIMELINE_EVENTS:
            stamp = str(record.get("timestamp", ""))[11:23]
            found[order_id].append((stamp, f"{stamp} {process} {record['event']}: {str(record.get('message'))[:160]}"))
    return {order_id: [line for _, line in sorted(lines)] for order_id, lines in found.items()}
