"""The saga log: one row per saga instance, written before every outgoing call.

Ownership is a lease (``lease_owner``, ``lease_expires_at``). Every write is a
compare-and-set on the owner, so two orchestrator replicas can run recovery at
once: a saga is driven by exactly one of them, and a replica that lost its lease
stops at its next write (:class:`LeaseLost`). Times are epoch seconds (floats)
so SQLite and PostgreSQL compare them the same way.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import Column, Float, Index, Integer, MetaData, String, Table, Text, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

SAGA_METADATA = MetaData()

saga_instances = Table(
    "saga_instances",
    SAGA_METADATA,
    Column("id", String(64), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    # Forward: the next step to run. Compensating: the next step to compensate.
    Column("step_index", Integer, nullable=False),
    # True once the call for step_index may have been sent (its effect is unknown until recorded).
    Column("step_started", Integer, nullable=False, default=0),
    Column("state", Text, nullable=False),
    Column("failure_reason", Text, nullable=False, default=""),
    Column("correlation_id", String(128), nullable=False),
    Column("traceparent", String(64), nullable=False, default=""),
    Column("lease_owner", String(64), nullable=False),
    Column("lease_expires_at", Float, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False, default=0.0),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_saga_instances_due", "status", "next_attempt_at"),
)


# The saga log write on every transition, compiled once (bind parameters, not literals).
_WRITE = (
    update(saga_instances)
    .where(saga_instances.c.id == bindparam("id_"), saga_instances.c.lease_owner == bindparam("owner_"))
    .values(
        {
            name: bindparam(f"{name}_")
            for name in (
                "status", "step_index", "step_started", "state", "failure_reason", "attempts",
                "next_attempt_at", "lease_expires_at", "updated_at",
            )
        }
    )
)


class SagaStatus(StrEnum):
    RUNNING = "RUNNING"
    COMPENSATING = "COMPENSATING"
    COMPLETED = "COMPLETED"
    COMPENSATED = "COMPENSATED"
    # A compensation could not finish yet; recovery retries it at next_attempt_at.
    FAILED = "FAILED"


UNFINISHED = (SagaStatus.RUNNING, SagaStatus.COMPENSATING, SagaStatus.FAILED)


class LeaseLost(Exception):
    """Another orchestrator owns this saga now; stop driving it."""


@dataclass
class SagaRecord:
    id: str
    name: str
    status: SagaStatus
    step_index: int
    state: dict[str, Any]
    correlation_id: str
    step_started: bool = False
    failure_reason: str = ""
    traceparent: str = ""
    attempts: int = 0
    next_attempt_at: float = 0.0
    created_at: float = field(default_factory=time.time)
    # In memory only: the exception that made this run compensate or park (for the caller's answer).
    last_error: BaseException | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_row(cls, row: Any) -> SagaRecord:
        return cls(
            id=row.id,
            name=row.name,
            status=SagaStatus(row.status),
            step_index=row.step_index,
            state=json.loads(row.state),
            correlation_id=row.correlation_id,
            step_started=bool(row.step_started),
            failure_reason=row.failure_reason,
            traceparent=row.traceparent,
            attempts=row.attempts,
            next_attempt_at=row.next_attempt_at,
            created_at=row.created_at,
        )

    def mutable_columns(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "step_index": self.step_index,
            "step_started": int(self.step_started),
            "state": json.dumps(self.state, separators=(",", ":")),
            "failure_reason": self.failure_reason,
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at,
        }


class SagaStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], owner: str, lease_seconds: float) -> None:
        self.sessions = sessions
        self.owner = owner
        self.lease_seconds = lease_seconds

    async def create(self, record: SagaRecord, local_work: Callable[[AsyncSession], Awaitable[None]]) -> None:
        """Insert the saga row and run ``local_work`` in ONE transaction (the saga's first step)."""
        now = time.time()
        async with self.sessions() as session, session.begin():
            await local_work(session)
            await session.execute(
                insert(saga_instances),
                {
                    "id": record.id,
                    "name": record.name,
                    "correlation_id": record.correlation_id,
                    "traceparent": record.traceparent,
                    "lease_owner": self.owner,
                    "lease_expires_at": now + self.lease_seconds,
                    "created_at": now,
                    "updated_at": now,
                    **record.mutable_columns(),
                },
            )

    @asynccontextmanager
    async def transition(self, record: SagaRecord) -> AsyncIterator[AsyncSession]:
        """A transaction for local step work; on exit the record's current fields are
        written (if we still hold the lease) and everything commits together."""
        async with self.sessions() as session, session.begin():
            yield session
            await self._write(session, record)

    async def save(self, record: SagaRecord) -> None:
        async with self.sessions() as session, session.begin():
            await self._write(session, record)

    async def _write(self, session: AsyncSession, record: SagaRecord) -> None:
        now = time.time()
        params = {f"{k}_": v for k, v in record.mutable_columns().items()}
        params.update(id_=record.id, owner_=self.owner, lease_expires_at_=now + self.lease_seconds, updated_at_=now)
        result = await session.execute(_WRITE, params)
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise LeaseLost(f"saga {record.id} is now owned by another orchestrator")

    async def release(self, record: SagaRecord) -> None:
        """Give up the lease (a finished or parked saga) so recovery can take it when due."""
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(saga_instances)
                .where(saga_instances.c.id == record.id, saga_instances.c.lease_owner == self.owner)
                .values(lease_expires_at=0.0)
            )

    async def claim_due(self, limit: int) -> list[SagaRecord]:
        """Take the lease of unfinished sagas nobody holds and whose retry time has come."""
        now = time.time()
        due = (
            (saga_instances.c.status.in_([s.value for s in UNFINISHED]))
            & (saga_instances.c.lease_expires_at < now)
            & (saga_instances.c.next_attempt_at <= now)
        )
        async with self.sessions() as session:
            ids = (
                (
                    await session.execute(
                        select(saga_instances.c.id)
                        .where(due)
                        .order_by(saga_instances.c.next_attempt_at)
                        .limit(limit)
                    )
                )
                .scalars()
                .all()
            )
        claimed = []
        for saga_id in ids:
            async with self.sessions() as session, session.begin():
                result = await session.execute(
                    update(saga_instances)
                    .where(saga_instances.c.id == saga_id, due)
                    .values(lease_owner=self.owner, lease_expires_at=time.time() + self.lease_seconds)
                )
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    row = (
                        await session.execute(select(saga_instances).where(saga_instances.c.id == saga_id))
                    ).one()
                    claimed.append(SagaRecord.from_row(row))
        return claimed

    async def load(self, saga_id: str) -> SagaRecord | None:
        async with self.sessions() as session:
            row = (
                await session.execute(select(saga_instances).where(saga_instances.c.id == saga_id))
            ).one_or_none()
        return SagaRecord.from_row(row) if row else None
