"""The generic saga executor, transition by transition.

Given a saga (reserve -> charge -> confirm), expect these calls, reply with this
failure, expect this rollback. The store is a real SQLite file; the
participant is a scripted fake, because what is tested is the executor.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import grpc
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from sagascope.common.resilience import DownstreamUnavailable
from sagascope.saga.definition import (
    CallContext,
    Claim,
    LocalStep,
    RemoteStep,
    SagaDefinition,
    StepFailed,
    Write,
    Writes,
)
from sagascope.saga.executor import SagaExecutor
from sagascope.saga.observer import SagaRun
from sagascope.saga.recovery import RecoveryWorker
from sagascope.saga.store import SAGA_METADATA, LeaseLost, SagaRecord, SagaStatus, SagaStore

META = MetaData()
ledger = Table(
    "ledger",
    META,
    Column("id", String, primary_key=True),
    Column("status", String),
    Column("version", Integer),
)


_SET_STATUS = update(ledger).where(ledger.c.id == bindparam("id_")).values(status=bindparam("status_"))
_INSERT = insert(ledger).values(id=bindparam("id_"), status=bindparam("status_"), version=bindparam("version_"))


def set_status(order_id: str, status: str) -> Write:
    return Write(_SET_STATUS, {"id_": order_id, "status_": status})


def insert_pending(order_id: str) -> Write:
    return Write(_INSERT, {"id_": order_id, "status_": "PENDING", "version_": 1})


@dataclass
class State:
    order_id: str
    payment_id: str = ""


@dataclass
class ScriptedPayments:
    """Replies in order from ``charge_replies`` / ``refund_replies``: a value, or an exception to raise."""

    charge_replies: list[Any] = field(default_factory=lambda: ["pay-1"])
    refund_replies: list[Any] = field(default_factory=lambda: ["ok"])
    calls: list[tuple[str, str, str]] = field(default_factory=list)  # (operation, key, detail)

    async def charge(self, state: State, call: CallContext) -> None:
        self.calls.append(("charge", call.idempotency_key, ""))
        reply = self.charge_replies.pop(0) if len(self.charge_replies) > 1 else self.charge_replies[0]
        if isinstance(reply, BaseException):
            raise reply
        state.payment_id = reply

    async def refund(self, state: State, call: CallContext) -> None:
        target = state.payment_id or f"by-key:{call.action_key}"
        self.calls.append(("refund", call.idempotency_key, target))
        reply = self.refund_replies.pop(0) if len(self.refund_replies) > 1 else self.refund_replies[0]
        if isinstance(reply, BaseException):
            raise reply


@dataclass
class Flags:
    confirm_fails: bool = False


def make_saga(payments: ScriptedPayments, flags: Flags) -> SagaDefinition[State]:
    async def reserve(state: State) -> Writes:
        return [Claim(ledger, {"id": state.order_id, "status": "PENDING", "version": 1}, unique_on=("id",))]

    async def cancel(state: State, reason: str) -> Writes:
        return [set_status(state.order_id, "CANCELLED")]

    async def confirm(state: State) -> Writes:
        if flags.confirm_fails:
            state.payment_id = "mutated-by-failed-step"  # must be undone: the step wrote nothing
            raise StepFailed("confirm failed")
        return [set_status(state.order_id, "COMPLETED")]

    async def stuck(state: State, reason: str) -> Writes:
        return [set_status(state.order_id, "FAILED")]

    return SagaDefinition(
        name="TestSaga",
        steps=[
            LocalStep("reserve", reserve, compensation=cancel),
            RemoteStep("charge", payments.charge, compensation=payments.refund),
            LocalStep("confirm", confirm),
        ],
        encode=asdict,
        decode=lambda d: State(**d),
        describe=lambda s: {"order.id": s.order_id},
        on_stuck=stuck,
    )


class RecordingObserver:
    """Collects the executor's hook calls as (kind, name) events."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.runs: list[SagaRun] = []

    @contextmanager
    def saga(self, run: SagaRun) -> Iterator[Any]:
        self.runs.append(run)
        events = self.events

        class Step:
            def failed(self, reason: str, error: BaseException | None = None) -> None:
                events.append(("failed", reason))

        class Scope:
            def started(self) -> None:
                events.append(("started", ""))

            def traceparent(self) -> str:
                return "00-" + "a" * 32 + "-" + "b" * 16 + "-01"

            def set_attribute(self, key: str, value: str) -> None:
                events.append(("attr", f"{key}={value}"))

            @contextmanager
            def step(self, step: str, index: int) -> Iterator[Step]:
                events.append(("step", step))
                yield Step()

            @contextmanager
            def compensation(self, step: str, index: int, reason: str, failed: Any) -> Iterator[Step]:
                events.append(("compensate", step))
                yield Step()

            def finished(self, outcome: str, reason: str = "") -> None:
                events.append(("finished", outcome))

        yield Scope()


@pytest.fixture
async def engine(tmp_path):
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'saga.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(SAGA_METADATA.create_all)
        await conn.run_sync(META.create_all)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine):
    return async_sessionmaker(engine, expire_on_commit=False)


async def ledger_status(sessions, order_id: str) -> str | None:
    async with sessions() as session:
        return (await session.execute(select(ledger.c.status).where(ledger.c.id == order_id))).scalar()


def build(sessions, payments=None, flags=None, owner="orchestrator-a", lease=30.0):
    payments = payments or ScriptedPayments()
    flags = flags or Flags()
    observer = RecordingObserver()
    store = SagaStore(sessions.kw["bind"], owner, lease)
    return SagaExecutor(make_saga(payments, flags), store, observer), payments, flags, observer


async def test_happy_path_completes_and_charges_once_with_the_step_key(sessions):
    executor, payments, _, observer = build(sessions)
    record, state = await executor.start("s1", State("o1"), "corr-1")
    assert record.status == SagaStatus.COMPLETED
    assert state.payment_id == "pay-1"
    assert payments.calls == [("charge", "s1:charge", "")]
    assert await ledger_status(sessions, "o1") == "COMPLETED"
    assert [e for e in observer.events if e[0] in ("step", "compensate", "finished")] == [
        ("step", "reserve"),
        ("step", "charge"),
        ("step", "confirm"),
        ("finished", "completed"),
    ]
    stored = await executor.store.load("s1")
    assert (
        stored is not None and stored.status == SagaStatus.COMPLETED and stored.state["payment_id"] == "pay-1"
    )


async def test_declined_charge_compensates_only_the_reservation(sessions):
    executor, payments, _, observer = build(
        sessions, ScriptedPayments(charge_replies=[StepFailed("declined")])
    )
    record, _ = await executor.start("s2", State("o2"), "corr-2")
    assert record.status == SagaStatus.COMPENSATED
    assert record.failure_reason == "declined"
    assert [c[0] for c in payments.calls] == ["charge"]  # no refund: nothing was charged
    assert await ledger_status(sessions, "o2") == "CANCELLED"
    assert ("compensate", "reserve") in observer.events and ("compensate", "charge") not in observer.events
    assert observer.events[-1] == ("finished", "compensated")


async def test_failed_confirm_refunds_by_payment_id_then_cancels_and_rolls_back_its_own_changes(sessions):
    executor, payments, _, observer = build(sessions, flags=Flags(confirm_fails=True))
    record, state = await executor.start("s3", State("o3"), "corr-3")
    assert record.status == SagaStatus.COMPENSATED
    assert state.payment_id == "pay-1"  # the failed step's in-memory change was undone
    assert payments.calls == [("charge", "s3:charge", ""), ("refund", "s3:charge:compensate", "pay-1")]
    assert await ledger_status(sessions, "o3") == "CANCELLED"
    comps = [e[1] for e in observer.events if e[0] == "compensate"]
    assert comps == ["charge", "reserve"]  # reverse order


async def test_charge_with_unknown_effect_is_compensated_by_its_idempotency_key(sessions):
    lost = DownstreamUnavailable("payment", "deadline", grpc.StatusCode.DEADLINE_EXCEEDED, maybe_applied=True)
    executor, payments, _, _ = build(sessions, ScriptedPayments(charge_replies=[lost]))
    record, _ = await executor.start("s4", State("o4"), "corr-4")
    assert record.status == SagaStatus.COMPENSATED
    assert payments.calls[-1] == ("refund", "s4:charge:compensate", "by-key:s4:charge")


async def test_breaker_open_means_nothing_was_sent_so_no_refund(sessions):
    open_breaker = DownstreamUnavailable("payment", "open", grpc.StatusCode.UNAVAILABLE, maybe_applied=False)
    executor, payments, _, _ = build(sessions, ScriptedPayments(charge_replies=[open_breaker]))
    record, _ = await executor.start("s5", State("o5"), "corr-5")
    assert record.status == SagaStatus.COMPENSATED
    assert [c[0] for c in payments.calls] == ["charge"]
    assert await ledger_status(sessions, "o5") == "CANCELLED"


async def test_stuck_compensation_parks_failed_then_recovery_finishes_it(sessions):
    down = DownstreamUnavailable("payment", "down", grpc.StatusCode.UNAVAILABLE, maybe_applied=True)
    payments = ScriptedPayments(refund_replies=[down, "ok"])
    executor, payments, _, observer = build(sessions, payments, Flags(confirm_fails=True))
    record, _ = await executor.start("s6", State("o6"), "corr-6")
    assert record.status == SagaStatus.FAILED
    assert record.attempts == 1 and record.next_attempt_at > time.time()
    assert "compensation pending" in record.failure_reason
    assert await ledger_status(sessions, "o6") == "FAILED"
    assert observer.events[-1] == ("finished", "failed")

    worker = RecoveryWorker(executor, interval_seconds=0.1)
    assert await worker.run_once() == 0  # not due yet: the retry time has not come
    await _make_due(sessions, "s6")
    assert await worker.run_once() == 1
    stored = await executor.store.load("s6")
    assert stored is not None and stored.status == SagaStatus.COMPENSATED
    assert await ledger_status(sessions, "o6") == "CANCELLED"
    assert [c[0] for c in payments.calls] == ["charge", "refund", "refund"]
    assert observer.runs[-1].resumed and observer.runs[-1].origin_traceparent
    assert observer.events[-1] == ("finished", "compensated")


async def test_crash_after_charge_resumes_by_retrying_the_charge_with_the_same_key(sessions):
    executor, payments, _, _ = build(sessions)
    # What a crash between "charge sent" and "confirm" leaves behind: the log says the call may be out.
    state = State("o7")
    record = SagaRecord(
        id="s7",
        name="TestSaga",
        status=SagaStatus.RUNNING,
        step_index=1,
        state=asdict(state),
        correlation_id="corr-7",
        step_started=True,
    )
    assert await executor.store.create(record, [insert_pending("o7")])
    await _make_due(sessions, "s7")

    recovered = RecoveryWorker(executor, 0.1)
    assert await recovered.run_once() == 1
    stored = await executor.store.load("s7")
    assert stored is not None and stored.status == SagaStatus.COMPLETED
    assert payments.calls == [("charge", "s7:charge", "")]
    assert await ledger_status(sessions, "o7") == "COMPLETED"


async def test_two_orchestrators_never_drive_the_same_saga(sessions):
    a, _, _, _ = build(sessions, owner="a", lease=30.0)
    b, _, _, _ = build(sessions, owner="b", lease=30.0)
    record = SagaRecord(
        id="s8",
        name="TestSaga",
        status=SagaStatus.RUNNING,
        step_index=1,
        state=asdict(State("o8")),
        correlation_id="c8",
        step_started=True,
    )
    assert await a.store.create(record, [insert_pending("o8")])
    assert await b.store.claim_due(10) == []  # a's lease is live
    await _make_due(sessions, "s8")
    claimed = await b.store.claim_due(10)
    assert [r.id for r in claimed] == ["s8"]
    assert await a.store.claim_due(10) == []  # b holds it now
    with pytest.raises(LeaseLost):
        await a.store.write(record)  # a's late write is fenced off


async def test_a_taken_claim_starts_no_saga_and_writes_nothing(sessions):
    executor, payments, _, observer = build(sessions)
    await executor.start("s9", State("o9"), "c9")
    observer.events.clear()
    assert await executor.start("s10", State("o9"), "c10") is None  # same order id: the claim is taken
    assert await executor.store.load("s10") is None
    assert len(payments.calls) == 1
    assert ("started", "") not in observer.events and not any(e[0] == "finished" for e in observer.events)


def running(saga_id: str) -> SagaRecord:
    return SagaRecord(
        id=saga_id, name="TestSaga", status=SagaStatus.RUNNING, step_index=1, state={}, correlation_id="c"
    )


async def test_a_failing_first_write_propagates_and_writes_nothing(sessions):
    executor, _, _, _ = build(sessions)
    await executor.store.create(running("s11"), [insert_pending("o11")])
    with pytest.raises(IntegrityError):  # a plain insert (not a claim) of a taken id: the saga row fails too
        await executor.store.create(running("s12"), [insert_pending("o11")])
    assert await executor.store.load("s12") is None


async def test_a_lost_lease_writes_nothing_of_the_step(sessions):
    a, _, _, _ = build(sessions, owner="a")
    record = running("s13")
    assert await a.store.create(record, [insert_pending("o13")])
    b, _, _, _ = build(sessions, owner="b")
    await _make_due(sessions, "s13")
    assert [r.id for r in await b.store.claim_due(10)] == ["s13"]
    with pytest.raises(LeaseLost):
        await a.store.write(record, [set_status("o13", "COMPLETED")])
    assert await ledger_status(sessions, "o13") == "PENDING"


async def _make_due(sessions, saga_id: str) -> None:
    from sagascope.saga.store import saga_instances

    async with sessions() as session, session.begin():
        await session.execute(
            update(saga_instances)
            .where(saga_instances.c.id == saga_id)
            .values(lease_expires_at=0.0, next_attempt_at=0.0)
        )
