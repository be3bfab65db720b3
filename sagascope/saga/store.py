"""The saga log: one row per saga instance, written before every outgoing call.

Ownership is a lease (``lease_owner``, ``lease_expires_at``). Every write is a
compare-and-set on the owner, so two orchestrator replicas can run recovery at
once: a saga is driven by exactly one of them, and a replica that lost its lease
stops at its next write (:class:`LeaseLost`). Times are epoch seconds (floats)
so SQLite and PostgreSQL compare them the same way.

A local step's writes go with the saga-log write, all or nothing. On PostgreSQL
that is ONE statement in autocommit (one round trip, no BEGIN/COMMIT): the writes
are data-modifying CTEs and the statement ends in ``saga_guard(...)``, a function
from the migrations that raises when the lease CAS (or a new saga's claim) matched
no row, which rolls every part of the statement back. On SQLite (embedded, in
process) the same writes run in one transaction, checked statement by statement.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson
from sqlalchemy import (
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    exists,
    func,
    insert,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.sql import visitors
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.elements import BindParameter, ColumnElement

from sagascope.saga.definition import Claim, Write

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
    # Why the saga compensates, as a kind (FailureKind); the reason in words is failure_reason.
    Column("failure_kind", String(16), nullable=False, default="", server_default=""),
    # The business id people look the saga up by (e.g. the order id): SagaDefinition.reference.
    Column("reference", String(128), nullable=False, default="", server_default=""),
    # The step timeline, JSON: every run of a step or compensation (SagaRecord.began / ended).
    Column("history", Text, nullable=False, default="[]", server_default="[]"),
    # Set while PAUSED: the status ResumeSaga gives back.
    Column("paused_from", String(16), nullable=False, default="", server_default=""),
    # "manual" once an operator resolved the saga (ResolveSaga).
    Column("resolution", String(16), nullable=False, default="", server_default=""),
    Index("ix_saga_instances_due", "status", "next_attempt_at"),
    Index("ix_saga_instances_reference", "reference"),
    Index("ix_saga_instances_correlation_id", "correlation_id"),
)

# Operators' changes to sagas (sagascope/saga/admin): who did what, when and why.
saga_audit = Table(
    "saga_audit",
    SAGA_METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("saga_id", String(64), nullable=False),
    Column("at", Float, nullable=False),
    # The operator's token subject.
    Column("actor", String(128), nullable=False),
    Column("action", String(16), nullable=False),
    Column("note", Text, nullable=False),
    Column("from_status", String(16), nullable=False),
    Column("to_status", String(16), nullable=False),
    Column("correlation_id", String(128), nullable=False),
    Index("ix_saga_audit_saga", "saga_id", "at"),
)

# Raised by saga_guard() (migration 0002) on PostgreSQL; the message starts with this.
GUARD_MESSAGE = "saga guard: "
_CLAIMED, _LEASE = "claim found an existing row", "lease lost"


# The saga-log writes, built once with bind parameters (``<column>_``).
_WRITE = (
    update(saga_instances)
    .where(saga_instances.c.id == bindparam("id_"), saga_instances.c.lease_owner == bindparam("owner_"))
    .values(
        {
            name: bindparam(f"{name}_")
            for name in (
                "status", "step_index", "step_started", "state", "failure_reason", "failure_kind",
                "attempts", "next_attempt_at", "lease_expires_at", "updated_at", "history",
            )
        }
    )
)
_INSERT = insert(saga_instances).values({c.name: bindparam(f"{c.name}_") for c in saga_instances.columns})


class SagaStatus(StrEnum):
    RUNNING = "RUNNING"
    COMPENSATING = "COMPENSATING"
    COMPLETED = "COMPLETED"
    COMPENSATED = "COMPENSATED"
    # A compensation could not finish yet; recovery retries it at next_attempt_at.
    FAILED = "FAILED"
    # Quarantined by an operator (sagascope/saga/admin): recovery skips it until resumed.
    PAUSED = "PAUSED"


# What recovery drives (a PAUSED saga is unfinished too, but waits for an operator).
UNFINISHED = (SagaStatus.RUNNING, SagaStatus.COMPENSATING, SagaStatus.FAILED)
# Every status of a saga that has not ended, for the saga-log gauges and the admin API.
NOT_ENDED = (*UNFINISHED, SagaStatus.PAUSED)
# Steps kept in a saga's timeline: a compensation parked for days is retried every minute.
HISTORY_LIMIT = 50


def due_clause(now: float) -> ColumnElement[bool]:
    """An unfinished saga recovery may claim at ``now``: nobody holds its lease, its retry time has
    come. (Recovery and the saga-log gauges both count by this one condition.)"""
    return (saga_instances.c.lease_expires_at < now) & (saga_instances.c.next_attempt_at <= now)


class FailureKind(StrEnum):
    """What made the saga compensate (or park): decides what its caller is told."""

    NONE = ""
    # The step said no (StepFailed, e.g. payment declined): a business outcome.
    BUSINESS = "business"
    # The participant refused the call (a non-retryable gRPC status).
    REJECTED = "rejected"
    # The participant could not be reached (breaker open, deadline, UNAVAILABLE): infrastructure.
    UNAVAILABLE = "unavailable"
    UNEXPECTED = "unexpected"


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
    failure_kind: FailureKind = FailureKind.NONE
    traceparent: str = ""
    attempts: int = 0
    next_attempt_at: float = 0.0
    created_at: float = field(default_factory=time.time)
    reference: str = ""
    # Every run of a step or compensation: {step, index, kind, attempt, started_at, ended_at, result, reason}.
    history: list[dict[str, Any]] = field(default_factory=list)
    paused_from: str = ""
    resolution: str = ""
    lease_owner: str = ""
    lease_expires_at: float = 0.0
    updated_at: float = 0.0
    # In memory only: progress (a remote step's result) not written yet; it goes with the next write.
    unsaved: bool = field(default=False, compare=False, repr=False)

    @classmethod
    def from_row(cls, row: Any) -> SagaRecord:
        return cls(
            id=row.id,
            name=row.name,
            status=SagaStatus(row.status),
            step_index=row.step_index,
            state=orjson.loads(row.state),
            correlation_id=row.correlation_id,
            step_started=bool(row.step_started),
            failure_reason=row.failure_reason,
            failure_kind=FailureKind(row.failure_kind),
            traceparent=row.traceparent,
            attempts=row.attempts,
            next_attempt_at=row.next_attempt_at,
            created_at=row.created_at,
            reference=row.reference,
            history=orjson.loads(row.history or "[]"),
            paused_from=row.paused_from,
            resolution=row.resolution,
            lease_owner=row.lease_owner,
            lease_expires_at=row.lease_expires_at,
            updated_at=row.updated_at,
        )

    def began(self, step: str, index: int, compensation: bool) -> None:
        """A step (or its compensation) starts: a timeline entry, written with the next saga-log write."""
        kind = "compensation" if compensation else "action"
        attempt = 1 + sum(1 for e in self.history if e["index"] == index and e["kind"] == kind)
        self.history.append(
            {"step": step, "index": index, "kind": kind, "attempt": attempt, "started_at": time.time()}
        )
        del self.history[:-HISTORY_LIMIT]

    def ended(self, result: str, reason: str = "") -> None:
        """The latest timeline entry's outcome ("completed" or "failed", and why)."""
        if self.history:
            entry = self.history[-1]
            entry.update(ended_at=time.time(), result=result)
            if reason:
                entry["reason"] = reason[:500]

    def mutable_columns(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "step_index": self.step_index,
            "step_started": int(self.step_started),
            "state": orjson.dumps(self.state).decode(),
            "failure_reason": self.failure_reason,
            "failure_kind": self.failure_kind.value,
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at,
            "history": orjson.dumps(self.history).decode(),
        }


class SagaStore:
    def __init__(self, engine: AsyncEngine, owner: str, lease_seconds: float) -> None:
        self.engine = engine
        # Every write is one statement or (SQLite) one explicit transaction: no implicit BEGIN.
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._postgres = engine.dialect.name == "postgresql"
        self._insert = postgresql.insert if self._postgres else sqlite.insert  # the claim's spelling
        self._plans = _Plans(engine.dialect)
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.owner = owner
        self.lease_seconds = lease_seconds

    async def create(self, record: SagaRecord, writes: Sequence[Write | Claim]) -> bool:
        """Insert the saga row with its first step's writes, all or nothing.

        False when the writes start with a :class:`Claim` that met an existing row:
        then nothing was written and the saga did not start.
        """
        now = time.time()
        row = Write(
            _INSERT,
            {
                "id_": record.id,
                "name_": record.name,
                "reference_": record.reference,
                "paused_from_": "",
                "resolution_": "",
                "correlation_id_": record.correlation_id,
                "traceparent_": record.traceparent,
                "lease_owner_": self.owner,
                "lease_expires_at_": now + self.lease_seconds,
                "created_at_": now,
                "updated_at_": now,
                **{f"{k}_": v for k, v in record.mutable_columns().items()},
            },
        )
        claim = writes[0] if writes and isinstance(writes[0], Claim) else None
        rest = [_plain(w) for w in (writes[1:] if claim else writes)]
        guard = (_claim_write(claim, self._insert), _CLAIMED) if claim is not None else None
        try:
            await self._apply([*rest, row], guard)
        except _GuardFailed:
            return False
        return True

    async def write(
        self, record: SagaRecord, writes: Sequence[Write | Claim] = (), *, release: bool = False
    ) -> None:
        """Write the record's current fields (a compare-and-set on the lease) and ``writes``, all
        or nothing; :class:`LeaseLost` when another orchestrator owns the saga now (nothing
        written). ``release`` gives the lease up (a finished or parked saga) so recovery can
        take it when due."""
        now = time.time()
        params = {f"{k}_": v for k, v in record.mutable_columns().items()}
        params.update(
            id_=record.id,
            owner_=self.owner,
            lease_expires_at_=0.0 if release else now + self.lease_seconds,
            updated_at_=now,
        )
        try:
            await self._apply([_plain(w) for w in writes], (Write(_WRITE, params), _LEASE))
        except _GuardFailed:
            raise _lease_lost(record) from None

    async def transition(self, guard: Write, writes: Sequence[Write | Claim] = ()) -> bool:
        """An operator's change (sagascope/saga/admin): ``guard``, an UPDATE of the saga row whose
        WHERE states the allowed transition, and ``writes``, all or nothing (one statement on
        PostgreSQL). False, with nothing written, when the guard matched no row."""
        try:
            await self._apply([_plain(w) for w in writes], (guard, "the transition is not allowed now"))
        except _GuardFailed:
            return False
        return True

    async def _apply(self, writes: Sequence[Write], guard: tuple[Write, str] | None) -> None:
        """The guard (a write that must affect a row, and what it means when it does not), then the
        writes, all or nothing: :class:`_GuardFailed`, with nothing written, when the guard wrote no
        row. PostgreSQL: one statement (:meth:`_execute`); SQLite: one transaction."""
        if self._postgres:
            if guard is not None and not writes:
                if await self._execute([guard[0]]) != 1:
                    raise _GuardFailed(guard[1])
            else:
                await self._execute(writes, guard)
            return
        async with self.engine.begin() as connection:
            if guard is not None:
                result = await connection.execute(guard[0].statement, guard[0].params)
                if result.rowcount != 1:  # type: ignore[attr-defined]
                    raise _GuardFailed(guard[1])  # rolls the transaction back
            for write in writes:
                await connection.execute(write.statement, write.params)

    async def _execute(self, writes: Sequence[Write], guard: tuple[Write, str] | None = None) -> int:
        """PostgreSQL: the writes as ONE autocommit statement (data-modifying CTEs); with a
        ``guard`` (a write that must affect a row, and what it means when it does not) the
        statement fails and writes nothing unless the guard wrote its row. Returns the row
        count of a lone write."""
        parts = [*([guard[0]] if guard else []), *writes]
        plan = self._plans.get(tuple(w.statement for w in parts), guard is not None)
        values: dict[str, Any] = {"saga_guard_meaning": guard[1]} if guard else {}
        for i, write in enumerate(parts):
            values.update({f"w{i}_{k}": v for k, v in write.params.items()})
        try:
            async with self._autocommit.connect() as connection:
                result = await connection.exec_driver_sql(plan.sql, tuple(values[n] for n in plan.names))
        except DBAPIError as exc:
            if GUARD_MESSAGE in str(exc.orig):
                raise _GuardFailed(str(exc.orig)) from None
            raise
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def claim_due(self, limit: int) -> list[SagaRecord]:
        """Take the lease of unfinished sagas nobody holds and whose retry time has come."""
        now = time.time()
        due = saga_instances.c.status.in_([s.value for s in UNFINISHED]) & due_clause(now)
        async with self._autocommit.connect() as connection:
            ids = (
                (
                    await connection.execute(
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
            async with self.engine.begin() as connection:
                result = await connection.execute(
                    update(saga_instances)
                    .where(saga_instances.c.id == saga_id, due)
                    .values(lease_owner=self.owner, lease_expires_at=time.time() + self.lease_seconds)
                )
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    row = (
                        await connection.execute(select(saga_instances).where(saga_instances.c.id == saga_id))
                    ).one()
                    claimed.append(SagaRecord.from_row(row))
        return claimed

    async def load(self, saga_id: str) -> SagaRecord | None:
        async with self._autocommit.connect() as connection:
            row = (
                await connection.execute(select(saga_instances).where(saga_instances.c.id == saga_id))
            ).one_or_none()
        return SagaRecord.from_row(row) if row else None


@dataclass(frozen=True)
class _Plan:
    sql: str
    # The bind parameter names in positional order.
    names: tuple[str, ...]


class _Plans:
    """Composed statements, compiled once per shape (the tuple of statements they combine).

    Compiled here rather than through SQLAlchemy's statement cache: an INSERT … ON CONFLICT
    is never cached there (the dialect's Insert opts out), and composing CTEs per call would
    cost a cache-key walk of the whole statement on every write.
    """

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._plans: dict[tuple[tuple[UpdateBase, ...], bool], _Plan] = {}

    def get(self, statements: tuple[UpdateBase, ...], guarded: bool) -> _Plan:
        key = (statements, guarded)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._compile(statements, guarded)
        return plan

    def _compile(self, statements: tuple[UpdateBase, ...], guarded: bool) -> _Plan:
        # Each part's parameters get its position as a prefix, so two parts never share a name.
        parts = [_prefixed(s, f"w{i}_") for i, s in enumerate(statements)]
        composed: Any
        if len(parts) == 1 and not guarded:
            composed = parts[0]
        else:
            if guarded:
                parts[0] = parts[0].returning(literal_column("1").label("written"))
            ctes = [part.cte(f"saga_w{i}") for i, part in enumerate(parts)]
            result = (
                func.saga_guard(exists(select(ctes[0])), bindparam("saga_guard_meaning"))
                if guarded
                else literal_column("1")
            )
            composed = select(result).add_cte(*ctes)
        compiled = composed.compile(dialect=self.dialect)
        return _Plan(compiled.string, tuple(compiled.positiontup or ()))


def _prefixed(statement: UpdateBase, prefix: str) -> UpdateBase:
    def rename(element: Any, **_: Any) -> Any:
        if isinstance(element, BindParameter):
            return bindparam(prefix + element.key, type_=element.type)
        return None

    return visitors.replacement_traverse(statement, {}, rename)  # type: ignore[return-value]


class _GuardFailed(Exception):
    """saga_guard() raised: the statement wrote nothing."""


def _lease_lost(record: SagaRecord) -> LeaseLost:
    return LeaseLost(f"saga {record.id} is now owned by another orchestrator")


def _plain(write: Write | Claim) -> Write:
    if isinstance(write, Claim):
        raise TypeError("a Claim may only be the first write of a saga's first step")
    return write


@functools.cache
def _claim_statement(
    dialect_insert: Any, table: Table, columns: tuple[str, ...], unique_on: tuple[str, ...]
) -> UpdateBase:
    """INSERT … ON CONFLICT (unique_on) DO NOTHING, in the dialect's spelling, built once per
    table, columns and dialect."""
    return (  # type: ignore[no-any-return]
        dialect_insert(table)
        .values({name: bindparam(f"{name}_") for name in columns})
        .on_conflict_do_nothing(index_elements=list(unique_on))
    )


def _claim_write(claim: Claim, dialect_insert: Any) -> Write:
    statement = _claim_statement(dialect_insert, claim.table, tuple(claim.values), claim.unique_on)
    return Write(statement, {f"{k}_": v for k, v in claim.values.items()})
