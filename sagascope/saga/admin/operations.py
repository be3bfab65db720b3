"""The admin operations on the saga log: list, show, retry, pause, resume, resolve, paced batches.

Every change is ONE guarded write, like the executor's (PostgreSQL: one statement of
data-modifying CTEs ending in ``saga_guard``; SQLite: one transaction): an UPDATE of the saga
row whose WHERE is the transition's precondition, the audit row (who, when, what, why), and for
ResolveSaga the definition's ``on_resolved`` writes (the order becomes CANCELLED). When the
precondition does not hold nothing is written and the refusal names the current status.

Nobody drives a saga twice: retry, pause and resolve need the saga's lease to be free (a live
orchestrator is left alone), and retry/resume only make the saga *due*, so recovery claims it
with the usual compare-and-set on the lease.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson
from sqlalchemy import and_, bindparam, false, insert, literal_column, or_, select, update
from sqlalchemy.sql import Select
from sqlalchemy.sql.dml import UpdateBase

from sagascope.common.errors import FailedPrecondition, InvalidArgument, NotFound
from sagascope.saga.admin.observer import AdminAction, AdminObserver
from sagascope.saga.definition import SagaDefinition, Write
from sagascope.saga.store import UNFINISHED, SagaRecord, SagaStatus, SagaStore, saga_audit, saga_instances

RESOLUTION_MANUAL = "manual"


class Action(StrEnum):
    RETRY = "retry"
    PAUSE = "pause"
    RESUME = "resume"
    RESOLVE = "resolve"


class SagaOrder(StrEnum):
    NEWEST = "newest"
    STALEST = "stalest"


@dataclass(frozen=True)
class Operator:
    subject: str
    # The operator's request (kept in the audit row).
    correlation_id: str


@dataclass(frozen=True)
class SagaFilter:
    status: SagaStatus | None = None
    saga_name: str = ""
    step: str = ""
    # Only sagas created at least this long ago.
    older_than_s: float = 0.0


@dataclass(frozen=True)
class SagaView:
    record: SagaRecord
    # The current step's name ("" when none: finished, or nothing left to compensate).
    step: str


@dataclass(frozen=True)
class AuditEntry:
    at: float
    actor: str
    action: str
    note: str
    from_status: str
    to_status: str
    correlation_id: str


@dataclass(frozen=True)
class SagaDetail:
    view: SagaView
    audit: list[AuditEntry]


@dataclass(frozen=True)
class BatchItem:
    saga_id: str
    applied: bool
    refusal: str
    # When the action on it began (paced at the batch's rate).
    at: float


@dataclass(frozen=True)
class BatchOutcome:
    items: list[BatchItem]
    next_page_token: str


# --- the transitions: statements built once, values as bind parameters -----------------------

_t = saga_instances.c


def _const(value: str | int) -> Any:
    """A constant of ours (a status, a number) in the SQL text: the one-statement plans rename
    every bind parameter, so only named ones may carry values."""
    return literal_column(f"'{value}'" if isinstance(value, str) else str(value))


def _statuses(*statuses: SagaStatus) -> Any:
    return _t.status.in_([_const(s.value) for s in statuses])


_ID = _t.id == bindparam("id_")
_LEASE_FREE = _t.lease_expires_at < bindparam("now_")
_STATEMENTS: dict[Action, UpdateBase] = {
    # Due now: recovery claims it with its lease (updated_at stays: the saga has not moved yet).
    Action.RETRY: update(saga_instances)
    .where(_ID, _LEASE_FREE, _statuses(*UNFINISHED))
    .values(next_attempt_at=bindparam("now_")),
    # The lease goes too, so an orchestrator still holding this record cannot write it.
    Action.PAUSE: update(saga_instances)
    .where(_ID, _LEASE_FREE, _statuses(*UNFINISHED))
    .values(status=_const("PAUSED"), paused_from=_t.status, lease_owner=_const(""), lease_expires_at=_const(0)),
    Action.RESUME: update(saga_instances)
    .where(_ID, _statuses(SagaStatus.PAUSED), _t.paused_from != _const(""))
    .values(
        status=_t.paused_from,
        paused_from=_const(""),
        next_attempt_at=bindparam("now_"),
        lease_owner=_const(""),
        lease_expires_at=_const(0),
    ),
    Action.RESOLVE: update(saga_instances)
    .where(_ID, or_(_statuses(SagaStatus.PAUSED), and_(_statuses(SagaStatus.FAILED), _LEASE_FREE)))
    .values(
        status=_const(SagaStatus.COMPENSATED.value),
        resolution=_const(RESOLUTION_MANUAL),
        paused_from=_const(""),
        step_index=_const(-1),
        step_started=_const(0),
        lease_owner=_const(""),
        lease_expires_at=_const(0),
        next_attempt_at=_const(0),
        updated_at=bindparam("now_"),
    ),
}
# What each action needs, for the refusal's message.
NEEDS: dict[Action, str] = {
    Action.RETRY: "FAILED, RUNNING or COMPENSATING with no orchestrator holding its lease",
    Action.PAUSE: "RUNNING, COMPENSATING or FAILED with no orchestrator holding its lease",
    Action.RESUME: "PAUSED",
    Action.RESOLVE: "FAILED (with no orchestrator holding its lease) or PAUSED",
}
_AUDIT = insert(saga_audit).values(
    {name: bindparam(f"{name}_") for name in (c.name for c in saga_audit.columns if c.name != "id")}
)


class SagaAdmin:
    """The operations, for every saga type the service runs (``definitions`` by saga name)."""

    def __init__(
        self,
        store: SagaStore,
        definitions: Mapping[str, SagaDefinition[Any]],
        observer: AdminObserver,
        *,
        on_due: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.store = store
        self.definitions = dict(definitions)
        self.observer = observer
        # Called after a saga was made due (retry, resume): e.g. wake recovery now.
        self._on_due = on_due
        self._clock = clock
        self._sleep = sleep
        self._read = store.engine.execution_options(isolation_level="AUTOCOMMIT")

    # --- reads --------------------------------------------------------------------------------

    async def list(
        self, saga_filter: SagaFilter, order: SagaOrder, page_size: int, page_token: str = ""
    ) -> tuple[list[SagaView], str]:
        """A page of matching sagas and the token for the next ("" on the last page)."""
        query = self._filtered(saga_filter)
        if order == SagaOrder.NEWEST:
            key, query = _t.created_at, query.order_by(_t.created_at.desc(), _t.id.desc())
        else:
            key, query = _t.updated_at, query.order_by(_t.updated_at.asc(), _t.id.asc())
        if page_token:
            value, last_id = _parse_token(page_token, order)
            after = (
                or_(key < value, and_(key == value, _t.id < last_id))
                if order == SagaOrder.NEWEST
                else or_(key > value, and_(key == value, _t.id > last_id))
            )
            query = query.where(after)
        async with self._read.connect() as connection:
            rows = (await connection.execute(query.limit(page_size + 1))).all()
        views = [self._view(SagaRecord.from_row(r)) for r in rows[:page_size]]
        token = ""
        if len(rows) > page_size and views:
            last = views[-1].record
            token = _token(order, last.created_at if order == SagaOrder.NEWEST else last.updated_at, last.id)
        return views, token

    async def get(self, *, saga_id: str = "", reference: str = "", correlation_id: str = "") -> SagaDetail:
        """By saga id, business reference (the order id) or correlation id (the newest such saga)."""
        if saga_id:
            where, what = _t.id == saga_id, f"saga {saga_id!r}"
        elif reference:
            where, what = _t.reference == reference, f"a saga for {reference!r}"
        else:
            where, what = _t.correlation_id == correlation_id, f"a saga with correlation id {correlation_id!r}"
        async with self._read.connect() as connection:
            row = (
                await connection.execute(
                    select(saga_instances).where(where).order_by(_t.created_at.desc()).limit(1)
                )
            ).one_or_none()
            if row is None:
                raise NotFound(f"{what} not found")
            audit = (
                await connection.execute(
                    select(saga_audit).where(saga_audit.c.saga_id == row.id).order_by(saga_audit.c.id)
                )
            ).all()
        return SagaDetail(
            self._view(SagaRecord.from_row(row)),
            [
                AuditEntry(a.at, a.actor, a.action, a.note, a.from_status, a.to_status, a.correlation_id)
                for a in audit
            ],
        )

    # --- changes ------------------------------------------------------------------------------

    async def change(self, action: Action, saga_id: str, operator: Operator, note: str) -> SagaDetail:
        """Apply one action to one saga: audited, reported to the observer; FailedPrecondition
        (naming the current status) when the saga is not in a status the action allows."""
        record = await self.store.load(saga_id)
        if record is None:
            raise NotFound(f"saga {saga_id!r} not found")
        now = self._clock()
        to_status = _target(action, record)
        writes: list[Write] = []
        if action == Action.RESOLVE:
            writes.extend(await self._resolution_writes(record, operator, note))
        writes.append(
            Write(
                _AUDIT,
                {
                    "saga_id_": saga_id, "at_": now, "actor_": operator.subject, "action_": action.value,
                    "note_": note, "from_status_": record.status.value, "to_status_": to_status,
                    "correlation_id_": operator.correlation_id,
                },
            )
        )
        info = AdminAction(
            action.value, saga_id, record.name, operator.subject, note, record.correlation_id, record.traceparent
        )
        with self.observer.action(info) as scope:
            if not await self.store.transition(Write(_STATEMENTS[action], {"id_": saga_id, "now_": now}), writes):
                refusal = await self._refusal(action, saga_id)
                scope.refused(refusal.message)
                raise refusal
            scope.applied(record.status.value, to_status)
        if action in (Action.RETRY, Action.RESUME) and self._on_due is not None:
            self._on_due()
        return await self.get(saga_id=saga_id)

    async def batch(
        self,
        action: Action,
        saga_filter: SagaFilter,
        rate_per_second: float,
        limit: int,
        page_token: str,
        operator: Operator,
        note: str,
    ) -> BatchOutcome:
        """``action`` on up to ``limit`` matching sagas, stalest first, at most
        ``rate_per_second`` of them a second (so a recovering participant is not flooded).
        A saga refused on the way (its status changed) is reported, not fatal."""
        views, next_token = await self.list(saga_filter, SagaOrder.STALEST, limit, page_token)
        started = self._clock()
        items: list[BatchItem] = []
        for i, view in enumerate(views):
            wait = started + i / rate_per_second - self._clock()
            if wait > 0:
                await self._sleep(wait)
            at = self._clock()
            try:
                await self.change(action, view.record.id, operator, note)
            except (FailedPrecondition, NotFound) as exc:
                items.append(BatchItem(view.record.id, False, exc.message, at))
            else:
                items.append(BatchItem(view.record.id, True, "", at))
        return BatchOutcome(items, next_token)

    # --- internals ----------------------------------------------------------------------------

    def _filtered(self, saga_filter: SagaFilter) -> Select[Any]:
        query = select(saga_instances)
        if saga_filter.status is not None:
            query = query.where(_t.status == saga_filter.status.value)
        if saga_filter.saga_name:
            query = query.where(_t.name == saga_filter.saga_name)
        if saga_filter.step:
            at = [
                and_(_t.name == name, _t.step_index == index)
                for name, definition in self.definitions.items()
                if not saga_filter.saga_name or name == saga_filter.saga_name
                for index, step in enumerate(definition.steps)
                if step.name == saga_filter.step
            ]
            if not at:
                known = sorted({s.name for d in self.definitions.values() for s in d.steps})
                raise InvalidArgument(
                    "filter.step", f"no saga has a step named {saga_filter.step!r}; steps: {', '.join(known)}"
                )
            query = query.where(or_(false(), *at))
        if saga_filter.older_than_s > 0:
            query = query.where(_t.created_at <= self._clock() - saga_filter.older_than_s)
        return query

    def _view(self, record: SagaRecord) -> SagaView:
        definition = self.definitions.get(record.name)
        steps = definition.steps if definition else ()
        ended = record.status in (SagaStatus.COMPLETED, SagaStatus.COMPENSATED)
        step = steps[record.step_index].name if not ended and 0 <= record.step_index < len(steps) else ""
        return SagaView(record, step)

    async def _resolution_writes(self, record: SagaRecord, operator: Operator, note: str) -> Sequence[Write]:
        definition = self.definitions.get(record.name)
        if definition is None or definition.on_resolved is None:
            return []
        reason = f"resolved manually by {operator.subject}: {note}"
        writes = await definition.on_resolved(definition.decode(record.state), reason)
        return [w for w in writes if isinstance(w, Write)]

    async def _refusal(self, action: Action, saga_id: str) -> FailedPrecondition | NotFound:
        current = await self.store.load(saga_id)
        if current is None:
            return NotFound(f"saga {saga_id!r} not found")
        held = ""
        if current.status in UNFINISHED and current.lease_expires_at >= self._clock() and current.lease_owner:
            until = datetime.fromtimestamp(current.lease_expires_at, UTC).isoformat(timespec="seconds")
            held = f", driven by {current.lease_owner} (lease until {until})"
        return FailedPrecondition(
            f"saga {saga_id} is {current.status.value}{held}; {action.value} needs {NEEDS[action]}"
        )


def _target(action: Action, record: SagaRecord) -> str:
    if action == Action.PAUSE:
        return SagaStatus.PAUSED.value
    if action == Action.RESUME:
        return record.paused_from or record.status.value
    if action == Action.RESOLVE:
        return SagaStatus.COMPENSATED.value
    return record.status.value


def _token(order: SagaOrder, value: float, saga_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([order.value, value, saga_id])).decode()


def _parse_token(token: str, order: SagaOrder) -> tuple[float, str]:
    try:
        kind, value, saga_id = orjson.loads(base64.urlsafe_b64decode(token.encode()))
        if kind != order.value or not isinstance(saga_id, str):
            raise ValueError(kind)
        return float(value), saga_id
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise InvalidArgument("page_token", "is not a token returned by ListSagas for this order") from None
