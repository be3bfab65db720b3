"""Saga-log gauges: what the orchestrator's own saga log says about sagas that stopped moving.

Span- and counter-based metrics see a saga only while a process runs it; a saga whose
orchestrator died, or whose compensation is parked as FAILED, is visible only in the
``saga_instances`` table. One cheap aggregate query (unfinished rows only, served by the
``(status, next_attempt_at)`` index) runs every ``interval`` seconds; a custom collector serves
the last result, computing ages at scrape time so they keep growing between refreshes.

Metrics (labels ``saga``, ``status`` = RUNNING | COMPENSATING | FAILED | PAUSED, ``step`` = step name).
A PAUSED saga (quarantined by an operator, skipped by recovery) is counted under its own
``status="PAUSED"``, never as due; the stuck-saga alerts leave it out.

- ``saga_log_unfinished`` — sagas in the log not yet COMPLETED / COMPENSATED
- ``saga_log_oldest_age_seconds`` — age of the oldest of them (since the saga started)
- ``saga_log_idle_seconds`` — longest time any of them went without a saga-log write
  (a saga stuck in its step; for FAILED, how long the compensation has been parked)
- ``saga_log_recovery_attempts`` — recovery attempts recorded on them (summed)
- ``saga_log_due{saga}`` — of them, how many recovery may claim right now
- ``saga_log_refresh_timestamp_seconds`` — when the query last succeeded (a stale value
  means the gauges are stale)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from sagascope.common.background import BackgroundTask
from sagascope.saga.store import NOT_ENDED, SagaStatus, due_clause, saga_instances

log = logging.getLogger(__name__)

LABELS = ("saga", "status", "step")


@dataclass(frozen=True)
class StepGroup:
    """One row of the aggregate: the unfinished sagas of one saga type, status and step."""

    saga: str
    status: str
    step: str
    count: int
    oldest_created_at: float
    oldest_updated_at: float
    attempts: int
    due: int


def _aggregate(now: float):  # type: ignore[no-untyped-def]
    t = saga_instances.c
    due = due_clause(now) & (t.status != SagaStatus.PAUSED.value)
    return (
        select(
            t.name,
            t.status,
            t.step_index,
            func.count(),
            func.min(t.created_at),
            func.min(t.updated_at),
            func.coalesce(func.sum(t.attempts), 0),
            func.coalesce(func.sum(case((due, 1), else_=0)), 0),
        )
        .where(t.status.in_([s.value for s in NOT_ENDED]))
        .group_by(t.name, t.status, t.step_index)
    )


def _step_name(steps: Mapping[str, Sequence[str]], saga: str, index: int) -> str:
    names = steps.get(saga, ())
    return names[index] if 0 <= index < len(names) else str(index)


class SagaLogGauges(Collector):
    """Refreshes from the saga log in the background; ``collect`` serves the last snapshot."""

    def __init__(
        self,
        engine: AsyncEngine,
        steps: Mapping[str, Sequence[str]],
        interval: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.steps = steps
        self.interval = interval
        self._clock = clock
        self._groups: list[StepGroup] = []
        self._refreshed_at = 0.0
        self._background = BackgroundTask("saga-log-gauges")

    async def refresh(self) -> None:
        now = self._clock()
        async with self.engine.connect() as conn:
            rows = (await conn.execute(_aggregate(now))).all()
        self._groups = [
            StepGroup(
                saga=name,
                status=status,
                step=_step_name(self.steps, name, index),
                count=count,
                oldest_created_at=created,
                oldest_updated_at=updated,
                attempts=int(attempts),
                due=int(due),
            )
            for name, status, index, count, created, updated, attempts, due in rows
        ]
        self._refreshed_at = now

    def start(self) -> None:
        # A database hiccup must not stop the refreshes; meanwhile the refresh timestamp goes stale.
        self._background.start_every(
            self.interval, self.refresh, lambda: log.warning("saga log gauges: refresh failed", exc_info=True)
        )

    async def stop(self) -> None:
        await self._background.stop()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = self._clock()
        unfinished = GaugeMetricFamily(
            "saga_log_unfinished", "Sagas in the saga log not yet completed or compensated (count).", labels=LABELS
        )
        oldest = GaugeMetricFamily(
            "saga_log_oldest_age_seconds", "Age of the oldest unfinished saga, since it started.",
            labels=LABELS, unit="seconds",
        )
        idle = GaugeMetricFamily(
            "saga_log_idle_seconds",
            "Longest time an unfinished saga went without a saga-log write (stuck in its step; parked).",
            labels=LABELS, unit="seconds",
        )
        attempts = GaugeMetricFamily(
            "saga_log_recovery_attempts", "Recovery attempts recorded on unfinished sagas (sum).", labels=LABELS
        )
        due = GaugeMetricFamily(
            "saga_log_due", "Unfinished sagas recovery may claim now (lease expired, retry time reached).",
            labels=("saga",),
        )
        due_by_saga: dict[str, int] = {}
        for g in self._groups:
            labels = [g.saga, g.status, g.step]
            unfinished.add_metric(labels, g.count)
            oldest.add_metric(labels, max(0.0, now - g.oldest_created_at))
            idle.add_metric(labels, max(0.0, now - g.oldest_updated_at))
            attempts.add_metric(labels, g.attempts)
            due_by_saga[g.saga] = due_by_saga.get(g.saga, 0) + g.due
        for saga in self.steps:  # an explicit 0 when nothing is due, so alerts and panels see a value
            due.add_metric([saga], due_by_saga.pop(saga, 0))
        for saga, count in due_by_saga.items():
            due.add_metric([saga], count)
        refreshed = GaugeMetricFamily(
            "saga_log_refresh_timestamp_seconds",
            "When the saga-log gauges were last read from the database (Unix time).",
            value=self._refreshed_at, unit="seconds",
        )
        yield from (unfinished, oldest, idle, attempts, due, refreshed)


def register_saga_log_gauges(
    registry: CollectorRegistry, engine: AsyncEngine, steps: Mapping[str, Sequence[str]], interval: float = 5.0
) -> SagaLogGauges:
    gauges = SagaLogGauges(engine, steps, interval)
    registry.register(gauges)
    return gauges
