"""The saga-log gauges read the real saga_instances table (SQLite) and age at scrape time."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import CollectorRegistry
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import create_async_engine

from sagascope.saga.gauges import register_saga_log_gauges
from sagascope.saga.store import SAGA_METADATA, saga_instances

STEPS = {"CreateOrder": ["reserve", "charge", "confirm"]}


def _row(saga_id: str, status: str, step: int, created: float, updated: float, **extra: float) -> dict[str, object]:
    return {
        "id": saga_id, "name": "CreateOrder", "status": status, "step_index": step, "step_started": 1,
        "state": "{}", "failure_reason": "", "correlation_id": f"c-{saga_id}", "traceparent": "",
        "lease_owner": "replica-a", "lease_expires_at": extra.get("lease", created + 30),
        "attempts": int(extra.get("attempts", 0)), "next_attempt_at": extra.get("next", 0.0),
        "created_at": created, "updated_at": updated,
    }


def test_unfinished_sagas_by_status_and_step_with_ages(tmp_path: Path) -> None:
    now = [1000.0]

    async def scenario() -> CollectorRegistry:
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'o.db'}")
        async with engine.begin() as conn:
            await conn.run_sync(SAGA_METADATA.create_all)
            await conn.execute(insert(saga_instances), [
                _row("a", "RUNNING", 1, created=900, updated=950, lease=1100),
                _row("b", "RUNNING", 1, created=990, updated=995),
                _row("c", "FAILED", 1, created=700, updated=800, attempts=4, next=1200, lease=0),
                _row("d", "COMPLETED", 3, created=100, updated=101),
                _row("e", "COMPENSATING", 0, created=980, updated=980, lease=10, next=0),
            ])
        registry = CollectorRegistry()
        gauges = register_saga_log_gauges(registry, engine, STEPS)
        gauges._clock = lambda: now[0]
        await gauges.refresh()
        await engine.dispose()
        return registry

    registry = asyncio.run(scenario())
    now[0] = 1010.0  # ages grow between refreshes

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    running = {"saga": "CreateOrder", "status": "RUNNING", "step": "charge"}
    assert value("saga_log_unfinished", **running) == 2
    assert value("saga_log_oldest_age_seconds", **running) == 110
    assert value("saga_log_idle_seconds", **running) == 60
    parked = {"saga": "CreateOrder", "status": "FAILED", "step": "charge"}
    assert value("saga_log_idle_seconds", **parked) == 210
    assert value("saga_log_recovery_attempts", **parked) == 4
    assert value("saga_log_unfinished", saga="CreateOrder", status="COMPENSATING", step="reserve") == 1
    # finished sagas are not counted; only "e" is due (its lease ran out, no retry time pending)
    assert value("saga_log_unfinished", saga="CreateOrder", status="COMPLETED", step="3") is None
    assert value("saga_log_due", saga="CreateOrder") == 1
    assert value("saga_log_refresh_timestamp_seconds") == 1000


def test_no_unfinished_sagas_still_reports_nothing_due(tmp_path: Path) -> None:
    async def scenario() -> CollectorRegistry:
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'o.db'}")
        async with engine.begin() as conn:
            await conn.run_sync(SAGA_METADATA.create_all)
        registry = CollectorRegistry()
        await register_saga_log_gauges(registry, engine, STEPS).refresh()
        await engine.dispose()
        return registry

    registry = asyncio.run(scenario())
    assert registry.get_sample_value("saga_log_due", {"saga": "CreateOrder"}) == 0
    running = {"saga": "CreateOrder", "status": "RUNNING", "step": "charge"}
    assert registry.get_sample_value("saga_log_unfinished", running) is None
